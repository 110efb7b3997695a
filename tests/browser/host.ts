// A small MCP Apps host for the browser tests, built on the official host side (`AppBridge` from
// @modelcontextprotocol/ext-apps) and the official TypeScript MCP client, talking to a real fal-mcp over
// streamable HTTP. It does what a chat host does: calls a tool, finds the tool's `ui://` resource, reads it,
// renders it in a sandboxed iframe under the CSP the resource declares, passes the tool's input and result in,
// proxies the view's tool calls and resource reads to the server, and follows the view's size.
// The tests drive it through `window.host` and watch both the page and the fake fal.

import { Client, StreamableHTTPClientTransport, type CallToolResult, type Tool } from "@modelcontextprotocol/client";
import {
  AppBridge,
  PostMessageTransport,
  getToolUiResourceUri,
  type McpUiHostCapabilities,
  type McpUiResourceCsp,
} from "@modelcontextprotocol/ext-apps/app-bridge";

const APPS = "io.modelcontextprotocol/ui";
const APP_MIME = "text/html;profile=mcp-app";

interface Options {
  theme?: "light" | "dark";
  capabilities?: McpUiHostCapabilities;
}

interface Recorded {
  sizes: { width?: number; height?: number }[];
  downloads: unknown[];
  links: string[];
  initialized: boolean;
  csp: string;
}

const FULL: McpUiHostCapabilities = {
  openLinks: {},
  downloadFile: {},
  serverTools: {},
  serverResources: {},
  logging: {},
};

/** The policy a host applies from `_meta.ui.csp` (SEP-1865): declared origins only, inline code allowed. */
function policy(csp: McpUiResourceCsp | undefined): string {
  const resources = (csp?.resourceDomains ?? []).join(" ");
  const connect = (csp?.connectDomains ?? []).join(" ") || "'none'";
  return [
    "default-src 'none'",
    "script-src 'unsafe-inline'",
    "style-src 'unsafe-inline'",
    `img-src data: blob: ${resources}`,
    `media-src data: blob: ${resources}`,
    `font-src data: ${resources}`,
    `connect-src ${connect}`,
    "frame-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
}

function withPolicy(html: string, csp: string): string {
  const meta = `<meta http-equiv="Content-Security-Policy" content="${csp.replaceAll('"', "&quot;")}">`;
  return html.replace(/<head>/i, `<head>${meta}`);
}

class Host {
  private client = new Client(
    { name: "fal-mcp browser test host", version: "1.0.0" },
    { capabilities: { extensions: { [APPS]: { mimeTypes: [APP_MIME] } } } as never },
  );
  private tools = new Map<string, Tool>();
  private bridge: AppBridge | undefined;
  recorded: Recorded = { sizes: [], downloads: [], links: [], initialized: false, csp: "" };

  async connect(): Promise<void> {
    await this.client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));
    for (const tool of (await this.client.listTools()).tools) this.tools.set(tool.name, tool);
  }

  /** Call a tool without showing anything, as a model's earlier turns would. */
  async quiet(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
    return (await this.client.callTool({ name, arguments: args })) as CallToolResult;
  }

  /** Call a tool as a chat host does: show its view, pass the input, then the result. */
  async call(name: string, args: Record<string, unknown>, options: Options = {}): Promise<CallToolResult> {
    const tool = this.tools.get(name);
    const uri = tool ? getToolUiResourceUri(tool) : undefined;
    if (!uri) throw new Error(`${name} names no view`);
    const read = await this.client.readResource({ uri });
    const content = read.contents[0] as { text: string; mimeType?: string; _meta?: { ui?: { csp?: McpUiResourceCsp } } };
    if (content.mimeType !== APP_MIME) throw new Error(`the view is served as ${content.mimeType}`);
    const csp = policy(content._meta?.ui?.csp);
    this.recorded = { sizes: [], downloads: [], links: [], initialized: false, csp };

    await this.bridge?.close();
    const frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "allow-scripts");
    frame.title = "fal-mcp view";
    document.getElementById("chat")!.replaceChildren(frame);

    const bridge = new AppBridge(
      this.client,
      { name: "fal-mcp browser test host", version: "1.0.0" },
      options.capabilities ?? FULL,
      {
        hostContext: {
          theme: options.theme ?? "light",
          displayMode: "inline",
          availableDisplayModes: ["inline"],
          platform: "web",
          containerDimensions: { width: 760, maxHeight: 6000 },
          toolInfo: { tool: tool! },
        },
      },
    );
    this.bridge = bridge;
    const initialized = new Promise<void>((resolve) => {
      bridge.oninitialized = () => {
        this.recorded.initialized = true;
        resolve();
      };
    });
    bridge.onsizechange = (size) => {
      this.recorded.sizes.push(size);
      if (size.height) frame.style.height = `${size.height}px`;
    };
    bridge.ondownloadfile = async (params) => {
      this.recorded.downloads.push(params);
      return {};
    };
    bridge.onopenlink = async ({ url }) => {
      this.recorded.links.push(url);
      return {};
    };
    await bridge.connect(new PostMessageTransport(frame.contentWindow!, frame.contentWindow!));
    frame.srcdoc = withPolicy(content.text, csp);
    await initialized;

    await bridge.sendToolInput({ arguments: args });
    const result = (await this.client.callTool({ name, arguments: args })) as CallToolResult;
    await bridge.sendToolResult(result);
    return result;
  }
}

declare global {
  interface Window {
    host: Host;
    hostReady: Promise<void>;
  }
}

window.host = new Host();
window.hostReady = window.host.connect();
