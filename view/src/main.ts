// The fal-mcp view: shows what run-model, get-result and list-requests returned, inside the host's chat.
// It talks to the host only through the official MCP Apps SDK (`App`): the tool's input and result arrive as
// notifications; following a live job, cancelling it and reading its history go back through the host.

import {
  App,
  applyDocumentTheme,
  applyHostStyleVariables,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps";
import { LiveJob, textOf } from "./live";
import type { Media } from "./media";
import {
  completed,
  errorBox,
  folded,
  gallery,
  h,
  type Actions,
  type RequestEnvelope,
  type RequestRecord,
} from "./render";

type ToolAnswer = Awaited<ReturnType<App["callServerTool"]>>;

const ACTIVE = new Set(["IN_QUEUE", "IN_PROGRESS"]);

const root = document.getElementById("root") as HTMLElement;
const app = new App({ name: "fal-mcp view", version: "1.0.0" }, {}, { autoResize: true });
let live: LiveJob | undefined;

function themed(context: McpUiHostContext | undefined): void {
  if (context?.theme) applyDocumentTheme(context.theme);
  if (context?.styles?.variables) applyHostStyleVariables(context.styles.variables);
}

function fileName(media: Media): string {
  if (media.fileName) return media.fileName;
  try {
    return decodeURIComponent(new URL(media.url).pathname.split("/").pop() ?? "") || `${media.kind}`;
  } catch {
    return media.kind;
  }
}

function actions(): Actions {
  const host = app.getHostCapabilities() ?? {};
  return {
    save: host.downloadFile
      ? async (media) => {
          const answer = await app.downloadFile({
            contents: [{ type: "resource_link", uri: media.url, name: fileName(media), mimeType: media.contentType }],
          });
          if (answer.isError) throw new Error("not saved");
          return "Saved";
        }
      : undefined,
    open: host.openLinks ? (url) => void app.openLink({ url }) : undefined,
    follow: host.serverTools ? follow : undefined,
  };
}

function show(element: HTMLElement): void {
  live?.stop();
  live = undefined;
  root.replaceChildren(element);
}

async function submittedAt(requestId: string): Promise<number | undefined> {
  try {
    const read = await app.readServerResource({ uri: `fal://requests/${requestId}` });
    const first = read.contents[0];
    const record = first && "text" in first ? (JSON.parse(first.text) as RequestRecord) : undefined;
    const when = record ? Date.parse(record.submitted_at) : NaN;
    return Number.isNaN(when) ? undefined : when;
  } catch {
    return undefined; // no history on this server, or the host does not proxy resource reads
  }
}

function liveJob(handle: { endpoint_id: string; request_id: string }, first: RequestEnvelope, since?: number): void {
  const job = new LiveJob(app, handle, first, since ?? Date.now(), render);
  show(job.element);
  live = job;
  const host = app.getHostCapabilities() ?? {};
  if (host.serverTools) job.start();
  else job.still(`This host does not let the view follow the request; ask for get-result with ${handle.request_id}.`);
  if (since === undefined && host.serverResources) {
    void submittedAt(handle.request_id).then((when) => when !== undefined && job.startFrom(when));
  }
}

function follow(record: RequestRecord): void {
  if (!record.request_id) return;
  const handle = { endpoint_id: record.endpoint_id, request_id: record.request_id };
  const since = Date.parse(record.submitted_at);
  liveJob(handle, { ...handle, status: record.state }, Number.isNaN(since) ? undefined : since);
}

function request(result: RequestEnvelope): void {
  if (ACTIVE.has(result.status) && result.request_id) {
    liveJob({ endpoint_id: result.endpoint_id, request_id: result.request_id }, result);
  } else {
    show(completed(result, actions()));
  }
}

function render(answer: ToolAnswer | RequestEnvelope): void {
  if (!("content" in answer)) return request(answer);
  if (answer.isError) return show(errorBox(textOf(answer)));
  const data = answer.structuredContent as Record<string, unknown> | undefined;
  if (data && Array.isArray(data.requests)) return show(gallery(data.requests as RequestRecord[], actions()));
  if (data && typeof data.endpoint_id === "string" && typeof data.status === "string") {
    return request(data as unknown as RequestEnvelope);
  }
  show(folded(textOf(answer), "Result"));
}

app.ontoolinput = ({ arguments: input }) => {
  const endpoint = typeof input?.endpoint_id === "string" ? input.endpoint_id : "fal";
  const prompt = (input?.input as Record<string, unknown> | undefined)?.prompt;
  show(
    h(
      "section",
      { class: "pending" },
      h("header", {}, h("strong", { class: "endpoint" }, endpoint), h("span", { class: "spinner" })),
      typeof prompt === "string" ? h("p", { class: "note" }, prompt) : undefined,
    ),
  );
};
app.ontoolresult = (result) => render(result);
app.ontoolcancelled = () => show(errorBox("The call was cancelled before it answered."));
app.onhostcontextchanged = (context) => themed(context);
app.onteardown = async () => {
  live?.stop();
  return {};
};

void app.connect().then(() => themed(app.getHostContext()));
