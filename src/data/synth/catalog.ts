/**
 * The synthetic world's inventory: object categories (each a distinct shape named by a
 * noun that is a whole token of BERT's uncased vocabulary), colours, sizes and styles,
 * plus the detector's label vocabularies and the confusions its noise follows.
 */

export const CATEGORIES = [
  "ball", "box", "star", "ring", "cross", "diamond", "heart",
  "moon", "tent", "bar", "arrow", "egg", "house", "shield",
] as const;
export type Category = (typeof CATEGORIES)[number];

export const PLURALS: Record<Category, string> = {
  ball: "balls", box: "boxes", star: "stars", ring: "rings", cross: "crosses",
  diamond: "diamonds", heart: "hearts", moon: "moons", tent: "tents", bar: "bars",
  arrow: "arrows", egg: "eggs", house: "houses", shield: "shields",
};

export const COLORS = [
  "red", "green", "blue", "yellow", "orange", "purple",
  "pink", "white", "brown", "gray", "black",
] as const;
export type Color = (typeof COLORS)[number];

export const COLOR_RGB: Record<Color, [number, number, number]> = {
  red: [220, 30, 35], green: [40, 170, 60], blue: [35, 80, 220], yellow: [245, 220, 40],
  orange: [245, 140, 20], purple: [130, 50, 170], pink: [245, 130, 190], white: [245, 245, 245],
  brown: [125, 75, 35], gray: [135, 135, 135], black: [20, 20, 20],
};

export const SIZES = ["small", "medium", "large"] as const;
export type Size = (typeof SIZES)[number];
/** Object radius as a fraction of the image side. */
export const SIZE_RADIUS: Record<Size, number> = { small: 0.075, medium: 0.11, large: 0.155 };

export const STYLES = ["solid", "striped", "dotted", "outlined"] as const;
export type Style = (typeof STYLES)[number];

/** Background tones: name (two whole-token words at most) and RGB. */
export const BACKGROUNDS: { name: string; rgb: [number, number, number] }[] = [
  { name: "light gray", rgb: [205, 205, 200] },
  { name: "dark gray", rgb: [60, 62, 66] },
  { name: "light blue", rgb: [175, 200, 230] },
  { name: "dark blue", rgb: [25, 35, 80] },
  { name: "light green", rgb: [190, 222, 180] },
  { name: "dark green", rgb: [28, 62, 38] },
  { name: "light brown", rgb: [210, 185, 150] },
  { name: "dark brown", rgb: [70, 48, 32] },
];
export const BG_KINDS = ["plain", "gradient", "noise"] as const;
export type BgKind = (typeof BG_KINDS)[number];

/** Label vocabularies of the synthetic detector (index = line in the vocab file). */
export const OBJECT_VOCAB: string[] = [...CATEGORIES, "background"];
export const ATTRIBUTE_VOCAB: string[] = [...COLORS, ...SIZES, ...STYLES];
export const BACKGROUND_LABEL = OBJECT_VOCAB.indexOf("background");

/** Shapes a detector may mistake for each other. */
export const CATEGORY_CONFUSIONS: Record<Category, Category[]> = {
  ball: ["egg", "ring"], box: ["bar", "house"], star: ["cross", "diamond"], ring: ["ball", "moon"],
  cross: ["star", "box"], diamond: ["tent", "star"], heart: ["shield", "moon"], moon: ["ring", "heart"],
  tent: ["house", "diamond"], bar: ["box", "arrow"], arrow: ["bar", "tent"], egg: ["ball", "shield"],
  house: ["tent", "box"], shield: ["heart", "house"],
};

export const COLOR_CONFUSIONS: Record<Color, Color[]> = {
  red: ["orange", "pink"], green: ["yellow", "blue"], blue: ["purple", "green"], yellow: ["orange", "green"],
  orange: ["red", "yellow"], purple: ["blue", "pink"], pink: ["purple", "red"], white: ["gray", "yellow"],
  brown: ["orange", "black"], gray: ["white", "black"], black: ["gray", "brown"],
};

export const NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];

export function article(word: string): "a" | "an" {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** Nearest palette colour of an RGB triple (used to name colours from pixels). */
export function nearestColor(r: number, g: number, b: number): Color {
  let best: Color = COLORS[0];
  let bestD = Infinity;
  for (const c of COLORS) {
    const [cr, cg, cb] = COLOR_RGB[c];
    const d = (r - cr) ** 2 + (g - cg) ** 2 + (b - cb) ** 2;
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}
