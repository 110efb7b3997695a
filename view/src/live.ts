// A request still queued or running, kept live through the host: get-status (with its log lines) until it
// completes, then get-result, whose output replaces the panel in place. One Cancel button calls cancel.

import type { App } from "@modelcontextprotocol/ext-apps";
import { badge, h, type LogLine, type RequestEnvelope } from "./render";

type ToolAnswer = Awaited<ReturnType<App["callServerTool"]>>;

export interface Handle {
  endpoint_id: string;
  request_id: string;
}

interface StatusLike {
  status: string;
  queue_position?: number;
  logs?: LogLine[];
  error?: string;
  error_type?: string;
}

const FIRST_DELAY_MS = 700;
const MAX_DELAY_MS = 5000;
const MAX_LOG_LINES = 60;

export function textOf(answer: ToolAnswer): string {
  const block = answer.content.find((item) => item.type === "text");
  return block && "text" in block ? block.text : "The server sent no message.";
}

function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(s / 60);
  const hours = Math.floor(minutes / 60);
  const mm = hours ? String(minutes % 60).padStart(2, "0") : String(minutes);
  return `${hours ? `${hours}:` : ""}${mm}:${String(s % 60).padStart(2, "0")}`;
}

export class LiveJob {
  readonly element: HTMLElement;
  private readonly state: HTMLElement;
  private readonly position: HTMLElement;
  private readonly elapsed: HTMLElement;
  private readonly logs: HTMLElement;
  private readonly note: HTMLElement;
  private readonly cancelButton: HTMLButtonElement;
  private delay = FIRST_DELAY_MS;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  private last = "";

  constructor(
    private readonly app: App,
    private readonly handle: Handle,
    first: StatusLike,
    private startedAt: number,
    private readonly finished: (answer: ToolAnswer | RequestEnvelope) => void,
  ) {
    this.state = h("span", { class: "live-state" });
    this.position = h("span", { class: "position" });
    this.elapsed = h("span", { class: "elapsed", title: "time since it was submitted" });
    this.logs = h("ol", { class: "logs" });
    this.note = h("p", { class: "note" });
    this.cancelButton = h("button", { type: "button", class: "cancel" }, "Cancel") as HTMLButtonElement;
    this.cancelButton.addEventListener("click", () => void this.cancel());
    this.element = h(
      "section",
      { class: "live", "aria-live": "polite" },
      h("header", {}, h("strong", { class: "endpoint" }, handle.endpoint_id), h("code", { class: "request-id" }, handle.request_id)),
      h("div", { class: "live-head" }, h("span", { class: "spinner", "aria-hidden": "true" }), this.state, this.position, this.elapsed, this.cancelButton),
      this.logs,
      this.note,
    );
    this.show(first);
  }

  /** Follow the request until it ends (only where the host proxies tool calls to this server). */
  start(): void {
    this.tick();
    this.ticker = setInterval(() => this.tick(), 1000);
    this.timer = setTimeout(() => void this.poll(), FIRST_DELAY_MS);
  }

  /** A view that cannot call tools shows the state it was given, and says how to go on. */
  still(message: string): void {
    this.cancelButton.remove();
    this.element.classList.add("still");
    this.note.textContent = message;
    this.tick();
  }

  startFrom(epochMs: number): void {
    this.startedAt = epochMs;
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.ticker);
  }

  private tick(): void {
    this.elapsed.textContent = clock((Date.now() - this.startedAt) / 1000);
  }

  private show(status: StatusLike): boolean {
    const shown = JSON.stringify([status.status, status.queue_position, status.logs?.length]);
    const changed = shown !== this.last;
    this.last = shown;
    this.element.dataset.state = status.status;
    this.state.replaceChildren(badge(status.status));
    this.position.textContent =
      status.status === "IN_QUEUE" && status.queue_position !== undefined ? `position ${status.queue_position}` : "";
    const lines = (status.logs ?? []).slice(-MAX_LOG_LINES);
    this.logs.replaceChildren(
      ...lines.map((line) => h("li", { class: `log ${(line.level ?? "info").toLowerCase()}` }, line.message ?? "")),
    );
    return changed;
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    let changed = false;
    try {
      const answer = await this.app.callServerTool({
        name: "get-status",
        arguments: { request_id: this.handle.request_id, endpoint_id: this.handle.endpoint_id, logs: true },
      });
      if (this.stopped) return;
      if (answer.isError) {
        this.note.textContent = textOf(answer);
      } else {
        const status = answer.structuredContent as unknown as StatusLike;
        this.note.textContent = "";
        changed = this.show(status);
        if (status.status === "COMPLETED") return void (await this.complete(status));
      }
    } catch {
      this.note.textContent = "The server did not answer; trying again.";
    }
    this.delay = changed ? FIRST_DELAY_MS : Math.min(this.delay * 1.5, MAX_DELAY_MS);
    this.timer = setTimeout(() => void this.poll(), this.delay);
  }

  private async complete(status: StatusLike): Promise<void> {
    this.stop();
    if (status.error) {
      this.finished({ ...this.handle, status: "COMPLETED", error: status.error, error_type: status.error_type });
      return;
    }
    try {
      this.finished(
        await this.app.callServerTool({
          name: "get-result",
          arguments: { request_id: this.handle.request_id, endpoint_id: this.handle.endpoint_id },
        }),
      );
    } catch {
      this.note.textContent = "The request completed, but its result could not be fetched; ask for get-result.";
    }
  }

  private async cancel(): Promise<void> {
    this.cancelButton.disabled = true;
    this.cancelButton.textContent = "Cancelling…";
    try {
      const answer = await this.app.callServerTool({
        name: "cancel",
        arguments: { request_id: this.handle.request_id, endpoint_id: this.handle.endpoint_id },
      });
      if (answer.isError) {
        this.note.textContent = textOf(answer);
        this.cancelButton.disabled = false;
        this.cancelButton.textContent = "Cancel";
        return;
      }
    } catch {
      this.note.textContent = "The cancel did not reach the server; try again.";
      this.cancelButton.disabled = false;
      this.cancelButton.textContent = "Cancel";
      return;
    }
    clearTimeout(this.timer);
    this.delay = FIRST_DELAY_MS;
    void this.poll();
  }
}
