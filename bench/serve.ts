// Serving benchmark, one run:
//   1. index build rate: real images of a synthetic world embedded by `buildIndex` (images/s, captions/s);
//   2. POST /search over 10k and 100k indexed items: `vlp serve` in a child process, load from a
//      second child process (closed loop, C connections, bounded in time) on loopback: requests/s,
//      p50/p99 latency. The 10k/100k indexes hold random unit vectors (embedding 100k images here
//      would take too long); each query is a real caption embedded by the text encoder;
//   3. exact search alone (in process, no HTTP) at 100k and 1M vectors, float32 and float16.
//
//   node --import tsx bench/serve.ts [--checkpoint RUN] [--world DIR] [--images N] [--seconds S] [--concurrency C]
// Without --checkpoint a randomly initialised vlmo-tiny is written (speed does not depend on the weights).
import { parseArgs } from "node:util";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { once } from "node:events";

const CLI = new URL("../src/cli/vlp.ts", import.meta.url).pathname;

// ---- the load generator (runs in its own process) ------------------------------------------------

async function load(url: string, seconds: number, concurrency: number, queries: string[]): Promise<void> {
  const lat: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  let qi = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const text = queries[qi++ % queries.length];
      const t0 = performance.now();
      try {
        const r = await fetch(`${url}/search`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text, k: 10 }) });
        await r.arrayBuffer();
        if (r.status !== 200) errors++;
        else lat.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wall = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  process.stdout.write(JSON.stringify({ requests: lat.length, errors, rps: lat.length / wall, p50: q(0.5), p99: q(0.99), wall }) + "\n");
}

// ---- the benchmark ------------------------------------------------------------------------------------

async function startServer(ckpt: string, index: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ["--import", "tsx", CLI, "serve", "--checkpoint", ckpt, "--index", index, "--port", "0"], { stdio: ["ignore", "pipe", "inherit"], env: process.env });
  let out = "";
  proc.stdout!.setEncoding("utf8");
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`vlp serve did not start in 120 s: ${out}`)), 120_000);
    proc.stdout!.on("data", (c: string) => {
      out += c;
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    proc.on("exit", (code) => rej(new Error(`vlp serve exited (${code}): ${out}`)));
  });
  return { url, proc };
}

async function runLoad(url: string, seconds: number, concurrency: number, queriesFile: string) {
  const p = spawn(process.execPath, ["--import", "tsx", new URL(import.meta.url).pathname, "--load", url, "--seconds", String(seconds), "--concurrency", String(concurrency), "--queries", queriesFile], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  p.stdout!.setEncoding("utf8");
  p.stdout!.on("data", (c: string) => (out += c));
  const [code] = await once(p, "exit");
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  return JSON.parse(out.trim()) as { requests: number; errors: number; rps: number; p50: number; p99: number };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      load: { type: "string" },
      queries: { type: "string" },
      checkpoint: { type: "string" },
      world: { type: "string", default: "data/world-tiny" },
      images: { type: "string", default: "500" },
      seconds: { type: "string", default: "10" },
      concurrency: { type: "string", default: "4" },
      sizes: { type: "string", default: "10000,100000" },
    },
  });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const { readFileSync } = await import("node:fs");
  if (values.load) {
    await load(values.load, seconds, concurrency, JSON.parse(readFileSync(values.queries!, "utf8")));
    return;
  }
  process.env.VLP_NUM_THREADS ??= "1";
  const { setNumThreads, getNumThreads, manualSeed, randn, tidy, F } = await import("../src/engine/index.ts");
  setNumThreads(Number(process.env.VLP_NUM_THREADS));
  const { VLMoModel, vlmoConfig } = await import("../src/models/vlmo/index.ts");
  const { saveStateDict } = await import("../src/engine/checkpoint.ts");
  const { loadServedModel } = await import("../src/serve/model.ts");
  const { buildIndex, resolveCollection } = await import("../src/serve/build.ts");
  const { VectorIndex, IndexPart } = await import("../src/serve/vindex.ts");
  const { runSynth } = await import("../src/cli/synth.ts");
  const tmp = mkdtempSync(join(tmpdir(), "vlp-bench-serve-"));
  try {
    let ckpt = values.checkpoint;
    if (!ckpt) {
      ckpt = join(tmp, "vlmo-tiny");
      mkdirSync(ckpt);
      manualSeed(0);
      const m = new VLMoModel(vlmoConfig("tiny"));
      saveStateDict(join(ckpt, "model.safetensors"), m);
      writeFileSync(join(ckpt, "recipe.json"), JSON.stringify({ method: "vlmo", model: { preset: "tiny" }, data: { world: "none" } }));
      m.dispose();
    }
    let world = resolve(values.world!);
    if (!existsSync(join(world, "karpathy"))) {
      world = join(tmp, "world");
      await runSynth({ images: Number(values.images), seed: 0, out: world, quiet: true });
    }
    const served = await loadServedModel(ckpt);
    const dim = served.model.config.hiddenSize;
    console.log(`serving bench: ${served.model.config.name} (${dim}-d embeddings, ${served.model.config.imageSize} px), ${getNumThreads()} libtorch thread(s) per process, load ${(await import("node:os")).loadavg().map((x) => x.toFixed(1)).join(" ")}`);

    // 1. index build rate on real images
    const col = resolveCollection(world, { limit: Number(values.images) });
    const s = await buildIndex(served, col, { out: join(tmp, "real-index") });
    console.log(`\nindex build (${world}): ${s.added.images} images in ${s.seconds.images.toFixed(1)} s = ${(s.added.images / s.seconds.images).toFixed(0)} images/s (PNG decode + resize + image encoder, batch 64); ` +
      `${s.added.captions} captions in ${s.seconds.captions.toFixed(1)} s = ${(s.added.captions / s.seconds.captions).toFixed(0)} captions/s`);
    const queries = col.captions.map((c) => c.text).slice(0, 500);
    const queriesFile = join(tmp, "queries.json");
    writeFileSync(queriesFile, JSON.stringify(queries));

    // 2. /search under load
    console.log(`\nPOST /search {text, k: 10}: ${concurrency} connections from a second process, ${seconds} s each, random unit vectors indexed (float32)`);
    console.log("| indexed | requests/s | p50 | p99 | requests | errors | index memory |\n|---:|---:|---:|---:|---:|---:|---:|");
    for (const n of values.sizes!.split(",").map(Number)) {
      const dir = join(tmp, `rand-${n}`);
      const idx = VectorIndex.create(dir, { checkpoint: served.dir, model: served.model.config.name, dim, dtype: "float32", imagesRoot: null });
      for (let o = 0; o < n; o += 50_000) {
        const c = Math.min(50_000, n - o);
        tidy(() => idx.add("image", F.normalize(randn([c, dim])), Array.from({ length: c }, (_, i) => `rand/${o + i}.png`)));
      }
      const bytes = idx.bytes;
      idx.dispose();
      const { url, proc } = await startServer(served.dir, dir);
      try {
        await runLoad(url, 2, concurrency, queriesFile); // warm-up
        const r = await runLoad(url, seconds, concurrency, queriesFile);
        console.log(`| ${n.toLocaleString("en")} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${r.requests} | ${r.errors} | ${(bytes / 1e6).toFixed(1)} MB |`);
      } finally {
        proc.kill("SIGTERM");
        await once(proc, "exit");
      }
    }

    // 3. exact search alone
    console.log(`\nexact top-10 search alone (one query, in process, median of 20; memory = the stored matrix):`);
    console.log("| vectors | dtype | ms/query | memory | per million |\n|---:|---|---:|---:|---:|");
    for (const n of [100_000, 1_000_000]) {
      for (const dtype of ["float32", "float16"] as const) {
        // in memory only (the file format is exercised above): a part filled with random unit vectors
        const part = new IndexPart("image", dim, dtype);
        for (let o = 0; o < n; o += 100_000) tidy(() => part.appendRows(F.normalize(randn([100_000, dim])), Array.from({ length: 100_000 }, (_, i) => String(o + i))));
        const times: number[] = [];
        for (let i = 0; i < 22; i++) {
          const t0 = performance.now();
          tidy(() => part.search(F.normalize(randn([1, dim])), 10));
          if (i >= 2) times.push(performance.now() - t0);
        }
        times.sort((a, b) => a - b);
        const bytes = n * dim * (dtype === "float32" ? 4 : 2);
        console.log(`| ${n.toLocaleString("en")} | ${dtype} | ${times[times.length >> 1].toFixed(1)} | ${(bytes / 1e6).toFixed(0)} MB | ${(bytes / n).toFixed(0)} MB |`);
        part.dispose();
      }
    }
    served.model.dispose();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
