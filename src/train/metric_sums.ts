// Running sums of a training run's measurements between two logged rows, kept on the device: a
// step adds its loss and metrics (detached tensors) without reading them, and the row reads every
// sum with one host read (a synchronisation point on an accelerator, once per logged row).
import { tidy, noGrad, stack, where, Tensor } from "../engine/index.ts";

/**
 * A step's measurement: a tensor (a 0-d loss, accuracy or count, read only when a row is logged) or
 * a number known on the host (a batch size, a count from the batch's metadata). A metric that is
 * NaN was not measured on that step (e.g. no masked token: no MLM loss); a row averages each metric
 * over the steps that measured it, and leaves out a metric no step of its interval measured.
 */
export type Metric = Tensor | number;
export type Metrics = Record<string, Metric>;

/** One logged row's averages. */
export interface MetricRow {
  loss: number;
  gradNorm: number;
  metrics: Record<string, number>;
  /** Steps the row covers. */
  steps: number;
}

interface Sum<T> {
  /** The sum of the finite values (each micro-batch's divided by the accumulation count). */
  sum: T;
  /** How many micro-batches measured it. */
  count: T;
}

const f64 = (t: Tensor) => t.detach().to("float64");

/** 0-d tensors' values in float64 (exact for float32 and for integers below 2^53), with one host read. */
export function readScalars(ts: Tensor[]): number[] {
  if (ts.length === 0) return [];
  const dev = ts[0].device;
  return tidy(() => noGrad(() => stack(ts.map((t) => f64(t.device === dev ? t : t.to(dev)).reshape([]))).toArray()));
}

/**
 * The sums of one interval. `add` takes a micro-batch's loss and metrics, each divided by the
 * accumulation count (a step's value is the mean of its micro-batches); `endStep` a step's gradient
 * norm; `read` averages over the steps and starts a new interval. The loss and the gradient norm are
 * plain sums (a NaN or infinity stays in the row, where the trainer sees it); a metric's sum skips
 * its non-finite values, which are counted out. Sums are float64, so a one-step row holds the
 * step's float32 values exactly, as `.item()` read them.
 */
export class MetricSums {
  private loss: Tensor | null = null;
  private gradNorm: Tensor | null = null;
  private gradNormHost = 0;
  private onDevice = new Map<string, Sum<Tensor>>();
  private onHost = new Map<string, Sum<number>>();
  private steps = 0;

  constructor(private readonly accumulate = 1) {}

  /** `next` kept in place of `old` (freed). */
  private static swap(old: Tensor | null, next: Tensor): Tensor {
    old?.dispose();
    return next.keep();
  }

  add(loss: Tensor, metrics: Metrics): void {
    const k = this.accumulate;
    const share = (t: Tensor) => (k === 1 ? t : t.div(k));
    tidy(() => noGrad(() => {
      const l = share(f64(loss));
      this.loss = MetricSums.swap(this.loss, this.loss ? this.loss.add(l) : l);
      for (const [name, v] of Object.entries(metrics)) {
        if (typeof v === "number") {
          const s = this.onHost.get(name) ?? { sum: 0, count: 0 };
          if (Number.isFinite(v)) this.onHost.set(name, { sum: s.sum + (k === 1 ? v : v / k), count: s.count + 1 });
          else this.onHost.set(name, s);
          continue;
        }
        const x = f64(v);
        const fin = x.isfinite();
        const val = where(fin, share(x), 0);
        const n = fin.to("float64");
        const s = this.onDevice.get(name);
        this.onDevice.set(name, s
          ? { sum: MetricSums.swap(s.sum, s.sum.add(val)), count: MetricSums.swap(s.count, s.count.add(n)) }
          : { sum: val.keep(), count: n.keep() });
      }
    }));
  }

  /** The end of a step, with its gradient norm (clipGradNormTensor's tensor, or NaN without clipping). */
  endStep(gradNorm: Tensor | number): void {
    this.steps++;
    if (typeof gradNorm === "number") {
      this.gradNormHost += gradNorm;
      return;
    }
    tidy(() => noGrad(() => {
      const g = f64(gradNorm);
      this.gradNorm = MetricSums.swap(this.gradNorm, this.gradNorm ? this.gradNorm.add(g) : g);
    }));
  }

  /** Steps since the last row. */
  get pending(): number {
    return this.steps;
  }

  /** The interval's averages (one host read for all the tensor sums), and a new interval. */
  read(): MetricRow {
    const tensors: Tensor[] = [];
    const slot = (x: Tensor | null): number => (x ? tensors.push(x) - 1 : -1);
    const lossAt = slot(this.loss);
    const gradAt = slot(this.gradNorm);
    const at = new Map([...this.onDevice].map(([n, s]) => [n, { sum: slot(s.sum), count: slot(s.count) }]));
    const host = readScalars(tensors);
    const metrics: Record<string, number> = {};
    for (const n of new Set([...this.onDevice.keys(), ...this.onHost.keys()])) {
      const d = at.get(n);
      const h = this.onHost.get(n);
      const sum = (d ? host[d.sum] : 0) + (h?.sum ?? 0);
      const count = (d ? host[d.count] : 0) + (h?.count ?? 0);
      // count / accumulate: the steps that measured it (exact while every micro-batch did)
      if (count > 0) metrics[n] = sum / (count / this.accumulate);
    }
    const steps = this.steps;
    const row: MetricRow = {
      loss: (lossAt >= 0 ? host[lossAt] : NaN) / steps,
      gradNorm: ((gradAt >= 0 ? host[gradAt] : 0) + this.gradNormHost) / steps,
      metrics,
      steps,
    };
    this.reset();
    return row;
  }

  /** Frees the sums (after a row, at the end of a stage, on a failure). */
  reset(): void {
    this.loss?.dispose();
    this.gradNorm?.dispose();
    for (const s of this.onDevice.values()) {
      s.sum.dispose();
      s.count.dispose();
    }
    this.loss = this.gradNorm = null;
    this.gradNormHost = 0;
    this.onDevice.clear();
    this.onHost.clear();
    this.steps = 0;
  }
}
