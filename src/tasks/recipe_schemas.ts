// The recipe schemas published beside the recipes (`npm run schema` writes them; a test checks the
// committed files equal these): recipes/schema.json for pre-training recipes (every registered
// method's section) and recipes/finetune.schema.json for fine-tuning recipes (every task's options).
// A recipe names its schema with a relative "$schema" so that editors complete and check it.
import { recipeSchema } from "../methods/index.ts";
import { finetuneFileSchema } from "./task.ts";
import type { TSchema } from "../pretrain/schema.ts";

/** The schema files, relative to recipes/. */
export const SCHEMA_FILES = { pretrain: "schema.json", finetune: "finetune.schema.json" } as const;

const text = (s: TSchema) => `${JSON.stringify({ $schema: "http://json-schema.org/draft-07/schema#", ...s }, null, 2)}\n`;

/** Each schema file's path (relative to recipes/) and its JSON text. */
export async function recipeSchemaFiles(): Promise<Record<string, string>> {
  return { [SCHEMA_FILES.pretrain]: text(recipeSchema()), [SCHEMA_FILES.finetune]: text(await finetuneFileSchema()) };
}

/** Which schema a recipe file takes: fine-tuning recipes name a task. */
export function schemaFileOf(recipe: Record<string, unknown>): string {
  return "task" in recipe ? SCHEMA_FILES.finetune : SCHEMA_FILES.pretrain;
}
