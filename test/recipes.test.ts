// The published recipe schemas (recipes/schema.json, recipes/finetune.schema.json) are the ones the
// TypeBox definitions give (`npm run schema` writes them), and every recipe under recipes/ names its
// schema with "$schema" and validates against it with ajv, as an editor would check it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { Ajv } from "ajv";
import { recipeSchemaFiles, schemaFileOf } from "../src/tasks/recipe_schemas.ts";

const recipes = new URL("../recipes/", import.meta.url).pathname;
const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".json") && !e.name.endsWith("schema.json") ? [join(dir, e.name)] : []));

test("the committed recipe schemas are the generated ones (npm run schema)", async () => {
  for (const [file, json] of Object.entries(await recipeSchemaFiles())) {
    assert.equal(readFileSync(join(recipes, file), "utf8"), json, `recipes/${file} is stale: run npm run schema`);
  }
});

test("every recipe names its schema and validates against it", () => {
  const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
  ajv.addKeyword({ keyword: "why", schemaType: "string" });
  const validators = new Map<string, ReturnType<Ajv["compile"]>>();
  const all = files(recipes);
  assert.ok(all.length >= 30, `${all.length} recipes`);
  for (const f of all) {
    const recipe = JSON.parse(readFileSync(f, "utf8")) as Record<string, unknown>;
    const name = relative(recipes, f);
    const want = schemaFileOf(recipe);
    assert.equal(typeof recipe.$schema, "string", `${name}: no "$schema"`);
    assert.equal(resolve(dirname(f), recipe.$schema as string), join(recipes, want), `${name}: "$schema" should point to recipes/${want}`);
    if (!validators.has(want)) validators.set(want, ajv.compile(JSON.parse(readFileSync(join(recipes, want), "utf8"))));
    const v = validators.get(want)!;
    assert.ok(v(recipe), `${name}: ${ajv.errorsText(v.errors)}`);
  }
});

test("the schemas catch what the loaders catch: unknown keys, wrong types, out-of-range values", () => {
  const ajv = new Ajv({ strict: true, allowUnionTypes: true });
  ajv.addKeyword({ keyword: "why", schemaType: "string" });
  const pre = ajv.compile(JSON.parse(readFileSync(join(recipes, "schema.json"), "utf8")));
  const ft = ajv.compile(JSON.parse(readFileSync(join(recipes, "finetune.schema.json"), "utf8")));
  const base = { method: "vlmo", model: { preset: "tiny" }, data: { world: "w" } };
  assert.ok(pre(base));
  assert.ok(!pre({ ...base, train: { lr: "fast" } }));
  assert.ok(!pre({ ...base, vlmo: { mimTarget: "edges" } }));
  assert.ok(!pre({ ...base, semvlp: { singelRatio: 0.5 } }));
  assert.ok(!pre({ ...base, data: { sources: [{ name: "c", format: "karpathy", json: "a.json" }] } }), "a karpathy source without images");
  assert.ok(pre({ ...base, data: { sources: [{ name: "c", format: "karpathy", json: "a.json", images: "img", eval: { split: ["val"] } }] } }));
  const task = { task: "gqa", data: { world: "w" } };
  assert.ok(ft({ ...task, options: { stages: ["balanced"], balanced: { ratio: 2 } } }));
  assert.ok(!ft({ ...task, options: { stages: ["some"] } }), "a GQA stage that does not exist");
  assert.ok(!ft({ ...task, task: "vqa", options: { stages: ["all"] } }), "GQA's stages on VQA");
  assert.ok(!ft({ ...task, task: "retrieval", options: { margin: 2 } }));
});
