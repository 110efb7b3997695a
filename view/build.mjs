// Builds the view into one self-contained HTML document inside the Python package: the script (the official
// MCP Apps `App` SDK with its dependencies, and ours) bundled and minified by esbuild, the CSS inlined, nothing
// loaded from anywhere. Deterministic: the same inputs give the same bytes, and the first line after the doctype
// records a digest of the inputs, which the Python tests recompute (so a source change without a rebuild fails CI).
//
//   node build.mjs            write ../src/fal_mcp/server/view.html
//   node build.mjs --check    exit 1 when the committed file differs from a fresh build
//   node build.mjs --bundle ENTRY OUT   bundle another entry (the tests' host page) with these dependencies

import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const HERE = dirname(fileURLToPath(import.meta.url));
const OUTPUT = join(HERE, "..", "src", "fal_mcp", "server", "view.html");
const LIMIT_BYTES = 800 * 1024;

function walk(folder) {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(folder, entry.name)) : [join(folder, entry.name)],
  );
}

/** sha256 over every input, in path order: `path NUL bytes NUL` each (tests/test_view.py does the same). */
export function inputsDigest() {
  const files = ["package.json", "package-lock.json", "build.mjs", ...walk(join(HERE, "src")).map((f) => relative(HERE, f))];
  const hash = createHash("sha256");
  for (const file of files.map((f) => f.split("\\").join("/")).sort()) {
    hash.update(file + "\0");
    hash.update(readFileSync(join(HERE, file)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

async function bundle(entry, options = {}) {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: "iife",
    target: "es2020",
    platform: "browser",
    charset: "ascii",
    legalComments: "none",
    write: false,
    logLevel: "warning",
    nodePaths: [join(HERE, "node_modules")],
    ...options,
  });
  return result.outputFiles[0].text;
}

export async function html() {
  const script = (await bundle(join(HERE, "src", "main.ts"))).replaceAll("</script", "<\\/script");
  const style = readFileSync(join(HERE, "src", "style.css"), "utf8");
  const template = readFileSync(join(HERE, "src", "index.html"), "utf8");
  const stamp = `<!-- fal-mcp view, built by view/build.mjs (do not edit); inputs sha256:${inputsDigest()} -->`;
  return template
    .replace("<!doctype html>", `<!doctype html>\n${stamp}`)
    .replace("/*STYLE*/", () => style.trim())
    .replace("/*SCRIPT*/", () => script.trim());
}

const [command, ...rest] = process.argv.slice(2);
if (command === "--bundle") {
  writeFileSync(rest[1], await bundle(rest[0]));
} else {
  const built = await html();
  const size = Buffer.byteLength(built);
  if (size > LIMIT_BYTES) {
    console.error(`view.html is ${size} bytes, over the ${LIMIT_BYTES}-byte limit`);
    process.exit(1);
  }
  if (command === "--check") {
    const committed = readFileSync(OUTPUT, "utf8");
    if (committed !== built) {
      console.error("src/fal_mcp/server/view.html does not match its sources: run `npm run build` in view/");
      process.exit(1);
    }
  } else {
    writeFileSync(OUTPUT, built);
    console.log(`wrote ${relative(process.cwd(), OUTPUT)} (${size} bytes)`);
  }
}
