// What a fal output holds, found the way the server finds it (fal_mcp/media/refs.py): every image, video and
// audio file, wherever it sits, and the prose (LLM replies, transcripts) worth reading as text.

export type Kind = "image" | "video" | "audio";

export interface Media {
  where: string;
  url: string;
  kind: Kind;
  contentType?: string;
  fileName?: string;
  size?: number;
  width?: number;
  height?: number;
}

export interface TextPart {
  where: string;
  text: string;
}

const MAX_MEDIA = 100;
const MAX_DEPTH = 24;
const INLINE_THRESHOLD = 256;

const EXTENSIONS: Record<string, Kind> = {};
for (const ext of ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff", "avif", "heic"]) EXTENSIONS[ext] = "image";
for (const ext of ["mp4", "webm", "mov", "mkv", "avi", "m4v"]) EXTENSIONS[ext] = "video";
for (const ext of ["mp3", "wav", "ogg", "flac", "m4a", "aac", "opus"]) EXTENSIONS[ext] = "audio";

/** Keys whose strings repeat the input rather than say something new. */
const NOT_PROSE = new Set(["prompt", "negative_prompt", "content_type", "file_name", "url", "request_id"]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

function integer(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) ? value : undefined;
}

export function dataUriType(uri: string): string | undefined {
  if (uri.slice(0, 5).toLowerCase() !== "data:") return undefined;
  const comma = uri.slice(0, 300).indexOf(",");
  const head = comma >= 0 ? uri.slice(5, comma) : "";
  return head.split(";")[0].trim().toLowerCase() || "text/plain";
}

function extensionOf(name: string): string {
  let path = name;
  try {
    path = new URL(name).pathname;
  } catch {
    // a bare file name
  }
  const dot = path.lastIndexOf(".");
  return dot >= 0 ? path.slice(dot + 1).toLowerCase() : "";
}

export function kindOf(contentType?: string, name?: string): Kind | undefined {
  if (contentType) {
    const major = contentType.split("/")[0].toLowerCase();
    if (major === "image" || major === "video" || major === "audio") return major;
  }
  return name ? EXTENSIONS[extensionOf(name)] : undefined;
}

function isUrl(value: string): boolean {
  const head = value.slice(0, 8).toLowerCase();
  return head.startsWith("https://") || head.startsWith("http://");
}

function fromString(value: string, where: string): Media | undefined {
  const inlineType = dataUriType(value);
  if (inlineType !== undefined) {
    const kind = kindOf(inlineType);
    return kind ? { where, url: value, kind, contentType: inlineType } : undefined;
  }
  if (!isUrl(value)) return undefined;
  const kind = kindOf(undefined, value);
  return kind ? { where, url: value, kind } : undefined;
}

function fromFile(entry: Record<string, unknown>, where: string): Media | undefined {
  const url = entry.url;
  if (typeof url !== "string") return undefined;
  const contentType = text(entry.content_type) ?? dataUriType(url);
  const fileName = text(entry.file_name);
  const kind = kindOf(contentType, fileName) ?? (dataUriType(url) ? undefined : kindOf(undefined, url));
  if (!kind) return undefined;
  return {
    where,
    url,
    kind,
    contentType,
    fileName,
    size: integer(entry.file_size),
    width: integer(entry.width),
    height: integer(entry.height),
  };
}

/** Every image, video and audio file in `value`, in order. */
export function findMedia(value: unknown, where = "output", depth = 0, found: Media[] = []): Media[] {
  if (depth > MAX_DEPTH || found.length >= MAX_MEDIA) return found;
  if (typeof value === "string") {
    const media = fromString(value, where);
    if (media) found.push(media);
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => findMedia(item, `${where}[${index}]`, depth + 1, found));
  } else if (isObject(value)) {
    const media = fromFile(value, where);
    if (media) found.push(media);
    else for (const [key, item] of Object.entries(value)) findMedia(item, `${where}.${key}`, depth + 1, found);
  }
  return found;
}

/** Strings of prose in an output (an LLM's reply, a transcript): not URLs, not echoes of the input. */
export function findTexts(value: unknown, where = "output", depth = 0, found: TextPart[] = []): TextPart[] {
  if (depth > 4) return found;
  if (typeof value === "string") {
    if (/\s/.test(value.trim()) && !isUrl(value) && dataUriType(value) === undefined) found.push({ where, text: value });
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => findTexts(item, `${where}[${index}]`, depth + 1, found));
  } else if (isObject(value)) {
    if (typeof value.url === "string") return found; // a file object
    for (const [key, item] of Object.entries(value)) {
      if (!NOT_PROSE.has(key)) findTexts(item, `${where}.${key}`, depth + 1, found);
    }
  }
  return found;
}

/** `value` with each long `data:` URI replaced by a short note, for showing as JSON. */
export function withoutInlineData(value: unknown): unknown {
  if (typeof value === "string") {
    const type = dataUriType(value);
    return type !== undefined && value.length > INLINE_THRESHOLD
      ? `<${type} data URI, ${value.length.toLocaleString("en-US")} characters>`
      : value;
  }
  if (Array.isArray(value)) return value.map(withoutInlineData);
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withoutInlineData(v)]));
  return value;
}

export function formatBytes(size: number): string {
  if (size < 1000) return `${size} B`;
  if (size < 1_000_000) return `${(size / 1000).toFixed(1)} KB`;
  return `${(size / 1_000_000).toFixed(1)} MB`;
}
