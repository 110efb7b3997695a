// Building the view's DOM from a tool result: media side by side, players, text, JSON, errors, the gallery.
// Only DOM APIs and textContent: nothing from a result is ever parsed as HTML.

import { findMedia, findTexts, formatBytes, kindOf, withoutInlineData, type Media } from "./media";

export interface LogLine {
  message?: string;
  level?: string;
  timestamp?: string;
}

/** run-model / get-result's structuredContent (fal_mcp.jobs.results.RequestResult). */
export interface RequestEnvelope {
  endpoint_id: string;
  request_id?: string;
  status: string;
  output?: unknown;
  metrics?: Record<string, unknown>;
  queue_position?: number;
  logs?: LogLine[];
  next_step?: string;
  error?: string;
  error_type?: string;
  saved?: string[];
}

/** One row of list-requests (fal_mcp.jobs.history.RequestRecord). */
export interface RequestRecord {
  request_id?: string;
  endpoint_id: string;
  state: string;
  submitted_at: string;
  error?: string;
  media_urls?: string[];
}

/** What the host lets the view do; each is absent when the host does not allow it. */
export interface Actions {
  save?: (media: Media) => Promise<string>;
  open?: (url: string) => void;
  follow?: (record: RequestRecord) => void;
}

const FOLD_CHARS = 600;
const FOLD_LINES = 12;
const OPEN_JSON_CHARS = 1500;

type Child = Node | string | undefined | false;

export function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  for (const child of children) {
    if (child === undefined || child === false) continue;
    element.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return element;
}

const STATE_LABELS: Record<string, string> = {
  IN_QUEUE: "Queued",
  IN_PROGRESS: "Running",
  COMPLETED: "Completed",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
  CANCELLATION_REQUESTED: "Cancelling",
  SUBMITTING: "Submitting",
  UNKNOWN: "Unknown",
};

export function badge(state: string): HTMLElement {
  return h("span", { class: `badge state-${state.toLowerCase()}`, "data-state": state }, STATE_LABELS[state] ?? state);
}

function details(media: Media, element: HTMLImageElement | HTMLMediaElement | undefined): HTMLElement {
  const caption = h("figcaption", {});
  const facts = (width?: number, height?: number): string =>
    [width && height ? `${width}×${height}` : "", media.size !== undefined ? formatBytes(media.size) : ""]
      .filter(Boolean)
      .join(" · ");
  const line = h("span", { class: "facts" }, facts(media.width, media.height));
  caption.append(line);
  if (element instanceof HTMLImageElement && !(media.width && media.height)) {
    element.addEventListener("load", () => {
      line.textContent = facts(element.naturalWidth, element.naturalHeight);
    });
  }
  return caption;
}

function actionsFor(media: Media, actions: Actions): HTMLElement | undefined {
  const inline = media.url.startsWith("data:");
  const row = h("div", { class: "actions" });
  if (actions.save && !inline) {
    const save = actions.save;
    const button = h("button", { type: "button", class: "save" }, "Save") as HTMLButtonElement;
    button.addEventListener("click", () => {
      button.disabled = true;
      save(media).then(
        (outcome) => {
          button.textContent = outcome;
        },
        () => {
          button.textContent = "Not saved";
          button.disabled = false;
        },
      );
    });
    row.append(button);
  }
  if (actions.open && !inline) {
    const open = actions.open;
    const button = h("button", { type: "button", class: "open" }, "Open");
    button.addEventListener("click", () => open(media.url));
    row.append(button);
  }
  return row.childElementCount ? row : undefined;
}

function image(media: Media, actions: Actions): HTMLElement {
  const img = h("img", { src: media.url, alt: media.fileName ?? `image at ${media.where}`, loading: "lazy" });
  const figure = h("figure", { class: "media image", "data-where": media.where }, img);
  img.addEventListener("click", () => figure.classList.toggle("full"));
  img.setAttribute("title", "Click for full size");
  figure.append(details(media, img as HTMLImageElement));
  const row = actionsFor(media, actions);
  if (row) figure.append(row);
  return figure;
}

function player(media: Media, actions: Actions): HTMLElement {
  const element = h(media.kind, { src: media.url, controls: "", preload: "metadata" }) as HTMLMediaElement;
  if (media.kind === "video") element.setAttribute("playsinline", "");
  const figure = h("figure", { class: `media ${media.kind}`, "data-where": media.where }, element);
  figure.append(details(media, element));
  const row = actionsFor(media, actions);
  if (row) figure.append(row);
  return figure;
}

export function mediaGrid(media: Media[], actions: Actions): HTMLElement | undefined {
  if (!media.length) return undefined;
  const grid = h("div", { class: "grid" });
  for (const item of media) grid.append(item.kind === "image" ? image(item, actions) : player(item, actions));
  return grid;
}

export function folded(text: string, label: string): HTMLElement {
  const lines = text.split("\n").length;
  if (text.length <= FOLD_CHARS && lines <= FOLD_LINES) return h("div", { class: "prose" }, text);
  const summary = `${label}: ${text.slice(0, 160).replace(/\s+/g, " ")}… (${text.length.toLocaleString("en-US")} characters)`;
  return h("details", { class: "prose folded" }, h("summary", {}, summary), h("div", { class: "prose" }, text));
}

function json(value: unknown, open: boolean): HTMLElement {
  const shown = JSON.stringify(withoutInlineData(value), null, 2) ?? "null";
  const attrs: Record<string, string> = { class: "json" };
  if (open && shown.length <= OPEN_JSON_CHARS) attrs.open = "";
  return h("details", attrs, h("summary", {}, "Output JSON"), h("pre", {}, shown));
}

export function errorBox(message: string): HTMLElement {
  return h("div", { class: "error", role: "alert" }, message);
}

export function header(endpoint: string, state: string, requestId?: string): HTMLElement {
  return h(
    "header",
    {},
    h("strong", { class: "endpoint" }, endpoint),
    badge(state),
    requestId ? h("code", { class: "request-id" }, requestId) : undefined,
  );
}

/** A finished request: its media side by side, its prose, its JSON; or its error. */
export function completed(result: RequestEnvelope, actions: Actions): HTMLElement {
  const failed = Boolean(result.error);
  const state = result.error_type === "client_cancelled" ? "CANCELLED" : failed ? "FAILED" : result.status;
  const section = h("section", { class: "result" }, header(result.endpoint_id, state, result.request_id));
  if (result.error) section.append(errorBox(result.error));
  const media = findMedia(result.output);
  const grid = mediaGrid(media, actions);
  if (grid) section.append(grid);
  for (const part of findTexts(result.output)) section.append(folded(part.text, part.where.replace(/^output\.?/, "")));
  if (result.saved?.length) {
    section.append(h("div", { class: "saved" }, h("span", {}, "Saved: "), ...result.saved.map((p) => h("code", {}, p))));
  }
  if (result.output !== undefined && result.output !== null) section.append(json(result.output, !grid));
  return section;
}

function galleryMedia(url: string): Media | undefined {
  const kind = kindOf(undefined, url);
  return kind ? { where: "media_urls", url, kind } : undefined;
}

/** list-requests: each recent request with its state and media. */
export function gallery(records: RequestRecord[], actions: Actions): HTMLElement {
  const section = h("section", { class: "gallery" });
  if (!records.length) section.append(h("p", { class: "note" }, "No requests yet."));
  for (const record of records) {
    const card = h("article", { class: "card", "data-request-id": record.request_id ?? "" });
    card.append(header(record.endpoint_id, record.state, record.request_id));
    card.append(h("time", { datetime: record.submitted_at }, new Date(record.submitted_at).toLocaleString()));
    if (record.error) card.append(errorBox(record.error));
    const media = (record.media_urls ?? []).map(galleryMedia).filter((m): m is Media => !!m);
    const grid = mediaGrid(media, actions);
    if (grid) card.append(grid);
    const live = ["IN_QUEUE", "IN_PROGRESS", "SUBMITTING", "CANCELLATION_REQUESTED"].includes(record.state);
    if (live && record.request_id && actions.follow) {
      const follow = actions.follow;
      const button = h("button", { type: "button", class: "follow" }, "Follow");
      button.addEventListener("click", () => follow(record));
      card.append(h("div", { class: "actions" }, button));
    }
    section.append(card);
  }
  return section;
}
