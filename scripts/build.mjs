#!/usr/bin/env node
// Compiles src/ to dist/ for the published package (`npm run build`): JavaScript, declarations and
// source maps from `tsc -p tsconfig.build.json`, then what tsc does not do:
//   - module URLs handed to worker threads (`new URL("./builder.ts", import.meta.url)`) are strings
//     to tsc, so they are pointed at the emitted `.js` here;
//   - src/data/loader_worker.mjs registers tsx before importing the TypeScript worker; the compiled
//     package gets a bootstrap that imports the compiled worker directly;
//   - the web app's static files (src/serve/web) are copied.
// The repository itself never needs dist/: bin/vlp.js and the tests run the sources through tsx.
import { execFileSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit", cwd: root });

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

// new URL("./x.ts", import.meta.url) -> new URL("./x.js", import.meta.url)
const urlRe = /new URL\((["'])(\.\.?\/[^"']+)\.ts\1,\s*import\.meta\.url\)/g;
const left = [];
for (const file of files(dist).filter((f) => f.endsWith(".js"))) {
  const text = readFileSync(file, "utf8");
  const out = text.replace(urlRe, (_m, q, path) => `new URL(${q}${path}.js${q}, import.meta.url)`);
  if (out !== text) writeFileSync(file, out);
  // any other relative `.ts` string left in the JavaScript would fail at run time: refuse to ship it
  // (tsc wraps computed import() specifiers in a helper that rewrites them at run time)
  for (const m of out.matchAll(/(__rewriteRelativeImportExtension\()?["'`](\.\.?\/[^"'`\s]+\.ts)["'`]/g)) {
    if (!m[1]) left.push(`${relative(root, file)}: ${m[2]}`);
  }
}
if (left.length) {
  console.error(`build: relative .ts specifiers left in dist/ (use import() or new URL("./x.ts", import.meta.url)):\n  ${left.join("\n  ")}`);
  process.exit(1);
}

writeFileSync(
  join(dist, "data", "loader_worker.mjs"),
  "// Worker bootstrap of the compiled package: the worker module is already JavaScript.\nawait import(\"./loader_worker.js\");\n",
);
cpSync(join(root, "src", "serve", "web"), join(dist, "serve", "web"), { recursive: true });
console.log(`build: ${relative(process.cwd(), dist) || "."} written`);
