// Example construction on the data side: mismatched pairs for ITM, MSP's hard samples (ITM_HS) and
// soft-label answer sampling for pre-training QA. Plain TypeScript (no libtorch): it runs in loader workers.
import type { Rng } from "../engine/rng.ts";

/**
 * ITM with random negatives: with probability p the sample's image is replaced by the image of
 * another sample in the batch (never its own). Returns, per sample, the image index to use and whether it matches.
 */
export function sampleMismatched(b: number, rng: Rng, p = 0.5): { imageIndex: number[]; matched: boolean[] } {
  const imageIndex: number[] = [];
  const matched: boolean[] = [];
  for (let i = 0; i < b; i++) {
    if (b > 1 && rng.next() < p) {
      imageIndex.push((i + 1 + rng.int(b - 1)) % b);
      matched.push(false);
    } else {
      imageIndex.push(i);
      matched.push(true);
    }
  }
  return { imageIndex, matched };
}

/**
 * MSP's ITM_HS: each image is replaced, with probability p, by a random image from its hard-sample set
 * (when that set is not empty). `pool(imgId)` returns the ids of the hard samples (never the image itself).
 */
export function sampleHardImages(imgIds: string[], pool: (imgId: string) => string[], rng: Rng, p = 0.5): { imgIds: string[]; matched: boolean[] } {
  const out: string[] = [];
  const matched: boolean[] = [];
  for (const id of imgIds) {
    const hard = pool(id).filter((h) => h !== id);
    if (hard.length > 0 && rng.next() < p) {
      out.push(hard[rng.int(hard.length)]);
      matched.push(false);
    } else {
      out.push(id);
      matched.push(true);
    }
  }
  return { imgIds: out, matched };
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
