/**
 * A small real-image dataset: emoji artwork of several designers (Google's Noto, Twitter's Twemoji,
 * OpenMoji) with captions from the Unicode names, the short names and the CLDR keywords. One style
 * is held out entirely as the test split, so a model is tested on the same concepts drawn by another
 * hand. Written in the Karpathy split format next to an `images/` folder, the layout the VLMo
 * image-text builder reads (src/pretrain/imagetext.ts).
 *
 * The artwork comes from npm packages that are installed on demand into a cache folder (never a
 * dependency of vlpkit): `installEmojiPackages` runs npm, `writeEmojiDataset` only reads a
 * node_modules folder, so it can be tested on a fake one.
 *
 * Files read (per package):
 *   emoji-datasource-<set>/emoji.json              name, unified, image, short_names, category, subcategory,
 *                                                  sort_order, has_img_<set> (the emoji catalogue)
 *   emoji-datasource-<set>/img/<set>/64/<image>    64-px RGBA PNGs (google, twitter)
 *   openmoji/color/svg/<HEXCODE>.svg               72x72 SVGs, rasterised with sharp
 *   openmoji/data/openmoji.json                    hexcode, tags, openmoji_tags
 *   emojibase-data/en/data.json                    hexcode, label (CLDR), tags
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { openImage } from "../vision/image.ts";
import { Rng } from "../engine/rng.ts";
import { karpathyTokens } from "./synth/text.ts";
import type { KarpathyDataset, KarpathyImage, KarpathySplit } from "./formats/karpathy.ts";

export interface EmojiStyle {
  /** The npm package with the artwork. */
  pkg: string;
  artwork: string;
  /** Licence of the artwork (the packages' own code/data are MIT except OpenMoji). */
  licence: string;
}

export const EMOJI_STYLES: Readonly<Record<string, EmojiStyle>> = {
  google: { pkg: "emoji-datasource-google", artwork: "Noto Color Emoji (Google)", licence: "Apache-2.0" },
  twitter: { pkg: "emoji-datasource-twitter", artwork: "Twemoji (Twitter)", licence: "CC-BY-4.0" },
  openmoji: { pkg: "openmoji", artwork: "OpenMoji", licence: "CC-BY-SA-4.0" },
};
/** Keywords (CLDR tags) and labels. */
export const KEYWORD_PACKAGE = "emojibase-data";
/** The emoji catalogue when no emoji-datasource style is selected (JSON and sprite sheets only). */
export const CATALOGUE_PACKAGE = "emoji-datasource";

export const DEFAULT_STYLES = ["google", "twitter", "openmoji"];
export const DEFAULT_TEST_STYLE = "twitter";

const isDatasource = (style: string): boolean => EMOJI_STYLES[style]?.pkg.startsWith("emoji-datasource-") ?? false;

/** The package whose emoji.json is the catalogue: the first emoji-datasource style's. */
function cataloguePackage(styles: readonly string[]): string {
  const s = styles.find(isDatasource);
  return s ? EMOJI_STYLES[s].pkg : CATALOGUE_PACKAGE;
}

/** The npm packages `styles` need. */
export function emojiPackages(styles: readonly string[]): string[] {
  checkStyles(styles);
  return [...new Set([...styles.map((s) => EMOJI_STYLES[s].pkg), cataloguePackage(styles), KEYWORD_PACKAGE])];
}

function checkStyles(styles: readonly string[]): void {
  for (const s of styles) {
    if (!(s in EMOJI_STYLES)) throw new Error(`unknown emoji style "${s}" (known: ${Object.keys(EMOJI_STYLES).join(", ")})`);
  }
}

/** `$XDG_CACHE_HOME/vlpkit/emoji` or `~/.cache/vlpkit/emoji`: where the packages are installed. */
export function defaultEmojiCache(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "vlpkit", "emoji");
}

const installedVersion = (nodeModules: string, pkg: string): string | null => {
  const p = join(nodeModules, pkg, "package.json");
  return existsSync(p) ? (JSON.parse(readFileSync(p, "utf8")) as { version: string }).version : null;
};

const run = (cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code !== 0 ? err.message : "") });
    });
  });

export interface InstallOptions {
  /** The npm executable (default "npm"). */
  npm?: string;
  /** Progress/status lines (default: none). */
  log?: (line: string) => void;
  timeoutMs?: number;
}

/**
 * Install `packages` into `prefix`/node_modules with `npm install --no-save --prefix`, unless all
 * are there already. Packages already in the cache are installed again with them (npm prunes what
 * a --no-save install does not name). Returns the node_modules folder. On failure the error names
 * the package npm could not fetch and the command to run by hand.
 */
export async function installEmojiPackages(prefix: string, packages: readonly string[], opts: InstallOptions = {}): Promise<string> {
  const nodeModules = join(prefix, "node_modules");
  const missing = packages.filter((p) => installedVersion(nodeModules, p) === null);
  if (missing.length === 0) return nodeModules;
  const known = [...Object.values(EMOJI_STYLES).map((s) => s.pkg), CATALOGUE_PACKAGE, KEYWORD_PACKAGE];
  const all = [...new Set([...packages, ...known.filter((p) => installedVersion(nodeModules, p) !== null)])];
  const npm = opts.npm ?? "npm";
  const args = ["install", "--no-save", "--no-audit", "--no-fund", "--no-package-lock", "--prefix", prefix, ...all];
  const byHand = `${npm} ${args.join(" ")}`;
  mkdirSync(prefix, { recursive: true });
  opts.log?.(`emoji: installing ${missing.join(", ")} into ${prefix} (npm)`);
  const res = await run(npm, args, opts.timeoutMs ?? 15 * 60_000);
  const still = missing.filter((p) => installedVersion(nodeModules, p) === null);
  if (res.code === 0 && still.length === 0) return nodeModules;
  // Which package failed? Ask the registry about each one (a 404 or no network both show here).
  const failed: string[] = [];
  for (const p of still.length ? still : missing) {
    const v = await run(npm, ["view", p, "version"], 60_000);
    if (v.code !== 0) failed.push(`${p} (${lastLine(v.stderr) || `npm view exited ${v.code}`})`);
  }
  const what = failed.length ? `could not fetch ${failed.join(", ")}` : `npm install failed for ${(still.length ? still : missing).join(", ")}: ${lastLine(res.stderr)}`;
  throw new Error(`${what}. Is the npm registry reachable? Install by hand with\n  ${byHand}\nor point --pkgs at a folder that has these packages in node_modules/.`);
}

const lastLine = (s: string): string => s.trim().split("\n").filter((l) => l.trim() && !/npm (ERR|error)! *$/.test(l)).slice(-3).join(" | ");

// ---- reading the packages ----

/** A row of emoji-datasource's emoji.json (the fields used here). */
export interface DatasourceRow {
  name: string | null;
  unified: string;
  image: string;
  short_names: string[];
  category: string;
  subcategory: string;
  sort_order: number;
  [k: `has_img_${string}`]: boolean | undefined;
}

interface KeywordRow { hexcode: string; label?: string; annotation?: string; tags?: string[] | string; openmoji_tags?: string }

/** The matching key of a code point sequence: lower case, without variation selector 16. */
export const emojiKey = (hex: string): string => hex.toLowerCase().replace(/-fe0f/g, "");

const SKIN_TONES = /1f3f[b-f]/;

function readJsonFile<T>(path: string, pkg: string): T {
  if (!existsSync(path)) throw new Error(`${path}: not found (is ${pkg} installed? try \`npm install --no-save --prefix DIR ${pkg}\`)`);
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

const splitTags = (t: string[] | string | undefined): string[] => (Array.isArray(t) ? t : (t ?? "").split(","));

/** Keywords per emoji key from emojibase-data (tags, label) and openmoji (tags, openmoji_tags). */
function readKeywords(nodeModules: string): { tags: Map<string, string[]>; labels: Map<string, string> } {
  const tags = new Map<string, string[]>();
  const labels = new Map<string, string>();
  const add = (rows: KeywordRow[], withOpenmojiTags: boolean) => {
    for (const r of rows) {
      const k = emojiKey(r.hexcode);
      const list = [...splitTags(r.tags), ...(withOpenmojiTags ? splitTags(r.openmoji_tags) : [])];
      tags.set(k, [...(tags.get(k) ?? []), ...list]);
      const label = r.label ?? r.annotation;
      if (label && !labels.has(k)) labels.set(k, label);
    }
  };
  add(readJsonFile<KeywordRow[]>(join(nodeModules, KEYWORD_PACKAGE, "en", "data.json"), KEYWORD_PACKAGE), false);
  const om = join(nodeModules, "openmoji", "data", "openmoji.json");
  if (existsSync(om)) add(JSON.parse(readFileSync(om, "utf8")) as KeywordRow[], true);
  return { tags, labels };
}

/** The image file of each emoji key in a style. */
function styleImages(nodeModules: string, style: string, rows: DatasourceRow[]): Map<string, string> {
  const out = new Map<string, string>();
  if (style === "openmoji") {
    const dir = join(nodeModules, "openmoji", "color", "svg");
    if (!existsSync(dir)) throw new Error(`${dir}: not found (is openmoji installed?)`);
    for (const f of readdirSync(dir)) if (f.endsWith(".svg")) out.set(emojiKey(f.slice(0, -4)), join(dir, f));
    return out;
  }
  const dir = join(nodeModules, EMOJI_STYLES[style].pkg, "img", style, "64");
  if (!existsSync(dir)) throw new Error(`${dir}: not found (is ${EMOJI_STYLES[style].pkg} installed?)`);
  for (const r of rows) {
    const p = join(dir, r.image);
    if (r[`has_img_${style}`] && existsSync(p)) out.set(emojiKey(r.unified), p);
  }
  return out;
}

// ---- captions ----

/** "smile_cat" -> "smile cat"; null for short names without letters ("+1", "100"). */
export function readableShortName(s: string): string | null {
  const t = s.replace(/[_-]+/g, " ").trim().toLowerCase();
  return /[a-z]/.test(t) ? t : null;
}

const KEYWORD_TEMPLATES = [
  (k: string) => `an emoji of ${k}`,
  (k: string, sub: string) => `${sub} emoji: ${k}`,
  (k: string) => `a picture of ${k}`,
];

/**
 * Captions of an emoji: the Unicode name, the CLDR label (when different), up to two short names
 * and 1-3 keyword sentences (three keywords each, in `rng`'s order).
 */
export function emojiCaptions(row: DatasourceRow, label: string | undefined, keywords: readonly string[], rng: Rng): string[] {
  const out: string[] = [];
  const add = (s: string | null | undefined) => {
    const t = s?.toLowerCase().replace(/\s+/g, " ").trim();
    if (t && karpathyTokens(t).length > 0 && !out.includes(t)) out.push(t);
  };
  add(row.name ?? label);
  add(label);
  const shorts = row.short_names.map(readableShortName).filter((s): s is string => s !== null && !out.includes(s));
  for (const s of shorts.slice(0, 2)) add(s);
  const kw = rng.shuffle([...new Set(keywords.map((k) => k.trim().toLowerCase()).filter((k) => /[a-z]/.test(k)))]);
  const sub = row.subcategory.replace(/-/g, " ");
  const n = Math.min(3, Math.ceil(kw.length / 3));
  if (n === 0) add(`an emoji of ${sub}`);
  for (let i = 0; i < n; i++) add(KEYWORD_TEMPLATES[i](kw.slice(i * 3, i * 3 + 3).join(", "), sub));
  return out;
}

// ---- writing ----

export interface EmojiOptions {
  /** A node_modules folder with the packages of emojiPackages(styles). */
  nodeModules: string;
  out: string;
  styles?: string[];
  testStyle?: string;
  /** Output side in pixels (default 64). */
  size?: number;
  /** At most this many emoji (a seeded sample), every style drawing the same ones. */
  limit?: number;
  seed?: number;
  /** Fraction of the emoji whose training-style images form the val split (default 0.05, at least one). */
  valFraction?: number;
  /** Parallel image conversions (default 4). */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface EmojiSummary {
  emoji: number;
  images: number;
  captions: number;
  splits: Record<"train" | "val" | "test", number>;
  styles: Record<string, { images: number; train: number; val: number; test: number }>;
  testStyle: string;
  packages: { name: string; version: string; licence: string; artwork?: string; artworkLicence?: string }[];
}

/** Write one image: flattened on white, resized (contain) to size x size, 8-bit RGB PNG. */
async function convert(src: string, dst: string, size: number): Promise<void> {
  const svg = src.endsWith(".svg");
  // SVGs (72 px at 72 dpi) are rendered at about twice the output size, then downsampled.
  await openImage(src, svg ? { density: Math.max(72, 2 * size) } : {})
    .flatten({ background: "#ffffff" })
    .resize(size, size, { fit: "contain", background: "#ffffff", kernel: "lanczos3" })
    .removeAlpha()
    .toColourspace("srgb")
    .png({ compressionLevel: 9 })
    .toFile(dst);
}

export async function writeEmojiDataset(o: EmojiOptions): Promise<EmojiSummary> {
  const styles = o.styles ?? DEFAULT_STYLES;
  const testStyle = o.testStyle ?? (styles.includes(DEFAULT_TEST_STYLE) ? DEFAULT_TEST_STYLE : styles[styles.length - 1]);
  const size = o.size ?? 64;
  const seed = o.seed ?? 0;
  checkStyles(styles);
  if (new Set(styles).size !== styles.length) throw new Error(`styles listed twice: ${styles.join(",")}`);
  if (!styles.includes(testStyle)) throw new Error(`test style "${testStyle}" is not one of the styles (${styles.join(", ")})`);
  const trainStyles = styles.filter((s) => s !== testStyle);
  if (trainStyles.length === 0) throw new Error("need at least two styles: one held out for test, one or more to train on");
  if (!(size >= 8)) throw new Error(`size: expected at least 8 pixels, got ${size}`);

  const nm = o.nodeModules;
  const catPkg = cataloguePackage(styles);
  const rows = readJsonFile<DatasourceRow[]>(join(nm, catPkg, "emoji.json"), catPkg);
  const { tags, labels } = readKeywords(nm);
  const files = new Map(styles.map((s) => [s, styleImages(nm, s, rows)]));
  const has = (s: string, k: string) => files.get(s)!.has(k);

  // flags, skin tones (the Component rows and any sequence with a modifier) out; the test style and
  // at least one training style must draw the emoji
  let kept = rows
    .filter((r) => r.category !== "Flags" && r.category !== "Component" && !SKIN_TONES.test(r.unified.toLowerCase()))
    .filter((r) => has(testStyle, emojiKey(r.unified)) && trainStyles.some((s) => has(s, emojiKey(r.unified))));
  if (o.limit !== undefined && o.limit < kept.length) kept = Rng.derive(seed, "limit").sample(kept, o.limit);
  kept.sort((a, b) => a.sort_order - b.sort_order);
  if (kept.length === 0) throw new Error("no emoji left (none is drawn by the test style and a training style)");

  const nVal = kept.length < 2 ? 0 : Math.max(1, Math.round(kept.length * (o.valFraction ?? 0.05)));
  const valKeys = new Set(Rng.derive(seed, "val").sample(kept, nVal).map((r) => emojiKey(r.unified)));

  const jobs: { src: string; dst: string }[] = [];
  const images: KarpathyImage[] = [];
  const styleCounts: EmojiSummary["styles"] = Object.fromEntries(styles.map((s) => [s, { images: 0, train: 0, val: 0, test: 0 }]));
  let sentid = 0;
  for (const style of [...trainStyles, testStyle]) {
    for (const r of kept) {
      const k = emojiKey(r.unified);
      const src = files.get(style)!.get(k);
      if (!src) continue;
      const split: KarpathySplit = style === testStyle ? "test" : valKeys.has(k) ? "val" : "train";
      const filename = `${style}_${r.unified.toLowerCase()}.png`;
      const imgid = images.length;
      const raws = emojiCaptions(r, labels.get(k), tags.get(k) ?? [], Rng.derive(seed, "captions", style, k));
      const sentids = raws.map(() => sentid++);
      images.push({
        filename, imgid, split, sentids,
        sentences: raws.map((raw, i) => ({ raw, tokens: karpathyTokens(raw), imgid, sentid: sentids[i] })),
      });
      jobs.push({ src, dst: join(o.out, "images", filename) });
      styleCounts[style].images++;
      styleCounts[style][split as "train" | "val" | "test"]++;
    }
  }

  mkdirSync(join(o.out, "images"), { recursive: true });
  mkdirSync(join(o.out, "karpathy"), { recursive: true });
  let done = 0, next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const j = jobs[next++];
      try {
        await convert(j.src, j.dst, size);
      } catch (e) {
        throw new Error(`${j.src}: cannot convert (${(e as Error).message})`);
      }
      o.onProgress?.(++done, jobs.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 4) }, worker));

  const ds: KarpathyDataset = { dataset: "emoji", images };
  writeFileSync(join(o.out, "karpathy", "dataset_emoji.json"), JSON.stringify({ images: ds.images, dataset: ds.dataset }));

  const splits = { train: 0, val: 0, test: 0 };
  for (const im of images) splits[im.split as keyof typeof splits]++;
  const usedPkgs = [...new Set([...styles.map((s) => EMOJI_STYLES[s].pkg), catPkg, KEYWORD_PACKAGE, ...(existsSync(join(nm, "openmoji", "data", "openmoji.json")) ? ["openmoji"] : [])])];
  const packages = usedPkgs.map((name) => {
    const pj = JSON.parse(readFileSync(join(nm, name, "package.json"), "utf8")) as { version: string; license?: string };
    const style = Object.values(EMOJI_STYLES).find((s) => s.pkg === name && styles.some((x) => EMOJI_STYLES[x] === s));
    return { name, version: pj.version, licence: pj.license ?? "unknown", ...(style ? { artwork: style.artwork, artworkLicence: style.licence } : {}) };
  });
  const summary: EmojiSummary = {
    emoji: kept.length, images: images.length, captions: sentid, splits, styles: styleCounts, testStyle, packages,
  };
  writeFileSync(join(o.out, "meta.json"), JSON.stringify({
    dataset: "emoji",
    written_by: "vlp data emoji",
    layout: { karpathy: "karpathy/dataset_emoji.json", images: "images (Karpathy filename is relative to this folder)" },
    options: { styles, testStyle, size, limit: o.limit ?? null, seed, valFraction: o.valFraction ?? 0.05 },
    ...summary,
    valEmoji: [...valKeys].sort(),
    notes: "Artwork licences: Noto Color Emoji Apache-2.0, Twemoji CC-BY 4.0, OpenMoji CC BY-SA 4.0 (attribute and share alike when redistributing). " +
      "Captions: Unicode names and short names (emoji-datasource, MIT), CLDR labels and keywords (emojibase-data, MIT; OpenMoji tags).",
  }, null, 2));
  return summary;
}
