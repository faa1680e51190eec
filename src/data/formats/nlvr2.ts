// NLVR2: the official jsonl statements (train.json / dev.json / test1.json, one JSON object
// per line), LXMERT's NLVR2 json, and the CSV prediction dump ("identifier,True|False").

import {
  type Json, type ReadOptions, type ReadResult, FieldError, idLabel, int, optional, parseRecords, readJson,
  readJsonLines, readText, str, topArray, withoutUndefined, writeJson, writeJsonLines, writeText,
} from "./util.ts";

export interface Nlvr2Statement {
  identifier: string;
  sentence: string;
  label: "True" | "False";
  left_url?: string;
  right_url?: string;
  writer?: string;
  synset?: string;
  query?: string;
}

export interface LxmertNlvr2Datum { identifier: string; img0: string; img1: string; label: 0 | 1; sent: string; uid: string }

/**
 * "train-10171-0-0" = split, set, pair, sentence. Images are "<split>-<set>-<pair>-img0/img1"
 * (the files are named <image id>.png).
 */
export function nlvr2ImageIds(identifier: string): { split: string; img0: string; img1: string } {
  const m = /^(.+)-(\d+)-(\d+)-(\d+)$/.exec(identifier);
  if (!m) throw new FieldError(`identifier "${identifier}" is not <split>-<set>-<pair>-<sentence>`);
  const stem = `${m[1]}-${m[2]}-${m[3]}`;
  return { split: m[1], img0: `${stem}-img0`, img1: `${stem}-img1` };
}

function parseLabel(r: Json): "True" | "False" {
  const label = str(r, "label");
  if (label !== "True" && label !== "False") throw new FieldError(`field "label" should be "True" or "False", got "${label}"`);
  return label;
}

const parseStatement = (r: Json): Nlvr2Statement => {
  const identifier = str(r, "identifier");
  nlvr2ImageIds(identifier);
  return withoutUndefined({
    identifier,
    sentence: str(r, "sentence"),
    label: parseLabel(r),
    left_url: optional(r, "left_url", str),
    right_url: optional(r, "right_url", str),
    writer: optional(r, "writer", str),
    synset: optional(r, "synset", str),
    query: optional(r, "query", str),
  });
};

/** Official jsonl; a line that is not valid JSON is a malformed record too. */
export function readNlvr2Jsonl(path: string, opts: ReadOptions = {}): ReadResult<Nlvr2Statement> {
  return parseRecords(path, readJsonLines(path), parseStatement, { ...opts, id: idLabel("identifier") });
}

export function writeNlvr2Jsonl(path: string, statements: Nlvr2Statement[]): void {
  writeJsonLines(path, statements);
}

/**
 * LXMERT's name for an official NLVR2 split: its converter (data/nlvr2/process_raw_data_scripts)
 * writes train.json → train.json, dev.json → valid.json, test1.json → test.json. Other split
 * names (e.g. a synthetic "val") are kept as they are.
 */
export const LXMERT_NLVR2_SPLITS: Readonly<Record<string, string>> = { train: "train", dev: "valid", test1: "test" };

export function lxmertNlvr2Split(officialSplit: string): string {
  return Object.hasOwn(LXMERT_NLVR2_SPLITS, officialSplit) ? LXMERT_NLVR2_SPLITS[officialSplit] : officialSplit;
}

/**
 * LXMERT records, as LXMERT's converted files have them: uid "nlvr2_<LXMERT split>_<index>",
 * e.g. "nlvr2_valid_0" for the first statement of dev.json. LXMERT converts one file at a
 * time, so the index counts statements of the same split (statements of several splits in
 * one list are numbered per split).
 */
export function nlvr2ToLxmert(statements: Nlvr2Statement[]): LxmertNlvr2Datum[] {
  const next = new Map<string, number>();
  return statements.map((s) => {
    const { split, img0, img1 } = nlvr2ImageIds(s.identifier);
    const lxSplit = lxmertNlvr2Split(split);
    const index = next.get(lxSplit) ?? 0;
    next.set(lxSplit, index + 1);
    return { identifier: s.identifier, img0, img1, label: s.label === "True" ? 1 : 0, sent: s.sentence, uid: `nlvr2_${lxSplit}_${index}` };
  });
}

const parseLxmertNlvr2 = (r: Json): LxmertNlvr2Datum => {
  const label = int(r, "label");
  if (label !== 0 && label !== 1) throw new FieldError(`field "label" should be 0 or 1, got ${label}`);
  return { identifier: str(r, "identifier"), img0: str(r, "img0"), img1: str(r, "img1"), label, sent: str(r, "sent"), uid: str(r, "uid") };
};

export function readLxmertNlvr2(path: string, opts: ReadOptions = {}): ReadResult<LxmertNlvr2Datum> {
  return parseRecords(path, topArray(path, readJson(path)), parseLxmertNlvr2, { ...opts, id: idLabel("identifier", "uid") });
}

export function writeLxmertNlvr2(path: string, data: LxmertNlvr2Datum[]): void {
  writeJson(path, data);
}

// ---- prediction dump: one "identifier,True|False" line per statement, no header ----

export interface Nlvr2Prediction { identifier: string; prediction: boolean }

export function writeNlvr2Predictions(path: string, preds: Nlvr2Prediction[]): void {
  writeText(path, preds.map((p) => `${p.identifier},${p.prediction ? "True" : "False"}\n`).join(""));
}

export function readNlvr2Predictions(path: string, opts: ReadOptions = {}): ReadResult<Nlvr2Prediction> {
  const rows = readText(path).split("\n").filter((l) => l.trim() !== "");
  return parseRecords(path, rows.map((line) => ({ line })), ({ line }) => {
    const m = /^([^,]+),(True|False)\s*$/.exec(line as string);
    if (!m) throw new FieldError(`expected "identifier,True|False", got "${line}"`);
    nlvr2ImageIds(m[1]);
    return { identifier: m[1], prediction: m[2] === "True" };
  }, { ...opts, id: (raw) => `line "${(raw as { line: string }).line.split(",")[0]}"` });
}
