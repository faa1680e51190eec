/**
 * ViLT/VLMo Arrow tables of the world (images embedded as PNG bytes):
 * arrow/synth_caption_{split}.arrow, arrow/synth_vqa_{split}.arrow, arrow/synth_nlvr2_{split}.arrow.
 */
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CaptionArrowWriter, Nlvr2ArrowWriter, VqaArrowWriter } from "../formats/arrow.ts";
import { SPLITS, vqaLabel, type ImageEntry, type PairEntry } from "./files.ts";

export async function writeArrowTables(root: string, images: ImageEntry[], pairs: PairEntry[], vqaVocab: Map<string, number>): Promise<void> {
  mkdirSync(join(root, "arrow"), { recursive: true });
  const png = (e: ImageEntry) => readFile(join(root, "images", e.file));
  for (const split of SPLITS) {
    const sel = images.filter((e) => e.split === split);
    const captions = new CaptionArrowWriter(join(root, `arrow/synth_caption_${split}.arrow`));
    const vqa = new VqaArrowWriter(join(root, `arrow/synth_vqa_${split}.arrow`));
    for (const e of sel) {
      const image = await png(e);
      await captions.write({ image, caption: e.captions, image_id: e.imgId, split });
      const labels = e.vqa.map((v) => Object.entries(vqaLabel(v.answers, vqaVocab)));
      await vqa.write({
        image, image_id: e.imgId, split,
        questions: e.vqa.map((v) => v.qa.question),
        answers: labels.map((l) => l.map(([a]) => a)),
        answer_labels: labels.map((l) => l.map(([a]) => vqaVocab.get(a)!)),
        answer_scores: labels.map((l) => l.map(([, s]) => s)),
        question_id: e.vqa.map((_, k) => e.id * 10 + k),
      });
    }
    await captions.close();
    await vqa.close();
    // One row per image pair with all its statements (identifier = the pair's stem).
    const nlvr2 = new Nlvr2ArrowWriter(join(root, `arrow/synth_nlvr2_${split}.arrow`));
    const byPair = new Map<string, PairEntry[]>();
    for (const p of pairs.filter((x) => x.split === split)) {
      const stem = p.identifier.split("-").slice(0, -1).join("-");
      byPair.set(stem, [...(byPair.get(stem) ?? []), p]);
    }
    for (const [identifier, ps] of byPair) {
      await nlvr2.write({
        image_0: await png(ps[0].left), image_1: await png(ps[0].right), identifier,
        questions: ps.map((p) => p.sentence), answers: ps.map((p) => (p.label ? "True" : "False")),
      });
    }
    await nlvr2.close();
  }
}
