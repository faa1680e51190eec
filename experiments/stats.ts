// The numbers of the experiment tables: mean ± sample std in percent, and the transfer verdict
// (pre-trained − scratch against twice the larger seed std, issue 12's bar).

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** Sample standard deviation (n − 1); null with fewer than two values. */
function sampleStd(xs: number[]): number | null {
  if (xs.length < 2) return null;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, v) => a + (v - m) ** 2, 0) / (xs.length - 1));
}
const pct = (v: number) => (100 * v).toFixed(1);

/** Fractions as "mean ± std" percent ("mean" alone for one value, "–" for none). */
export function meanStd(xs: number[]): string {
  if (xs.length === 0) return "–";
  const s = sampleStd(xs);
  return s === null ? pct(mean(xs)) : `${pct(mean(xs))} ± ${pct(s)}`;
}

/** "+d (beyond | worse, beyond | within 2σ = bar)" in points; "–" without two values on each side. */
export function transferVerdict(pre: number[], scratch: number[]): string {
  const a = sampleStd(pre), b = sampleStd(scratch);
  if (a === null || b === null) return "–";
  const d = mean(pre) - mean(scratch), bar = 2 * Math.max(a, b);
  return `${d >= 0 ? "+" : ""}${pct(d)} (${Math.abs(d) > bar ? (d > 0 ? "beyond" : "worse, beyond") : "within"} 2σ = ${pct(bar)})`;
}
