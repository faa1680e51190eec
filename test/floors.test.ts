// The floors of src/: a folder imports only from its own folder and from folders on lower floors, so
// every floor can be read, tested and reused without the ones above it. Checked by parsing the imports
// of every source file (static, dynamic and re-exports).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

const SRC = resolve(import.meta.dirname, "../src");

/** Lowest first; folders on one floor may not import each other. */
const FLOORS: string[][] = [
  ["engine"],
  ["text", "vision"],
  ["data"],
  ["objectives"],
  ["models"],
  ["train"],
  ["pretrain"],
  ["methods"],
  ["tasks"],
  ["baselines", "serve"],
  ["cli"],
];
const floorOf = new Map(FLOORS.flatMap((folders, i) => folders.map((f) => [f, i] as const)));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.(ts|mts|mjs|js)$/.test(name) ? [p] : [];
  });
}

/** The relative specifiers a file imports: `import ... from`, `export ... from`, `import "x"` and `import("x")`. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^"'`;]*?\bfrom\s*["']([^"']+)["']|(?:^|[\s;])import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec.startsWith(".")) out.push(spec);
  }
  return out;
}

const topFolder = (file: string): string => relative(SRC, file).split(sep)[0];

test("the import parser sees static, type-only, side-effect, re-export and dynamic imports", () => {
  const text = [
    'import { a } from "../engine/a.ts";',
    'import type { B } from "../models/b.ts";',
    'import "../data/c.ts";',
    'export { d } from "./d.ts";',
    "export * from '../text/e.ts';",
    'const f = await import("../cli/f.ts");',
    'import {\n  g,\n  h,\n} from "../vision/g.ts";',
    'import { tidy } from "node:test";',
  ].join("\n");
  assert.deepEqual(importsOf(text), ["../engine/a.ts", "../models/b.ts", "../data/c.ts", "./d.ts", "../text/e.ts", "../cli/f.ts", "../vision/g.ts"]);
});

test("src/ floors: engine < text, vision < data < objectives < models < train < pretrain < methods < tasks < baselines, serve < cli", () => {
  const files = sources(SRC);
  const folders = new Set(files.map(topFolder).filter((f) => !f.includes(".")));
  assert.deepEqual([...folders].filter((f) => !floorOf.has(f)), [], "every folder of src/ has a floor (add new ones to FLOORS)");
  const wrong: string[] = [];
  for (const file of files) {
    const from = topFolder(file);
    if (!floorOf.has(from)) continue;
    for (const spec of importsOf(readFileSync(file, "utf8"))) {
      const target = resolve(dirname(file), spec);
      const rel = relative(SRC, target);
      if (rel.startsWith("..")) {
        wrong.push(`${relative(SRC, file)} imports ${spec}: outside src/`);
        continue;
      }
      const to = rel.split(sep)[0];
      if (to === from) continue;
      const a = floorOf.get(from)!, b = floorOf.get(to);
      if (b === undefined || b >= a) wrong.push(`${relative(SRC, file)} (${from}, floor ${a}) imports ${spec} (${to}, floor ${b ?? "?"})`);
    }
  }
  assert.deepEqual(wrong, [], `imports that climb the floors:\n${wrong.join("\n")}`);
});
