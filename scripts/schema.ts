// Writes the recipe schemas (recipes/schema.json, recipes/finetune.schema.json) from the TypeBox
// definitions in src/ (src/tasks/recipe_schemas.ts); `npm run schema`. test/recipes.test.ts checks
// the committed files equal what this writes.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { recipeSchemaFiles } from "../src/tasks/recipe_schemas.ts";

const dir = new URL("../recipes/", import.meta.url).pathname;
for (const [file, json] of Object.entries(await recipeSchemaFiles())) {
  writeFileSync(join(dir, file), json);
  console.log(`wrote ${join("recipes", file)}`);
}
