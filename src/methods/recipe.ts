// The pre-training recipe's schema, put together from the method registry: the keys every recipe
// has (src/pretrain/recipe.ts) and, for each registered method, its section (`semvlp`, `msp`,
// `vlmo`: the schema its strategy declares, registered with the method as `MethodDef.section`).
// A recipe is checked here, one floor above the strategies, because only the registry knows them all.
import { resolve } from "node:path";
import { checkRecipe, readRecipeJson, RECIPE_KEYS, type Recipe } from "../pretrain/recipe.ts";
import { Type, choice, type TSchema } from "../pretrain/schema.ts";
import { methodNames, getMethod } from "./method.ts";
import "./index.ts";

let cached: { names: string; schema: TSchema } | undefined;

/** The JSON schema of a pre-training recipe (every registered method's section). */
export function recipeSchema(): TSchema {
  const names = methodNames();
  if (cached?.names !== names.join()) {
    const sections = Object.fromEntries(names.map((n) => [n, Type.Optional(getMethod(n).section)]));
    const { $schema, method, description, model, data, train } = RECIPE_KEYS;
    cached = {
      names: names.join(),
      schema: Type.Object({ $schema, method: choice(names, { description: method.description }), description, model, data, train, ...sections }, {
        additionalProperties: false,
        title: "vlpkit pre-training recipe",
      }),
    };
  }
  return cached.schema;
}

/** Check a recipe object; throws naming the first offending key (e.g. `recipe.train.lr: expected a number ...`). */
export function validateRecipe(r: unknown, where = "recipe"): Recipe {
  return checkRecipe(recipeSchema(), r, where);
}

/** Read a recipe file (`--set` overrides applied, then checked); relative data paths are resolved against the current directory. */
export function loadRecipe(path: string, sets: string[] = []): Recipe {
  const r = validateRecipe(readRecipeJson(path, sets), path);
  if (r.data.world !== undefined) r.data.world = resolve(r.data.world);
  return r;
}
