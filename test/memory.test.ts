// Deterministic memory: the tidy() scope semantics checked with liveTensors() (the count of native
// tensor handles alive), and a 5,000-step training loop whose RSS and tensor count stay flat.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor, Generator, zeros, ones, randn, noGrad, liveTensors, externalMemory, getNumThreads, setNumThreads } from "../src/engine/tensor.ts";
import { tidy, tidyAsync, scopeDepth } from "../src/engine/scope.ts";
import * as F from "../src/engine/functional.ts";
import { Module, Linear } from "../src/engine/nn.ts";

/** Assert that fn leaves exactly `delta` more live tensors than before. */
function leaves(delta: number, fn: () => void, what: string): void {
  const before = liveTensors();
  fn();
  assert.equal(liveTensors() - before, delta, what);
}

test("tidy frees every tensor created inside that is not returned", () => {
  leaves(0, () => {
    tidy(() => {
      const a = ones([10]);
      const b = a.mul(2).add(1);
      b.sum().item();
      assert.ok(liveTensors() >= 4);
    });
  }, "nothing survives a tidy that returns nothing");
  let kept: Tensor | undefined;
  leaves(1, () => {
    kept = tidy(() => ones([3]).mul(2).add(1));
  }, "only the returned tensor survives");
  assert.deepEqual(kept!.toArray(), [3, 3, 3]);
  leaves(-1, () => kept!.dispose(), "dispose frees it");
  assert.equal(scopeDepth(), 0);
});

test("nested tidy: a returned tensor moves to the enclosing scope", () => {
  leaves(0, () => {
    tidy(() => {
      const outerBefore = liveTensors();
      const inner = tidy(() => {
        const t = ones([4]).mul(3);
        assert.equal(scopeDepth(), 2);
        return t.add(1);
      });
      assert.equal(liveTensors() - outerBefore, 1, "the inner tidy freed its temporaries and kept its result");
      assert.equal(inner.isDisposed, false);
      assert.deepEqual(inner.toArray(), [4, 4, 4, 4]);
      assert.equal(scopeDepth(), 1);
    });
  }, "the enclosing scope frees what the inner scope returned");
});

test("returned arrays, objects, Maps and tuples of tensors survive; other values pass through", () => {
  let r: { a: Tensor; list: Tensor[]; map: Map<string, Tensor>; nested: { deep: [Tensor, number] }; n: number } | undefined;
  leaves(5, () => {
    r = tidy(() => {
      const x = ones([2]);
      const tmp = x.mul(5);
      tmp.sum();
      return { a: x.add(1), list: [x.mul(2), x.mul(3)], map: new Map([["k", x.neg()]]), nested: { deep: [x.sub(1), 7] as [Tensor, number] }, n: 42 };
    });
  }, "exactly the five returned tensors survive");
  assert.equal(r!.n, 42);
  assert.deepEqual(r!.list[1].toArray(), [3, 3]);
  assert.deepEqual(r!.map.get("k")!.toArray(), [-1, -1]);
  assert.deepEqual(r!.nested.deep[0].toArray(), [0, 0]);
  leaves(-5, () => {
    for (const t of [r!.a, ...r!.list, r!.map.get("k")!, r!.nested.deep[0]]) t.dispose();
  }, "all freed");
  // the same tensor returned twice is fine; a returned split keeps all pieces
  leaves(3, () => {
    const pieces = tidy(() => ones([6]).split(2));
    assert.equal(pieces.length, 3);
    for (const p of pieces) assert.equal(p.isDisposed, false);
  }, "split pieces survive");
});

test("keep() exempts a tensor from every scope until dispose()", () => {
  let k: Tensor | undefined;
  leaves(1, () => {
    tidy(() => {
      tidy(() => {
        k = ones([3]).mul(2).keep();
      });
      assert.equal(k!.isDisposed, false);
    });
  }, "a kept tensor survives nested scopes");
  assert.equal(k!.isKept, true);
  assert.deepEqual(k!.toArray(), [2, 2, 2]);
  leaves(-1, () => k!.dispose(), "dispose frees a kept tensor");
  // parameters are kept; their grads are freed with the scope that read them
  const lin = new Linear(3, 2);
  leaves(0, () => {
    tidy(() => {
      lin.forward(ones([4, 3])).sum().backward();
      assert.equal(lin.weight.grad!.shape.join(), "2,3");
    });
  }, "grad handles read inside a scope are freed with it");
  assert.ok(lin.weight.grad !== null, "the gradient itself stays with the parameter");
  leaves(-2, () => lin.dispose(), "the module frees its two parameters");
});

test("an exception inside tidy frees the scope and propagates", () => {
  leaves(0, () => {
    assert.throws(() => tidy(() => {
      ones([100]).mul(2);
      tidy(() => ones([5]).add(1));
      ones([2, 3]).matmul(ones([4, 5])); // shape error from libtorch
    }), /mat1 and mat2 shapes cannot be multiplied/);
  }, "everything created before the throw is freed");
  assert.equal(scopeDepth(), 0, "the scope stack is unwound");
  leaves(0, () => {
    assert.throws(() => tidy(() => {
      tidy(() => {
        ones([3]);
        throw new Error("inner");
      });
    }), /inner/);
  }, "nested scopes unwind too");
  assert.equal(scopeDepth(), 0);
});

test("tidyAsync frees what it does not return; tensors outside scopes live until dispose", async () => {
  // The await lets the garbage collector finalize unrelated handles, which moves the process-wide
  // liveTensors() count: check the tensors of this scope themselves instead.
  let a: ReturnType<typeof ones> | undefined;
  const t = await tidyAsync(async () => {
    a = ones([3]);
    await new Promise((r) => setTimeout(r, 1));
    return a.mul(4);
  });
  assert.ok(a!.isDisposed, "the intermediate tensor is freed");
  assert.ok(!t.isDisposed, "the returned tensor survives");
  assert.deepEqual(t.toArray(), [4, 4, 4]);
  t.dispose();
  let b: ReturnType<typeof ones> | undefined;
  await assert.rejects(tidyAsync(async () => {
    b = ones([3]);
    throw new Error("async boom");
  }), /async boom/);
  assert.ok(b!.isDisposed, "an exception frees the async scope");
  assert.throws(() => tidy(() => Promise.resolve(1) as unknown as number), /tidyAsync/);
  assert.equal(scopeDepth(), 0);
  // from here on no await: the count cannot move under us
  const before = liveTensors();
  const free = zeros([2]);
  assert.equal(liveTensors() - before, 1, "an untracked tensor outside any scope");
  free.dispose();
  free.dispose();
  assert.equal(liveTensors(), before, "double dispose is harmless");
});

test("disposed handles release their native memory inside a synchronous loop (no event-loop turn)", () => {
  // Regression: handles were node-addon-api ObjectWraps whose small native parts were freed only by
  // Node-API's deferred finalizers, which never run inside a synchronous loop; they pinned glibc's
  // freed tensor blocks, so this loop grew RSS by ~8 KB per op (~500 MB here).
  const x = ones([32, 64]); // 8 KB outputs
  const ops = 60_000;
  const rss0 = process.memoryUsage().rss;
  for (let i = 0; i < ops / 30; i++) {
    tidy(() => {
      for (let j = 0; j < 30; j++) x.relu();
    });
  }
  const growthMB = (process.memoryUsage().rss - rss0) / 2 ** 20;
  x.dispose();
  assert.ok(growthMB < 20, `RSS grew by ${growthMB.toFixed(1)} MB over ${ops} ops whose outputs were all disposed`);
});

class MLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor() {
    super();
    this.fc1 = this.module("fc1", new Linear(64, 128));
    this.fc2 = this.module("fc2", new Linear(128, 64));
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(F.gelu(this.fc1.forward(x)));
  }
}

// 5,000 steps of forward + backward + in-place SGD (64 -> 128 -> 64, batch 32). Bound: RSS may grow
// by less than 20 MB between step 500 (after warm-up) and step 5,000; live tensors must be equal.
const STEPS = 5000;
const WARMUP = 500;
const RSS_BOUND_MB = 20;

test(`${STEPS} training steps keep RSS flat (< ${RSS_BOUND_MB} MB growth after warm-up) and leak no tensors`, () => {
  // one thread: these ops are tiny, and OpenMP barriers on a busy 2-core machine cost more than they give
  const threads = getNumThreads();
  setNumThreads(1);
  const gen = new Generator(1);
  const model = new MLP();
  const params = model.parameters();
  const live0 = liveTensors();
  const lr = 0.05;
  let rssWarm = 0;
  let liveWarm = 0;
  let firstLoss = 0;
  let lastLoss = 0;
  const t0 = performance.now();
  // a fixed teacher gives the model something to learn (so the update is really exercised)
  const teacher = tidy(() => randn([64, 64], { generator: gen }).mul(0.2)).keep();
  for (let step = 1; step <= STEPS; step++) {
    tidy(() => {
      const x = randn([32, 64], { generator: gen });
      const y = x.matmul(teacher).tanh();
      const loss = F.mseLoss(model.forward(x), y);
      loss.backward();
      noGrad(() => {
        for (const p of params) p.add_(p.grad!, -lr);
      });
      model.zeroGrad();
      if (step === 1) firstLoss = loss.item();
      if (step > STEPS - 100) lastLoss += loss.item() / 100;
    });
    if (step === WARMUP) {
      globalThis.gc?.();
      rssWarm = process.memoryUsage().rss;
      liveWarm = liveTensors();
    }
  }
  globalThis.gc?.();
  const rssEnd = process.memoryUsage().rss;
  setNumThreads(threads);
  const seconds = (performance.now() - t0) / 1000;
  const growthMB = (rssEnd - rssWarm) / 2 ** 20;
  console.log(`# ${STEPS} steps in ${seconds.toFixed(1)} s (${((seconds * 1000) / STEPS).toFixed(2)} ms/step); RSS after step ${WARMUP}: ${(rssWarm / 2 ** 20).toFixed(1)} MB, after step ${STEPS}: ${(rssEnd / 2 ** 20).toFixed(1)} MB (growth ${growthMB.toFixed(1)} MB); loss ${firstLoss.toFixed(4)} -> ${lastLoss.toFixed(4)}`);
  assert.equal(liveTensors(), live0 + 1, "live tensors before and after the loop are equal (+ the teacher)");
  assert.equal(liveWarm, live0 + 1);
  assert.ok(growthMB < RSS_BOUND_MB, `RSS grew by ${growthMB.toFixed(1)} MB between step ${WARMUP} and ${STEPS}`);
  assert.ok(lastLoss < firstLoss * 0.5, `the SGD loop learns: loss ${firstLoss} -> ${lastLoss}`);
  teacher.dispose();
  model.dispose();
  assert.equal(liveTensors(), live0 - params.length);
});

// Each step of a training loop allocates its activations and disposes them before the next. V8 is
// told of tensor bytes only in 256 MiB steps, so that this churn does not look like memory pressure:
// told of every tensor, V8 ran a full mark-compact several times an MSP-tiny step (357 in 80 steps).
test("tensors allocated and disposed within a step trigger no full garbage collections", async () => {
  const { PerformanceObserver, constants } = await import("node:perf_hooks");
  let major = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
  });
  obs.observe({ entryTypes: ["gc"] });
  const live0 = liveTensors();
  // 30 "steps", each with 120 MiB of activations alive at its peak (15 x 8 MiB)
  for (let step = 0; step < 30; step++) {
    tidy(() => {
      for (let i = 0; i < 15; i++) zeros([2 * 1024 * 1024]);
    });
  }
  await new Promise((r) => setTimeout(r, 50)); // gc entries are delivered asynchronously
  obs.disconnect();
  // nothing of the steps is left; earlier tests' dropped handles may be collected meanwhile (<, not =)
  assert.ok(liveTensors() <= live0, `${liveTensors() - live0} tensors of the steps left alive`);
  assert.ok(major <= 2, `${major} full garbage collections during 30 steps of 120 MiB of short-lived tensors`);
});

test("V8 is told of large live tensor memory (so that dropped handles holding it get collected)", () => {
  const external0 = externalMemory();
  const held = Array.from({ length: 20 }, () => zeros([4 * 1024 * 1024])); // 20 x 16 MiB
  const grown = (externalMemory() - external0) / 2 ** 20;
  for (const t of held) t.dispose();
  const after = (externalMemory() - external0) / 2 ** 20;
  assert.ok(grown >= 256, `V8's external memory grew by ${grown.toFixed(0)} MiB for 320 MiB of live tensors`);
  assert.ok(Math.abs(after) < 256, `and came back after dispose (${after.toFixed(0)} MiB)`);
});
