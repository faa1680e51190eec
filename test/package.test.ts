// vlpkit as a library: builds dist/ (`npm run build`), packs the package (`npm pack`), installs the
// tarball into a fresh project outside the repository, type-checks and compiles a small TypeScript
// program against the installed package's declarations, and runs it with plain node (no tsx): it
// builds a tiny VLMo through the public API, runs a fusion pass, saves the weights as safetensors,
// loads them into a second model and checks that both give the same outputs. Then `npx vlp --help`
// from the installed package, which runs the compiled CLI.
//
// Installing: the tarball is unpacked to node_modules/vlpkit (what npm does with the package itself)
// and each of its declared `dependencies` is linked from this repository's node_modules, so the
// test needs no network and takes seconds; a dist/ import of anything not declared fails. Set
// VLPKIT_PACK_NPM_INSTALL=1 to run a real `npm install <tarball>` instead (the registry or npm's cache).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, ...env }, timeout: 240_000 });
  if (r.status !== 0) assert.fail(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const CONSUMER = `
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VLMoModel, vlmoConfig, manualSeed, noGrad, tidy, tensor, ones, randn, saveStateDict, loadStateDictFile, type Tensor } from "vlpkit";
import { VLMO_PRESETS, type VLMoFusionOutput } from "vlpkit/models";
import { F } from "vlpkit/engine";
import { maskTokens } from "vlpkit/objectives";
import { Loader } from "vlpkit/data";
import { train } from "vlpkit/train";

const config = vlmoConfig("tiny", { dropPathRate: 0, textDropout: 0 });
if (config.hiddenSize !== VLMO_PRESETS.tiny.hiddenSize) throw new Error("preset mismatch");
manualSeed(0);
const model = new VLMoModel(config).eval();
const ids = tensor([[101, 1037, 2417, 4937, 102]], { dtype: "int64" });
const mask = ones([1, 5], { dtype: "int64" });
const pixels = randn([1, 3, config.imageSize, config.imageSize]);

function outputs(m: VLMoModel): number[][] {
  return noGrad(() => tidy(() => {
    const f: VLMoFusionOutput = m.inferFusion(ids, mask, pixels);
    const text = m.inferText(ids, mask);
    const itm: Tensor = F.softmax(m.itmLogits(f), -1);
    return [itm.toArray(), f.pooled.toArray(), text.hidden.toArray()];
  }));
}
const before = outputs(model);

const dir = mkdtempSync(join(tmpdir(), "vlpkit-consumer-"));
const file = join(dir, "model.safetensors");
saveStateDict(file, model);
manualSeed(1); // a different initialisation, replaced by the saved weights
const loaded = new VLMoModel(config).eval();
const { missing, unexpected } = loaded.loadStateDict(loadStateDictFile(file), { strict: true });
const after = outputs(loaded);
rmSync(dir, { recursive: true, force: true });

let maxDiff = 0;
before.forEach((a, i) => a.forEach((v, j) => { maxDiff = Math.max(maxDiff, Math.abs(v - after[i][j])); }));
const finite = before.every((a) => a.every(Number.isFinite));
console.log(JSON.stringify({
  params: model.parameters().length, itm: before[0], maxDiff, finite, missing: missing.length, unexpected: unexpected.length,
  api: [typeof maskTokens, typeof Loader, typeof train],
}));
`;

test("npm pack: the installed package builds, runs, saves and loads a tiny VLMo through its public API; npx vlp --help works", { timeout: 300_000 }, () => {
  const t0 = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), "vlpkit-pack-"));
  try {
    run(process.execPath, [join(ROOT, "scripts", "build.mjs")], ROOT);
    const built = Date.now();
    // the build ran just now: --ignore-scripts skips prepack's second build
    const packed = JSON.parse(run(NPM, ["pack", "--json", "--ignore-scripts", "--pack-destination", tmp], ROOT)) as { filename: string; files: { path: string }[] }[];
    const tarball = join(tmp, packed[0].filename);
    const shipped = new Set(packed[0].files.map((f) => f.path));
    for (const f of ["dist/index.js", "dist/index.d.ts", "dist/engine/index.js", "dist/models/index.d.ts", "dist/cli/vlp.js", "dist/data/loader_worker.mjs", "dist/serve/web/index.html", "bin/vlp.js", "native/binding.gyp", "scripts/libtorch.mjs"]) {
      assert.ok(shipped.has(f), `the tarball ships ${f}`);
    }
    assert.ok(![...shipped].some((f) => f.startsWith("src/") || f.startsWith("test/")), "sources and tests stay out of the tarball");
    const addonShipped = shipped.has("native/build/Release/vlpkit.node");
    assert.equal(addonShipped, existsSync(join(ROOT, "native", "build", "Release", "vlpkit.node")), "the built addon is shipped when there is one");

    const app = join(tmp, "app");
    mkdirSync(join(app, "src"), { recursive: true });
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "vlpkit-consumer", version: "0.0.0", private: true, type: "module" }));
    if (process.env.VLPKIT_PACK_NPM_INSTALL === "1") {
      run(NPM, ["install", "--no-audit", "--no-fund", tarball], app);
    } else {
      const pkgDir = join(app, "node_modules", "vlpkit");
      mkdirSync(pkgDir, { recursive: true });
      execFileSync("tar", ["-xzf", tarball, "-C", pkgDir, "--strip-components=1"]);
      const manifest = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { dependencies: Record<string, string>; bin: Record<string, string> };
      for (const dep of Object.keys(manifest.dependencies)) {
        const link = join(app, "node_modules", dep);
        mkdirSync(dirname(link), { recursive: true });
        symlinkSync(join(ROOT, "node_modules", dep), link, "dir");
      }
      mkdirSync(join(app, "node_modules", ".bin"));
      for (const [name, target] of Object.entries(manifest.bin)) symlinkSync(join("..", "vlpkit", target), join(app, "node_modules", ".bin", name));
    }
    const installed = Date.now();
    if (!addonShipped) return; // nothing to run without an addon (the packing checks above still hold)

    // a consumer's TypeScript: strict NodeNext, declarations of the installed package checked too
    writeFileSync(join(app, "src", "main.ts"), CONSUMER);
    writeFileSync(join(app, "tsconfig.json"), JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, skipLibCheck: false, outDir: "out", types: ["node"], typeRoots: [join(ROOT, "node_modules", "@types")], lib: ["ES2023"] },
      include: ["src"],
    }));
    run(process.execPath, [TSC, "-p", "."], app);
    const compiled = Date.now();
    const result = JSON.parse(run(process.execPath, [join(app, "out", "main.js")], app, { VLP_NUM_THREADS: "1" }).trim().split("\n").at(-1)!) as {
      params: number; itm: number[]; maxDiff: number; finite: boolean; missing: number; unexpected: number; api: string[];
    };
    assert.ok(result.params > 0, "the model has parameters");
    assert.equal(result.itm.length, 2);
    assert.ok(result.finite, "the outputs are finite");
    assert.equal(result.missing, 0);
    assert.equal(result.unexpected, 0);
    assert.equal(result.maxDiff, 0, "the loaded model gives the saved model's outputs");
    assert.deepEqual(result.api, ["function", "function", "function"]);

    const help = run("npx", ["--no-install", "vlp", "--help"], app);
    assert.match(help, /^vlp — vision-language pre-training on libtorch/);
    assert.match(help, /pretrain --recipe FILE/);
    const info = run("npx", ["--no-install", "vlp", "info"], app, { VLP_NUM_THREADS: "1" });
    assert.match(info, /libtorch/i);
    const done = Date.now();
    console.log(`package test: build ${built - t0} ms, pack + install ${installed - built} ms, consumer tsc ${compiled - installed} ms, run + vlp ${done - compiled} ms`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
