// `vlp data emoji`: the writer on a fake package tree (real file layouts, a handful of rows, small
// PNGs and an SVG made here), read back with the Karpathy reader, the image loader and the VLMo
// image-text builder. No network: the npm step is only checked for "nothing to install" and for
// the error it gives when npm fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import {
  emojiCaptions, emojiKey, emojiPackages, installEmojiPackages, readableShortName, writeEmojiDataset,
} from "../src/data/emoji.ts";
import { readKarpathy, karpathySubset } from "../src/data/formats/karpathy.ts";
import { decodeImage } from "../src/vision/image.ts";
import { BertTokenizer } from "../src/text/tokenizer.ts";
import { createBuilder } from "../src/pretrain/imagetext.ts";
import { Rng } from "../src/engine/rng.ts";
import { validateRecipe } from "../src/methods/index.ts";

const row = (name: string, unified: string, shorts: string[], category: string, subcategory: string, order: number, img: Record<string, boolean>) => ({
  name, unified, non_qualified: null, image: `${unified.toLowerCase()}.png`, sheet_x: 0, sheet_y: 0, short_name: shorts[0], short_names: shorts,
  text: null, texts: null, category, subcategory, sort_order: order, added_in: "0.6",
  has_img_apple: true, has_img_google: img.google ?? false, has_img_twitter: img.twitter ?? false, has_img_facebook: false,
});

const ROWS = [
  row("GRINNING CAT FACE WITH SMILING EYES", "1F638", ["smile_cat"], "Smileys & Emotion", "cat-face", 120, { google: true, twitter: true }),
  row("THUMBS UP SIGN", "1F44D", ["+1", "thumbsup"], "People & Body", "hand-fingers-closed", 353, { google: true, twitter: true }),
  row("GRINNING FACE", "1F600", ["grinning"], "Smileys & Emotion", "face-smiling", 1, { google: true, twitter: false }),
  row("HEAVY BLACK HEART", "2764-FE0F", ["heart"], "Smileys & Emotion", "heart", 150, { google: true, twitter: true }),
  row("REGIONAL INDICATOR SYMBOL LETTERS FR", "1F1EB-1F1F7", ["fr", "flag-fr"], "Flags", "country-flag", 1500, { google: true, twitter: true }),
  row("EMOJI MODIFIER FITZPATRICK TYPE-1-2", "1F3FB", ["skin-tone-2"], "Component", "skin-tone", 1400, { google: true, twitter: true }),
];

/** An RGBA PNG: a coloured disc on a transparent background. */
const disc = (px: number, rgb: [number, number, number]) => {
  const data = Buffer.alloc(px * px * 4);
  for (let y = 0; y < px; y++) {
    for (let x = 0; x < px; x++) {
      const inside = (x - px / 2 + 0.5) ** 2 + (y - px / 2 + 0.5) ** 2 < (px / 3) ** 2;
      data.set(inside ? [...rgb, 255] : [0, 0, 0, 0], (y * px + x) * 4);
    }
  }
  return sharp(data, { raw: { width: px, height: px, channels: 4 } }).png().toBuffer();
};

async function fakePackages(root: string): Promise<string> {
  const nm = join(root, "node_modules");
  const pkgJson = (name: string, version: string, license: string) => {
    mkdirSync(join(nm, name), { recursive: true });
    writeFileSync(join(nm, name, "package.json"), JSON.stringify({ name, version, license }));
  };
  for (const [set, rgb] of [["google", [250, 200, 0]], ["twitter", [220, 40, 40]]] as const) {
    const pkg = `emoji-datasource-${set}`;
    pkgJson(pkg, "16.0.0", "MIT");
    writeFileSync(join(nm, pkg, "emoji.json"), JSON.stringify(ROWS));
    mkdirSync(join(nm, pkg, "img", set, "64"), { recursive: true });
    for (const r of ROWS) if (r[`has_img_${set}`]) writeFileSync(join(nm, pkg, "img", set, "64", r.image), await disc(64, [...rgb]));
  }
  pkgJson("openmoji", "17.0.0", "CC-BY-SA-4.0");
  mkdirSync(join(nm, "openmoji", "color", "svg"), { recursive: true });
  mkdirSync(join(nm, "openmoji", "data"), { recursive: true });
  const svg = (fill: string) => `<svg viewBox="0 0 72 72" xmlns="http://www.w3.org/2000/svg"><circle cx="36" cy="36" r="20" fill="${fill}"/></svg>`;
  // OpenMoji names files by fully-qualified sequence; the heart without FE0F checks the matching
  writeFileSync(join(nm, "openmoji", "color", "svg", "1F638.svg"), svg("#F4AA41"));
  writeFileSync(join(nm, "openmoji", "color", "svg", "2764.svg"), svg("#D22F27"));
  writeFileSync(join(nm, "openmoji", "data", "openmoji.json"), JSON.stringify([
    { emoji: "😸", hexcode: "1F638", annotation: "grinning cat with smiling eyes", tags: "animal, cat, face", openmoji_tags: "kitty" },
    { emoji: "❤", hexcode: "2764", annotation: "red heart", tags: "heart", openmoji_tags: "" },
  ]));
  pkgJson("emojibase-data", "17.0.0", "MIT");
  mkdirSync(join(nm, "emojibase-data", "en"), { recursive: true });
  writeFileSync(join(nm, "emojibase-data", "en", "data.json"), JSON.stringify([
    { label: "grinning cat with smiling eyes", hexcode: "1F638", tags: ["animal", "cat", "eye", "eyes", "face", "grin", "grinning", "smile", "smiling"] },
    { label: "thumbs up", hexcode: "1F44D", tags: ["+1", "good", "hand", "like", "thumb", "up", "yes"] },
    { label: "red heart", hexcode: "2764-FE0F", tags: ["heart"] },
    { label: "grinning face", hexcode: "1F600", tags: ["face", "grin"] },
  ]));
  return nm;
}

const tmp = mkdtempSync(join(tmpdir(), "vlp-emoji-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));
const nodeModules = await fakePackages(join(tmp, "pkgs"));
const out = join(tmp, "out");
const progress: number[] = [];
const summary = await writeEmojiDataset({ nodeModules, out, size: 32, seed: 3, valFraction: 0.34, onProgress: (d) => progress.push(d) });
const ds = readKarpathy(join(out, "karpathy", "dataset_emoji.json"));

test("emoji: kept emoji, splits and the held-out style", () => {
  // flags, the skin-tone component and the emoji twitter (the test style) does not draw are dropped
  assert.equal(summary.emoji, 3);
  assert.equal(ds.dataset, "emoji");
  assert.equal(ds.skipped, 0);
  const names = ds.images.map((im) => im.filename).sort();
  assert.deepEqual(names, [
    "google_1f44d.png", "google_1f638.png", "google_2764-fe0f.png",
    "openmoji_1f638.png", "openmoji_2764-fe0f.png",
    "twitter_1f44d.png", "twitter_1f638.png", "twitter_2764-fe0f.png",
  ]);
  const test_ = karpathySubset(ds.images, "test");
  assert.deepEqual(test_.map((im) => im.filename.split("_")[0]), ["twitter", "twitter", "twitter"]);
  assert.ok(ds.images.every((im) => im.filename.startsWith("twitter_") === (im.split === "test")));
  // one val emoji (34% of 3), in every training style, never in train
  const val = karpathySubset(ds.images, "val");
  const valEmoji = new Set(val.map((im) => im.filename.split("_")[1]));
  assert.equal(valEmoji.size, 1);
  const train = karpathySubset(ds.images, "train");
  assert.ok(train.every((im) => !valEmoji.has(im.filename.split("_")[1])));
  assert.deepEqual(summary.splits, { train: train.length, val: val.length, test: 3 });
  assert.deepEqual(ds.images.map((im) => im.imgid), ds.images.map((_, i) => i));
  const sentids = ds.images.flatMap((im) => im.sentids);
  assert.equal(new Set(sentids).size, sentids.length);
  assert.equal(progress.at(-1), 8);
});

test("emoji: captions from the name, short names and keywords", () => {
  const caps = (f: string) => ds.images.find((im) => im.filename === f)!.sentences.map((s) => s.raw);
  const cat = caps("google_1f638.png");
  assert.equal(cat[0], "grinning cat face with smiling eyes");
  assert.ok(cat.includes("grinning cat with smiling eyes"));
  assert.ok(cat.includes("smile cat"));
  const kw = cat.filter((c) => /^(an emoji of|cat face emoji:|a picture of) /.test(c));
  assert.equal(kw.length, 3, JSON.stringify(cat));
  assert.ok(kw.join(" ").includes("cat") && kw.join(" ").includes("kitty"), "emojibase and openmoji tags");
  const thumbs = caps("twitter_1f44d.png");
  assert.ok(thumbs.includes("thumbs up sign") && thumbs.includes("thumbsup"));
  assert.ok(!thumbs.includes("+1") && !thumbs.includes("1"));
  assert.equal(readableShortName("smile_cat"), "smile cat");
  assert.equal(readableShortName("+1"), null);
  assert.equal(emojiKey("2764-FE0F"), emojiKey("2764"));
  for (const im of ds.images) {
    for (const s of im.sentences) assert.deepEqual(s.tokens, s.raw.split(/[^a-z0-9]+/).filter((w) => w), s.raw);
  }
  // every caption word is in BERT's vocabulary or splits into word pieces: no [UNK]
  const tok = BertTokenizer.load();
  for (const im of ds.images) for (const s of im.sentences) assert.ok(!tok.tokenize(s.raw).includes("[UNK]"), s.raw);
  // same emoji, same style and seed: same captions; without keywords, the subcategory
  const r = ROWS[2] as unknown as Parameters<typeof emojiCaptions>[0];
  assert.deepEqual(emojiCaptions(r, undefined, [], new Rng(1)), ["grinning face", "grinning", "an emoji of face smiling"]);
});

test("emoji: images are size x size RGB on white", async () => {
  for (const f of ["google_1f638.png", "openmoji_2764-fe0f.png", "twitter_1f44d.png"]) {
    const meta = await sharp(join(out, "images", f)).metadata();
    assert.equal(meta.channels, 3, f);
    const img = await decodeImage(join(out, "images", f));
    assert.equal(img.width, 32);
    assert.equal(img.height, 32);
    assert.deepEqual([...img.data.subarray(0, 3)], [255, 255, 255], `${f}: transparent corner flattened on white`);
    const c = (16 * 32 + 16) * 3;
    assert.ok(img.data[c] < 255 || img.data[c + 1] < 255 || img.data[c + 2] < 240, `${f}: the drawing is there`);
  }
});

test("emoji: meta.json", () => {
  const meta = JSON.parse(readFileSync(join(out, "meta.json"), "utf8"));
  assert.equal(meta.testStyle, "twitter");
  assert.deepEqual(meta.splits, summary.splits);
  assert.deepEqual(meta.styles.twitter, { images: 3, train: 0, val: 0, test: 3 });
  assert.equal(meta.styles.openmoji.images, 2);
  const lic = Object.fromEntries(meta.packages.map((p: { name: string; artworkLicence?: string; version: string }) => [p.name, [p.version, p.artworkLicence]]));
  assert.deepEqual(lic["emoji-datasource-google"], ["16.0.0", "Apache-2.0"]);
  assert.deepEqual(lic["emoji-datasource-twitter"], ["16.0.0", "CC-BY-4.0"]);
  assert.deepEqual(lic.openmoji, ["17.0.0", "CC-BY-SA-4.0"]);
  assert.equal(lic["emojibase-data"][0], "17.0.0");
});

test("emoji: the VLMo image-text builder reads it as is", async () => {
  const b = await createBuilder({
    karpathy: join(out, "karpathy", "dataset_emoji.json"), images: join(out, "images"), split: "test", mode: "pair", imageSize: 32, maxTextLen: 16,
  });
  const batch = await b.build([0, 1], 0);
  assert.deepEqual(batch.arrays.pixels.shape, [2, 3, 32, 32]);
  assert.deepEqual(batch.arrays.input_ids.shape, [2, 16]);
  // a VLMo recipe points at it with data.world = the folder, data.karpathy = the split file
  const r = validateRecipe({ method: "vlmo", model: { preset: "tiny" }, data: { world: out, karpathy: "karpathy/dataset_emoji.json" } });
  assert.equal(r.data.karpathy, "karpathy/dataset_emoji.json");
});

test("emoji: another test style, --limit, bad options", async () => {
  const o2 = join(tmp, "out2");
  const s = await writeEmojiDataset({ nodeModules, out: o2, styles: ["google", "twitter"], testStyle: "google", size: 16, limit: 2, seed: 1 });
  assert.equal(s.emoji, 2);
  const d = readKarpathy(join(o2, "karpathy", "dataset_emoji.json"));
  assert.ok(d.images.every((im) => im.filename.startsWith("google_") === (im.split === "test")));
  assert.equal(karpathySubset(d.images, "val").length, 1);
  assert.ok(!existsSync(join(o2, "images", "openmoji_1f638.png")));
  await assert.rejects(writeEmojiDataset({ nodeModules, out: o2, styles: ["google", "twitter"], testStyle: "openmoji" }), /not one of the styles/);
  await assert.rejects(writeEmojiDataset({ nodeModules, out: o2, styles: ["google"] }), /at least two styles/);
  await assert.rejects(writeEmojiDataset({ nodeModules, out: o2, styles: ["google", "apple"] }), /unknown emoji style "apple"/);
});

test("emoji: npm install on demand (no network here)", async () => {
  assert.deepEqual(emojiPackages(["google", "twitter", "openmoji"]), ["emoji-datasource-google", "emoji-datasource-twitter", "openmoji", "emojibase-data"]);
  assert.deepEqual(emojiPackages(["openmoji", "google"]), ["openmoji", "emoji-datasource-google", "emojibase-data"]);
  // all there: npm is not run
  assert.equal(await installEmojiPackages(join(tmp, "pkgs"), emojiPackages(["google", "twitter", "openmoji"]), { npm: "/nonexistent/npm" }), nodeModules);
  // npm fails: the error names the package and the command to run by hand
  await assert.rejects(
    installEmojiPackages(join(tmp, "empty"), ["emoji-datasource-google", "emojibase-data"], { npm: "false" }),
    (e: Error) => /could not fetch emoji-datasource-google/.test(e.message) && /false install --no-save .*--prefix .*empty emoji-datasource-google emojibase-data/.test(e.message),
  );
});
