// Example construction on the data side: mismatched pairs for ITM, MSP's hard samples (ITM_HS) and
// soft-label answer sampling for pre-training QA. Plain TypeScript (no libtorch): it runs in loader workers.
import type { Rng } from "../engine/rng.ts";

/** A uniform index in [0, n) other than `not` (n > 1): one draw. */
export function otherIndex(rng: Rng, n: number, not: number): number {
  return (not + 1 + rng.int(n - 1)) % n;
}

/**
 * ITM with random negatives: with probability p each sample's image (`own[i]`, an index in [0, n))
 * is replaced by another of the n images (never its own). Returns, per sample, the image index to
 * use and whether it matches. Per sample, one draw decides and one more picks the negative.
 */
export function sampleMismatched(own: readonly number[], n: number, rng: Rng, p = 0.5): { imageIndex: number[]; matched: boolean[] } {
  const imageIndex: number[] = [];
  const matched: boolean[] = [];
  for (const i of own) {
    if (n > 1 && rng.next() < p) {
      imageIndex.push(otherIndex(rng, n, i));
      matched.push(false);
    } else {
      imageIndex.push(i);
      matched.push(true);
    }
  }
  return { imageIndex, matched };
}

/**
 * The image an ITM negative pairs a text with, for a text whose own image is `own`. With a non-empty
 * hard-sample pool (MSP's ITM_HS; the pool never holds `own`), one of its images, or, with
 * `hardFraction`, one of them with that probability; otherwise (no pool, or not drawn hard) a uniformly
 * random other image of `images` (redrawn until it is not `own`). With a single image, `own`.
 */
export function negativeImage(own: string, images: readonly string[], rng: Rng, o: { pool?: readonly string[]; hardFraction?: number } = {}): string {
  const pool = o.pool ?? [];
  if (pool.length > 0 && (o.hardFraction === undefined || rng.next() < o.hardFraction)) return pool[rng.int(pool.length)];
  let img = own;
  if (images.length > 1) {
    do img = images[rng.int(images.length)];
    while (img === own);
  }
  return img;
}

/** LXMERT's pre-training QA target: one answer drawn with probability proportional to its soft score (-1 if none). */
export function sampleAnswer(label: Record<string, number> | undefined, ans2label: Map<string, number>, rng: Rng): number {
  if (!label) return -1;
  const entries = Object.entries(label).filter(([a, s]) => ans2label.has(a) && s > 0);
  if (entries.length === 0) return -1;
  const total = entries.reduce((a, [, s]) => a + s, 0);
  let r = rng.next() * total;
  for (const [a, s] of entries) {
    r -= s;
    if (r <= 0) return ans2label.get(a)!;
  }
  return ans2label.get(entries[entries.length - 1][0])!;
}
