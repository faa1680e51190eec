/**
 * Everything about one image of the world: scene, pixels (written as PNG), detector
 * record, text and questions. Depends only on (context, index), so images can be made
 * in any order, in worker threads or in process, with identical results.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodePng } from "../../vision/image.ts";
import type { Obj36Record } from "../formats/obj36.ts";
import { detect } from "./detector.ts";
import type { ImageEntry, Split } from "./files.ts";
import { annotatorAnswers, gqaQuestions, majorityAnswer, vqaQuestions } from "./questions.ts";
import { renderScene, type Rendered } from "./render.ts";
import { Rng } from "../../engine/rng.ts";
import { comboKey, sampleScene, type Combo, type Scene } from "./scene.ts";
import { captions, phraseText, regionPhrases, tokenText } from "./text.ts";

/** What a worker needs to make any image of the world (structured-clone friendly). */
export interface ItemContext {
  seed: number;
  out: string;
  size: number;
  featDim: number;
  codeDim: number;
  boxes: number;
  heldOut: Combo[];
  splits: Split[];
  /** SceneOptions.repeat (0: none). */
  repeat: number;
}

export interface Item {
  entry: ImageEntry;
  record: Obj36Record;
}

export const imgIdOf = (id: number): string => `synth_${String(id).padStart(8, "0")}`;

/** Sample and render image i; objects left less than 30% visible are dropped and the scene redrawn. */
function makeScene(ctx: ItemContext, i: number, heldSet: Set<string>): { scene: Scene; rendered: Rendered } {
  const rng = Rng.derive(ctx.seed, "scene", i);
  const force = ctx.splits[i] === "test_comp" ? rng.pick(ctx.heldOut) : undefined;
  const scene = sampleScene(rng, i, { size: ctx.size, heldOut: heldSet, force, repeat: ctx.repeat });
  let rendered = renderScene(scene, Rng.derive(ctx.seed, "pixels", i));
  const keep = scene.objects.filter((_, k) => rendered.visible[k] >= 0.3 * rendered.drawn[k]);
  if (keep.length < scene.objects.length) {
    scene.objects = keep;
    rendered = renderScene(scene, Rng.derive(ctx.seed, "pixels", i));
  }
  return { scene, rendered };
}

/**
 * Make image i. The synchronous part (scene, detector, text) runs before the first await;
 * the returned promise settles once the PNG is on disk.
 */
export async function makeItem(ctx: ItemContext, i: number): Promise<Item> {
  const split = ctx.splits[i];
  const id = i + 1;
  const imgId = imgIdOf(id);
  const file = `${imgId}.png`;
  // Held-out combinations are excluded everywhere except in the compositional split.
  const held = split === "test_comp" ? new Set<string>() : new Set(ctx.heldOut.map(([c, k]) => comboKey(c, k)));
  const { scene, rendered } = makeScene(ctx, i, held);
  const det = detect(scene, rendered, Rng.derive(ctx.seed, "detector", i), imgId, { boxes: ctx.boxes, featDim: ctx.featDim, codeDim: ctx.codeDim, codeRng: Rng.derive(ctx.seed, "detector-code", i) });
  const rng = Rng.derive(ctx.seed, "text", i);
  const phrases = regionPhrases(scene, rendered, rng);
  const entry: ImageEntry = {
    index: i, id, imgId, file, split, width: ctx.size, height: ctx.size, scene, objects: scene.objects,
    objectBoxes: rendered.visibleBox.map(([x1, y1, x2, y2]) => [x1, y1, x2 - x1, y2 - y1]),
    tokenText: tokenText(det.detections), phrases, phraseText: phraseText(phrases),
    captions: captions(scene, rendered, rng),
    vqa: vqaQuestions(scene, rng, held).map((qa) => {
      const answers = annotatorAnswers(qa, rng);
      return { qa, answers, mc: majorityAnswer(answers) };
    }),
    gqa: gqaQuestions(scene, rng),
  };
  const png = await encodePng(rendered.rgb, ctx.size, ctx.size);
  try {
    await writeFile(join(ctx.out, "images", file), png);
  } catch (e) {
    throw new Error(`${join(ctx.out, "images", file)}: cannot write image (${(e as Error).message})`);
  }
  return { entry, record: det.record };
}

/** Make items start..end-1 with up to `window` PNG encodes in flight; results in index order. */
export async function makeRange(ctx: ItemContext, start: number, end: number, window = 6): Promise<Item[]> {
  const pending: Promise<Item>[] = [];
  const items: Item[] = [];
  for (let i = start; i < end; i++) {
    const p = makeItem(ctx, i);
    p.catch(() => undefined); // awaited below; avoids an unhandled rejection meanwhile
    pending.push(p);
    if (pending.length >= window) items.push(await pending.shift()!);
  }
  for (const p of pending) items.push(await p);
  return items;
}
