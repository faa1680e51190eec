// The one host-side PRNG of vlpkit (mulberry32) and the one way of mixing seeds into a generator's seed.
// Plain TypeScript, no libtorch: it runs in loader workers, the synthetic-world generator and the image
// augmenter alike. Only 32-bit integer arithmetic (Math.imul), so a seed gives the same numbers everywhere.

/**
 * Mixes a run's seed with a 0-based step index (and, optionally, a salt that tells streams apart and a
 * data-parallel rank) into one unsigned 32-bit seed: each part is multiplied by its own odd constant,
 * the products are xor-ed. A batch drawn from `new Rng(mixSeed(seed, step))` is the same wherever and
 * whenever it is built, which is what makes resumed runs bit-identical.
 * With no `rank` the rank term is absent (not rank 0's).
 */
export function mixSeed(seed: number, step: number, o: { salt?: number; rank?: number } = {}): number {
  let h = Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b) ^ (o.salt ?? 0);
  if (o.rank !== undefined) h ^= Math.imul(o.rank + 1, 0xc2b2ae35);
  return h >>> 0;
}

/** `new Rng(mixSeed(seed, step, { salt }))`: the generator of one step's data-side choices. */
export const stepRng = (seed: number, step: number, salt = 0): Rng => new Rng(mixSeed(seed, step, { salt }));

/** Mixes a list of integers/strings into one unsigned 32-bit seed (FNV-1a over the parts, then an avalanche); `Rng.derive`'s. */
export function hashSeed(...parts: (number | string)[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    const s = typeof p === "number" ? `#${p}` : `$${p}`;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A small seeded PRNG (mulberry32) with helpers; its state is one integer. The seed is taken as given
 * and wrapped to 32 bits on the first draw, so any integer seed (signed or unsigned) gives the same
 * stream as its 32-bit residue.
 */
export class Rng {
  constructor(public state: number) {}

  /** A new generator derived from a seed path, independent of how much any other generator was used. */
  static derive(seed: number, ...parts: (number | string)[]): Rng {
    return new Rng(hashSeed(seed, ...parts));
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi] inclusive. */
  intIn(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** Uniform float in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("Rng.pick: empty list");
    return items[this.int(items.length)];
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Fisher-Yates shuffle in place; returns the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i];
      items[i] = items[j];
      items[j] = t;
    }
    return items;
  }

  /** k distinct items (order random). */
  sample<T>(items: readonly T[], k: number): T[] {
    return this.shuffle(items.slice()).slice(0, Math.min(k, items.length));
  }
}
