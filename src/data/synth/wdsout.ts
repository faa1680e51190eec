/**
 * WebDataset shards of the world (`vlp data synth --wds`): wds/<split>/{00000..}.tar for the train,
 * val and test splits, WDS_SHARDS[split] shards each (a fixed count, so that a recipe's brace
 * pattern names them whatever the world's size; consecutive images in a shard, the last shards
 * possibly shorter). A sample is `<img_id>.png` (the world's image file as it is), `<img_id>.txt`
 * (its captions, one a line) and `<img_id>.json` ({key, img_id, caption, captions}), as
 * img2dataset / webdataset's ShardWriter lay samples out. Entries carry mtime 0: the same world
 * writes the same bytes.
 */
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { WdsShardWriter } from "../formats/wds.ts";
import type { ImageEntry } from "./files.ts";

/** Shards per split. */
export const WDS_SHARDS = { train: 4, val: 1, test: 1 } as const;

/** The shard pattern of a split relative to the world (`wds/train/{00000..00003}.tar`). */
export const wdsPattern = (split: keyof typeof WDS_SHARDS): string => `wds/${split}/{00000..${String(WDS_SHARDS[split] - 1).padStart(5, "0")}}.tar`;

export async function writeWdsShards(root: string, images: ImageEntry[]): Promise<Record<keyof typeof WDS_SHARDS, number>> {
  const counts = { train: 0, val: 0, test: 0 };
  for (const split of Object.keys(WDS_SHARDS) as (keyof typeof WDS_SHARDS)[]) {
    const sel = images.filter((e) => e.split === split);
    const shards = WDS_SHARDS[split];
    const per = Math.ceil(sel.length / shards);
    mkdirSync(join(root, "wds", split), { recursive: true });
    for (let s = 0; s < shards; s++) {
      const w = new WdsShardWriter(join(root, "wds", split, `${String(s).padStart(5, "0")}.tar`), { mtime: new Date(0) });
      for (const e of sel.slice(s * per, (s + 1) * per)) {
        await w.write({
          key: e.imgId,
          files: { png: await readFile(join(root, "images", e.file)), txt: e.captions.join("\n"), json: { key: e.imgId, img_id: e.imgId, caption: e.captions[0], captions: e.captions } },
        });
        counts[split]++;
      }
      await w.close();
    }
  }
  return counts;
}
