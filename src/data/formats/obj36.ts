/**
 * LXMERT's "obj36" region-feature TSV (bottom-up-attention Faster R-CNN output).
 *
 * One image per line, tab-separated, no header, ten fields:
 *   img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes, features
 * img_h / img_w / num_boxes are decimal integers; the other six are base64 of raw
 * little-endian numpy buffers: objects_id int64[n], objects_conf float32[n],
 * attrs_id int64[n], attrs_conf float32[n], boxes float32[n,4] (x1,y1,x2,y2 in
 * pixels), features float32[n,D] (D = 2048 for the released files; inferred here).
 * The official files were written by Python's csv module, so lines end in "\r\n";
 * both "\n" and "\r\n" are accepted.
 */
import fs from "node:fs";
import os from "node:os";
import { writingTo } from "../../engine/serialize/atomic.ts";

export const OBJ36_FIELDS = [
  "img_id", "img_h", "img_w", "objects_id", "objects_conf",
  "attrs_id", "attrs_conf", "num_boxes", "boxes", "features",
] as const;

export interface Obj36Record {
  img_id: string;
  img_h: number;
  img_w: number;
  num_boxes: number;
  objects_id: Int32Array;
  objects_conf: Float32Array;
  attrs_id: Int32Array;
  attrs_conf: Float32Array;
  /** n*4, pixels (x1, y1, x2, y2) */
  boxes: Float32Array;
  /** n*D */
  features: Float32Array;
}

/** A malformed obj36 row or record; the message names file, line and img_id. */
export class Obj36Error extends Error {
  override name = "Obj36Error";
}

if (os.endianness() !== "LE") {
  throw new Error("obj36.ts: the obj36 format stores little-endian arrays; this host is big-endian");
}

/**
 * Index of the first NaN or infinity in `a`, or -1. A non-finite feature or box reaches the loss
 * as "non-finite loss at step 1", far from the file and image that hold it, so readers check.
 */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/** "features box 3 dim 17 is NaN" for the first non-finite value of a per-box array, or null. */
export function nonFiniteMessage(name: string, a: ArrayLike<number>, perBox: number): string | null {
  const i = firstNonFinite(a);
  if (i < 0) return null;
  const at = perBox === 1 ? `[${i}]` : ` box ${Math.floor(i / perBox)} ${name === "boxes" ? "coordinate" : "dim"} ${i % perBox}`;
  return `${name}${at} is ${a[i]}`;
}

/** Feature dimension D of a record (features.length / num_boxes; 0 when there are no boxes). */
export function featureDim(rec: Obj36Record): number {
  return rec.num_boxes === 0 ? 0 : rec.features.length / rec.num_boxes;
}

// ---------------------------------------------------------------- encoding

function toBase64(view: ArrayBufferView): string {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength).toString("base64");
}

function int32ToInt64(ids: Int32Array): Int32Array {
  const out = new Int32Array(ids.length * 2);
  for (let i = 0; i < ids.length; i++) {
    out[2 * i] = ids[i];
    out[2 * i + 1] = ids[i] < 0 ? -1 : 0; // sign extension of the high word
  }
  return out;
}

function checkRecord(rec: Obj36Record): void {
  const where = `obj36 record (img_id ${rec.img_id})`;
  if (typeof rec.img_id !== "string" || rec.img_id === "" || /[\t\r\n]/.test(rec.img_id)) {
    throw new Obj36Error(`${where}: img_id must be a non-empty string without tabs or newlines`);
  }
  for (const key of ["img_h", "img_w", "num_boxes"] as const) {
    if (!Number.isInteger(rec[key]) || rec[key] < 0) {
      throw new Obj36Error(`${where}: ${key} must be a non-negative integer, got ${rec[key]}`);
    }
  }
  const n = rec.num_boxes;
  const expect = (key: keyof Obj36Record, len: number) => {
    const got = (rec[key] as ArrayLike<number>).length;
    if (got !== len) throw new Obj36Error(`${where}: ${key} has ${got} values, expected ${len} for ${n} boxes`);
  };
  expect("objects_id", n);
  expect("objects_conf", n);
  expect("attrs_id", n);
  expect("attrs_conf", n);
  expect("boxes", 4 * n);
  if (n > 0 && (rec.features.length === 0 || rec.features.length % n !== 0)) {
    throw new Obj36Error(`${where}: features has ${rec.features.length} values, not a positive multiple of ${n} boxes`);
  }
  if (n === 0 && rec.features.length !== 0) {
    throw new Obj36Error(`${where}: features has ${rec.features.length} values but num_boxes is 0`);
  }
}

/** One TSV line (no newline). Ids are written as int64 like the official extractor. */
export function encodeObj36Row(rec: Obj36Record): string {
  checkRecord(rec);
  return [
    rec.img_id,
    String(rec.img_h),
    String(rec.img_w),
    toBase64(int32ToInt64(rec.objects_id)),
    toBase64(rec.objects_conf),
    toBase64(int32ToInt64(rec.attrs_id)),
    toBase64(rec.attrs_conf),
    String(rec.num_boxes),
    toBase64(rec.boxes),
    toBase64(rec.features),
  ].join("\t");
}

// ---------------------------------------------------------------- decoding

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const INTEGER = /^[0-9]+$/;

/** Bytes a base64 string decodes to, or -1 if it is not canonical base64. */
function base64ByteLength(s: string): number {
  if (s.length % 4 !== 0 || !BASE64.test(s)) return -1;
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  return (s.length / 4) * 3 - pad;
}

/** A Python 3 writer that forgot `.decode()` leaves `b'...'` around the base64; accept it. */
function unwrapPyBytes(s: string): string {
  return s.length >= 3 && s.startsWith("b'") && s.endsWith("'") ? s.slice(2, -1) : s;
}

/** Unquote a csv-module field ("a""b" → a"b); other fields are returned as is. */
function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s;
}

/**
 * Parse one TSV line. `where` locates it for error messages, e.g. "feats.tsv: line 17".
 * A trailing "\r" (csv-module line ending) is ignored.
 */
export function parseObj36Row(line: string, where: string): Obj36Record {
  if (line.endsWith("\r")) line = line.slice(0, -1);
  const fields = line.split("\t");
  const imgId = unquote(fields[0] ?? "");
  const shownId = imgId === "" ? "<empty>" : imgId.length > 80 ? `${imgId.slice(0, 80)}...` : imgId;
  const at = `${where} (img_id ${shownId})`;
  const fail = (msg: string): never => {
    throw new Obj36Error(`${at}: ${msg}`);
  };
  if (fields.length !== OBJ36_FIELDS.length) {
    fail(`expected ${OBJ36_FIELDS.length} tab-separated fields, got ${fields.length}`);
  }
  if (imgId === "") fail(`field "img_id" is empty`);

  const int = (idx: number): number => {
    const s = fields[idx];
    if (!INTEGER.test(s)) fail(`field "${OBJ36_FIELDS[idx]}" is not a non-negative integer: ${JSON.stringify(s.slice(0, 40))}`);
    const v = Number(s);
    if (!Number.isSafeInteger(v)) fail(`field "${OBJ36_FIELDS[idx]}" is out of range: ${s.slice(0, 40)}`);
    return v;
  };
  const img_h = int(1);
  const img_w = int(2);
  const n = int(7);

  // Decode into a fresh (hence 4-byte aligned) buffer of exactly the expected size.
  const bytes = (idx: number, expected: number | null, what: string): Buffer => {
    const name = OBJ36_FIELDS[idx];
    const s = unwrapPyBytes(fields[idx]);
    const len = base64ByteLength(s);
    if (len < 0) fail(`field "${name}" is not valid base64 (${s.length} characters)`);
    if (expected !== null && len !== expected) {
      fail(`field "${name}" has ${len} bytes, expected ${expected} for ${what}`);
    }
    const out = Buffer.allocUnsafeSlow(len);
    const written = out.write(s, "base64");
    if (written !== len) fail(`field "${name}" decoded to ${written} bytes, expected ${len}`);
    return out;
  };
  const f32 = (b: Buffer) => new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  const ids = (idx: number): Int32Array => {
    const b = bytes(idx, 8 * n, `${n} boxes (int64)`);
    const words = new Int32Array(b.buffer, b.byteOffset, 2 * n);
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const lo = words[2 * i];
      if (words[2 * i + 1] !== (lo >> 31)) {
        const v = Buffer.from(b.buffer, b.byteOffset + 8 * i, 8).readBigInt64LE();
        fail(`field "${OBJ36_FIELDS[idx]}"[${i}] = ${v} does not fit in int32`);
      }
      out[i] = lo;
    }
    return out;
  };

  const objects_id = ids(3);
  const objects_conf = f32(bytes(4, 4 * n, `${n} boxes (float32)`));
  const attrs_id = ids(5);
  const attrs_conf = f32(bytes(6, 4 * n, `${n} boxes (float32)`));
  const boxes = f32(bytes(8, 16 * n, `${n} boxes (float32 x 4)`));
  const featBytes = bytes(9, null, "");
  if (n === 0 ? featBytes.length !== 0 : featBytes.length === 0 || featBytes.length % (4 * n) !== 0) {
    fail(`field "features" has ${featBytes.length} bytes, not a positive multiple of ${4 * n} (float32 x ${n} boxes)`);
  }
  const features = f32(featBytes);
  const dim = n === 0 ? 0 : features.length / n;
  const bad = nonFiniteMessage("boxes", boxes, 4) ?? nonFiniteMessage("features", features, dim)
    ?? nonFiniteMessage("objects_conf", objects_conf, 1) ?? nonFiniteMessage("attrs_conf", attrs_conf, 1);
  if (bad) fail(`field ${bad}`);
  return { img_id: imgId, img_h, img_w, num_boxes: n, objects_id, objects_conf, attrs_id, attrs_conf, boxes, features };
}

// ---------------------------------------------------------------- files

export interface TsvLine {
  /** line bytes without the "\n" and without a trailing "\r" */
  bytes: Buffer;
  /** 1-based line number */
  lineNo: number;
  /** byte offset of the line's first byte in the file */
  offset: number;
}

/** Stream the lines of a (possibly huge) text file with their byte offsets. */
export async function* scanTsvLines(path: string): AsyncGenerator<TsvLine> {
  let pending: Buffer[] = [];
  let pos = 0; // file offset of the current chunk
  let lineStart = 0;
  let lineNo = 0;
  const finish = (piece: Buffer): Buffer => {
    let line = pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
    pending = [];
    if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
    return line;
  };
  for await (const chunk of fs.createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let start = 0;
    while (true) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) {
        if (start < chunk.length) pending.push(chunk.subarray(start));
        break;
      }
      yield { bytes: finish(chunk.subarray(start, nl)), lineNo: ++lineNo, offset: lineStart };
      start = nl + 1;
      lineStart = pos + start;
    }
    pos += chunk.length;
  }
  if (pending.length > 0) yield { bytes: finish(Buffer.alloc(0)), lineNo: ++lineNo, offset: lineStart };
}

/**
 * num_boxes and the feature dimension of a raw row, read from the num_boxes field and the
 * features field's base64 length without decoding anything (dim 0 for a 0-box row).
 * null when the row does not have ten fields or the lengths do not fit; the full parse
 * reports what is wrong.
 */
export function rawRowShape(bytes: Buffer): { numBoxes: number; dim: number } | null {
  const tabs: number[] = [];
  for (let p = bytes.indexOf(9); p >= 0 && tabs.length < OBJ36_FIELDS.length; p = bytes.indexOf(9, p + 1)) tabs.push(p);
  if (tabs.length !== OBJ36_FIELDS.length - 1) return null;
  const nField = bytes.subarray(tabs[6] + 1, tabs[7]).toString("latin1");
  if (!INTEGER.test(nField)) return null;
  const n = Number(nField);
  let feat = bytes.subarray(tabs[8] + 1);
  if (feat[feat.length - 1] === 13) feat = feat.subarray(0, feat.length - 1);
  if (feat[0] === 98 && feat[1] === 39) feat = feat.subarray(2, feat.length - 1); // b'...'
  const pad = feat[feat.length - 1] === 61 ? (feat[feat.length - 2] === 61 ? 2 : 1) : 0;
  const featBytes = (feat.length / 4) * 3 - pad;
  if (!Number.isSafeInteger(n) || !Number.isInteger(featBytes) || featBytes < 0) return null;
  if (n === 0) return featBytes === 0 ? { numBoxes: 0, dim: 0 } : null;
  const dim = featBytes / (4 * n);
  return Number.isInteger(dim) && dim > 0 ? { numBoxes: n, dim } : null;
}

export interface ReadObj36Options {
  /** skip malformed rows instead of throwing (empty lines are always skipped) */
  skipInvalid?: boolean;
  /** called with the error of each skipped row */
  onSkip?: (err: Obj36Error) => void;
}

/** Stream the records of an obj36 TSV file one at a time (never holds the file in memory). */
export async function* readObj36Tsv(path: string, opts: ReadObj36Options = {}): AsyncGenerator<Obj36Record> {
  for await (const { record } of readObj36TsvRows(path, opts)) yield record;
}

/** `readObj36Tsv` with each record's 1-based line number, for messages that point into the file. */
export async function* readObj36TsvRows(path: string, opts: ReadObj36Options = {}): AsyncGenerator<{ record: Obj36Record; lineNo: number }> {
  for await (const { bytes, lineNo } of scanTsvLines(path)) {
    if (bytes.length === 0) continue;
    let rec: Obj36Record;
    try {
      rec = parseObj36Row(bytes.toString("utf8"), `${path}: line ${lineNo}`);
    } catch (err) {
      if (opts.skipInvalid && err instanceof Obj36Error) {
        opts.onSkip?.(err);
        continue;
      }
      throw err;
    }
    yield { record: rec, lineNo };
  }
}

/** Writes obj36 rows ("\n"-terminated) synchronously; `close()` flushes and closes the file. */
export class Obj36Writer {
  private fd: number | null;
  private count = 0;

  constructor(readonly path: string) {
    this.fd = fs.openSync(path, "w");
  }

  write(rec: Obj36Record): void {
    if (this.fd === null) throw new Error(`${this.path}: Obj36Writer.write after close`);
    const line = Buffer.from(encodeObj36Row(rec) + "\n", "utf8");
    let done = 0;
    const fd = this.fd;
    writingTo(this.path, () => {
      while (done < line.length) done += fs.writeSync(fd, line, done, line.length - done);
    });
    this.count++;
  }

  /** rows written so far */
  get rows(): number {
    return this.count;
  }

  async close(): Promise<void> {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    await new Promise<void>((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
  }
}
