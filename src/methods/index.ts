// The registered methods: importing this module registers each one (src/methods/method.ts says what
// a method provides). A fourth method is one more file here, imported below, plus its model in src/models/.
import "./semvlp.ts";
import "./msp.ts";
import "./vlmo.ts";

export { getMethod, methodNames, registerMethod, type MethodDef, type ModelSpec, type TaskNet, type RetrievalModel, type RankOptions, type ModelDescription } from "./method.ts";
export { loadRun, readRunConfig, readRunInfo, writeRunInfo, writeRunConfig, modelFile, vlpkitVersion, vocabIdentity, type RunConfig, type RunInfo, type LoadedRun, type LoadRunOptions, type TaskName } from "./run.ts";
export { recipeSchema, validateRecipe, loadRecipe } from "./recipe.ts";
