// Shortened views of decoded records and a bounded list of problems, for `vlp data inspect`.

const SHOW = 4;

/** A JSON-friendly copy: typed arrays and long lists cut to their first values, long strings cut. */
export function summarize(v: unknown, depth = 0): unknown {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    const a = v as unknown as ArrayLike<number> & { constructor: { name: string } };
    const head = Array.from({ length: Math.min(SHOW, a.length) }, (_, i) => Number(a[i].toFixed?.(4) ?? a[i]));
    return `${a.constructor.name}(${a.length}) [${head.join(", ")}${a.length > SHOW ? ", ..." : ""}]`;
  }
  if (typeof v === "string") return v.length > 200 ? `${v.slice(0, 200)}... (${v.length} chars)` : v;
  if (depth > 4 || v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) {
    const head = v.slice(0, SHOW).map((x) => summarize(x, depth + 1));
    return v.length > SHOW ? [...head, `... (${v.length} items)`] : head;
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, summarize(x, depth + 1)]));
}

/** The first `max` problem messages, and how many there were in all. */
export class Problems {
  private readonly shown: string[] = [];
  private total = 0;

  constructor(private readonly max: number) {}

  add(message: string): void {
    this.total++;
    if (this.shown.length < this.max) this.shown.push(message);
  }

  list(): string[] {
    return this.total > this.shown.length ? [...this.shown, `... and ${this.total - this.shown.length} more`] : this.shown.slice();
  }
}
