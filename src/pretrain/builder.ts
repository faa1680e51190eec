// The region-text batch builder of pre-training (SemVLP and MSP/LXMERT-S): text tokenised to ids,
// detected regions read by positioned reads, ITM negatives (random or from a hard-negative pool),
// a QA target and MSP's topic labels. It runs in the loader's worker threads; every random choice
// comes from a PRNG seeded by (seed, step), so a batch is the same wherever and whenever it is built.
import { readFileSync } from "node:fs";
import type { BatchBuilder, HostArrays } from "../data/loader.ts";
import type { Tensor } from "../engine/index.ts";
import { openRegions, type RegionFeatures } from "../data/regions/index.ts";
import { readHardNegatives } from "../data/formats/hardneg.ts";
import { readAns2Label } from "../data/formats/vqa.ts";
import { readVgRegionDescriptions, readVgObjects } from "../data/formats/vg.ts";
import { BertTokenizer } from "../text/tokenizer.ts";
import { stepRng } from "../engine/rng.ts";
import { sampleAnswer, negativeImage } from "../objectives/sampling.ts";
import { topicWords } from "../objectives/masking.ts";
import { readPretrainExamples, interleaveByImage, type PretrainExample } from "./examples.ts";

/**
 * A file of examples: LXMERT's pre-training JSON or the MSP lists (default), or Visual Genome's
 * region_descriptions.json ("vg-phrases": an image's phrases joined by commas) or objects.json
 * ("vg-objects": its objects' first names in order), whose images are the regions' VG ids.
 */
export interface ExamplesFile { path: string; sources?: string[]; granularity?: string; format?: "vg-phrases" | "vg-objects" }

export interface RegionTextArgs {
  examples: ExamplesFile[];
  /**
   * obj36 TSV (indexed on first use) or a `.regions` store; several (LXMERT's train2014, val2014
   * and vg_gqa files) are read as one, an image taken from the first file that has it.
   */
  regions: string | string[];
  maxTextLen: number;
  maxBoxes: number;
  seed: number;
  /** ITM: the share of mismatched pairs and, for MSP's ITM_HS, a hard-negative pool file. */
  itm?: {
    prob: number;
    hardPool?: string;
    /**
     * Only texts of these sources (e.g. ["mscoco"]: captions) take part in ITM: they may be paired
     * with another image and get an `itm_target` of 1/0; the others (questions, often true of a
     * random image) stay with their own image and get -1 (no ITM loss). Default: every source.
     */
    sources?: string[];
    /**
     * Every ITM text twice in the batch, once with its own image and once with a negative (`prob` is
     * then unused): a text's own contribution to the ITM gradient cancels within its pair, leaving the
     * image-text interaction (the batch grows by the number of ITM texts).
     */
    paired?: boolean;
    /**
     * With a hard-negative pool: the share of negatives drawn from it (default 1, MSP's ITM_HS); the
     * rest are random images (an easier curriculum for models trained from scratch).
     */
    hardFraction?: number;
  };
  /** Held-out sets: consecutive examples from different images (interleaveByImage), for unshuffled evaluation. */
  interleave?: boolean;
  /** ans2label JSON: sample one answer per question for the pre-training QA loss. */
  answers?: string;
  /** objects_vocab.txt: detected label id -> word, for MSP's topic labels. */
  objectVocab?: string;
  /**
   * The model's object and attribute label counts: a detector label outside them is an error naming
   * the region file, line and field (in the loss it was a bare "Target 1000000 is out of bounds").
   */
  labels?: { objects: number; attrs: number };
}

/**
 * A region-text batch (what SemVLP's and MSP's steps read): R rows, each a text paired with an
 * image; R is the batch size, or more with `itm.paired` (every ITM text again, with a negative image,
 * after the others). L = maxTextLen, N = maxBoxes, D = the regions' feature size.
 */
export interface RegionTextBatch {
  /** [R, L] int64 token ids ([CLS] text [SEP], then [PAD]). */
  input_ids: Tensor;
  /** [R, L] int64: 1 for a token, 0 for padding. */
  attention_mask: Tensor;
  /** [R, L] int64 LXMERT-S word positions (the word of each token; its pieces share it). */
  word_position_ids: Tensor;
  /** [R, L] int64 word index of each token (-1 for [CLS], [SEP] and padding): whole-word masking. */
  word_ids: Tensor;
  /** [R, N, D] float32 region features of the row's image (zeros past its boxes). */
  feats: Tensor;
  /** [R, N, 4] float32 normalised boxes (x1, y1, x2, y2). */
  boxes: Tensor;
  /** [R, N] int64 the detector's object label of each region (-1: none), and [R, N] float32 its confidence. */
  obj_labels: Tensor;
  obj_conf: Tensor;
  /** [R, N] int64 attribute label (-1: none), and [R, N] float32 its confidence. */
  attr_labels: Tensor;
  attr_conf: Tensor;
  /** [R, N] bool: the image has a box there. */
  region_valid: Tensor;
  /** [R] bool: the row's image is its text's own. */
  matched: Tensor;
  /** [R] int64 ITM target: 1 matched, 0 mismatched, -1 no ITM for the row (its source is not in itm.sources). */
  itm_target: Tensor;
  /** [R] int64 the row's image as a key within the batch (rows showing one image share it): ITC's positives. */
  img_key: Tensor;
  /** [R] int64 the sampled answer label of a matched question (-1: none). */
  qa_target: Tensor;
  /** [R, K] int64 MSP's topic word ids of each text, padded with -1 (with `objectVocab` only). */
  topic_ids?: Tensor;
}

/** What a region-text batch carries besides its tensors. */
export interface RegionTextMeta {
  /** Each row's image id. */
  imgIds: string[];
  /** Each row's text source ("mscoco", "vqa", ...; the granularity of MSP's files). */
  sources: (string | undefined)[];
}

/** Throws naming file, line/record and field unless every label of `ids` is -1 (none) or in [0, count). */
function checkLabels(ids: Int32Array, n: number, count: number, field: string, what: string, where: () => string): void {
  for (let j = 0; j < n; j++) {
    if (ids[j] < -1 || ids[j] >= count) {
      throw new Error(`${where()}: field "${field}"[${j}] = ${ids[j]} is outside the model's ${count} ${what} labels (0..${count - 1}, or -1 for none)`);
    }
  }
}

/** The examples of one file, by its format; images without text are left out. */
function readExamples(e: ExamplesFile): PretrainExample[] {
  const source = e.granularity ?? "text";
  if (e.format === "vg-phrases") {
    return readVgRegionDescriptions(e.path).records.filter((im) => im.regions.length > 0)
      .map((im) => ({ imgId: String(im.id), text: im.regions.map((r) => r.phrase).join(", "), source }));
  }
  if (e.format === "vg-objects") {
    return readVgObjects(e.path).records.filter((im) => im.objects.length > 0)
      .map((im) => ({ imgId: String(im.image_id), text: im.objects.map((o) => o.names[0] ?? "").join(" ").trim(), source }));
  }
  return readPretrainExamples(e.path, e);
}

/** The region file(s) of a builder, for messages. */
const regionsLabel = (r: string | string[]): string => (typeof r === "string" ? r : r.join(", "));

export async function createBuilder(a: RegionTextArgs): Promise<BatchBuilder<RegionTextBatch, RegionTextMeta>> {
  const read: PretrainExample[] = a.examples.flatMap(readExamples);
  const examples = a.interleave ? interleaveByImage(read, (e) => e.imgId) : read;
  const regions = await openRegions(a.regions);
  const known = new Set(regions.ids());
  const missing = examples.find((e) => !known.has(e.imgId));
  if (missing) throw new Error(`${regionsLabel(a.regions)}: no regions for img_id ${missing.imgId} (used by ${a.examples.map((e) => e.path).join(", ")})`);
  const tok = BertTokenizer.load();
  const imgIds = [...new Set(examples.map((e) => e.imgId))];
  const ans2label: Map<string, number> | undefined = a.answers ? readAns2Label(a.answers) : undefined;
  let hardPool: Map<string, string[]> | undefined;
  if (a.itm?.hardPool) {
    const hn = readHardNegatives(a.itm.hardPool);
    // ViLBERT-style pools list the image itself (the synthetic world's row i starts with i): it is
    // dropped, so a pair drawn as a negative (prob p) is always mismatched and the negative share is p
    hardPool = new Map(hn.train_image_list.map((id, i) => [String(id), hn.train_hard_pool[i].map((j) => String(hn.train_image_list[j])).filter((h) => known.has(h) && h !== String(id))]));
  }
  const labelWordIds: number[][] | undefined = a.objectVocab
    ? readFileSync(a.objectVocab, "utf8").split("\n").filter((l) => l.trim()).map((w) => tok.convertTokensToIds(tok.tokenize(w.split(",")[0])))
    : undefined;

  return {
    length: examples.length,
    build(indices: number[], step: number) {
      const rng = stepRng(a.seed, step);
      const L = a.maxTextLen;
      const N = a.maxBoxes;
      // an image without a pool (the pool file covers the train images only: val, test) gets a random negative
      const negativeFor = (e: PretrainExample): string => negativeImage(e.imgId, imgIds, rng, { pool: hardPool?.get(e.imgId), hardFraction: a.itm?.hardFraction });
      // ITM: which image each text is paired with; `paired`: each ITM text twice, with its image and with a negative
      const rows: { e: PretrainExample; img: string; inItm: boolean }[] = [];
      const twins: typeof rows = [];
      for (const i of indices) {
        const e = examples[i];
        const inItm = a.itm !== undefined && (!a.itm.sources || a.itm.sources.includes(e.source ?? ""));
        if (a.itm?.paired && inItm) {
          rows.push({ e, img: e.imgId, inItm });
          twins.push({ e, img: negativeFor(e), inItm });
        } else {
          rows.push({ e, img: a.itm && inItm && rng.next() < a.itm.prob ? negativeFor(e) : e.imgId, inItm });
        }
      }
      rows.push(...twins);
      const b = rows.length;
      const exs = rows.map((r) => r.e);
      const useImg = rows.map((r) => r.img);
      const matched = Uint8Array.from(rows, (r) => (r.img === r.e.imgId ? 1 : 0));
      const itmTarget = BigInt64Array.from(rows, (r, k) => (r.inItm ? BigInt(matched[k]) : -1n));
      // the image of each row as a key within the batch (rows that share an image share a key): ITC's positives
      const keyOf = new Map<string, number>();
      const imgKey = BigInt64Array.from(useImg, (id) => BigInt(keyOf.get(id) ?? keyOf.set(id, keyOf.size).get(id)!));
      const regs: RegionFeatures[] = useImg.map((id) => regions.get(id));
      const D = regs[0].dim;
      const ids = new BigInt64Array(b * L), mask = new BigInt64Array(b * L), wordPos = new BigInt64Array(b * L), wordIds = new BigInt64Array(b * L);
      const feats = new Float32Array(b * N * D), boxes = new Float32Array(b * N * 4);
      const objL = new BigInt64Array(b * N).fill(-1n), attrL = new BigInt64Array(b * N).fill(-1n);
      const objC = new Float32Array(b * N), attrC = new Float32Array(b * N), valid = new Uint8Array(b * N);
      const qa = new BigInt64Array(b).fill(-1n);
      const topicRows: number[][] = [];
      exs.forEach((e, k) => {
        const enc = tok.encode(e.text, undefined, { maxLength: L, padding: true });
        for (let j = 0; j < L; j++) {
          ids[k * L + j] = BigInt(enc.inputIds[j]);
          mask[k * L + j] = BigInt(enc.attentionMask[j]);
          wordPos[k * L + j] = BigInt(enc.wordPositionIds[j]);
          wordIds[k * L + j] = BigInt(enc.wordIds[j]);
        }
        const r = regs[k];
        if (r.dim !== D) throw new Error(`${regionsLabel(a.regions)}: img_id ${r.imgId} has ${r.dim}-d features, the batch has ${D}-d`);
        const n = Math.min(r.numBoxes, N);
        if (a.labels) {
          checkLabels(r.objectsId, n, a.labels.objects, "objects_id", "object", () => regions.where(r.imgId));
          checkLabels(r.attrsId, n, a.labels.attrs, "attrs_id", "attribute", () => regions.where(r.imgId));
        }
        feats.set(r.features.subarray(0, n * D), k * N * D);
        boxes.set(r.normBoxes.subarray(0, n * 4), k * N * 4);
        for (let j = 0; j < n; j++) {
          valid[k * N + j] = 1;
          objL[k * N + j] = BigInt(r.objectsId[j]);
          objC[k * N + j] = r.objectsConf[j];
          attrL[k * N + j] = BigInt(r.attrsId[j]);
          attrC[k * N + j] = r.attrsConf[j];
        }
        if (ans2label && matched[k]) qa[k] = BigInt(sampleAnswer(e.label, ans2label, rng));
        if (labelWordIds) {
          const labelIds = new Set<number>();
          for (let j = 0; j < n; j++) for (const t of labelWordIds[r.objectsId[j]] ?? []) labelIds.add(t);
          topicRows.push(topicWords(enc.inputIds, labelIds, tok.maskId + 1));
        }
      });
      const arrays: HostArrays<RegionTextBatch> = {
        input_ids: { data: ids, shape: [b, L], dtype: "int64" },
        attention_mask: { data: mask, shape: [b, L], dtype: "int64" },
        word_position_ids: { data: wordPos, shape: [b, L], dtype: "int64" },
        word_ids: { data: wordIds, shape: [b, L], dtype: "int64" },
        feats: { data: feats, shape: [b, N, D], dtype: "float32" },
        boxes: { data: boxes, shape: [b, N, 4], dtype: "float32" },
        obj_labels: { data: objL, shape: [b, N], dtype: "int64" },
        obj_conf: { data: objC, shape: [b, N], dtype: "float32" },
        attr_labels: { data: attrL, shape: [b, N], dtype: "int64" },
        attr_conf: { data: attrC, shape: [b, N], dtype: "float32" },
        region_valid: { data: valid, shape: [b, N], dtype: "bool" },
        matched: { data: matched, shape: [b], dtype: "bool" },
        itm_target: { data: itmTarget, shape: [b], dtype: "int64" },
        img_key: { data: imgKey, shape: [b], dtype: "int64" },
        qa_target: { data: qa, shape: [b], dtype: "int64" },
      };
      if (labelWordIds) {
        // sparse topic ids, padded with -1 (the multi-hot over 30,522 words is built on the trainer's side)
        const K = Math.max(1, ...topicRows.map((r) => r.length));
        const t = new BigInt64Array(b * K).fill(-1n);
        topicRows.forEach((row, k) => row.forEach((id, j) => (t[k * K + j] = BigInt(id))));
        arrays.topic_ids = { data: t, shape: [b, K], dtype: "int64" };
      }
      return { arrays, meta: { imgIds: useImg, sources: exs.map((e) => e.source) } };
    },
  };
}
