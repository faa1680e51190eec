/**
 * Random access to detector region features without loading them into memory
 * (LXMERT's loader reads every TSV row into RAM in every worker: 200+ GB, lxmert #37/#49).
 *
 * Two sources share the `RegionSource` interface:
 *  - `TsvRegionReader`: an obj36 TSV plus a byte-offset index (`<tsv>.idx.json`);
 *    each `get` is one positioned read and one row parse.
 *  - `RegionStore`: the compact binary `vlp.regions` format below, written by
 *    `RegionStoreWriter` / `convertTsvToStore`; each `get` is two positioned reads,
 *    features stored as float32 or float16 (decoded to float32 on read).
 * `gridRegions` / `gridRegionFeatures` / `gridRegionsFromImage` give a detector-free
 * fallback for raw images (k×k cells, hand-made colour statistics as features).
 *
 * vlp.regions layout (all integers little-endian):
 *   [0, 64)        preamble: "VLPREGS\n", u32 version (1), zeros
 *   [64, H)        `count` fixed-size records of `recordSize` bytes; record i starts at
 *                  dataOffset + i * recordSize, i = position of its id in header.ids
 *   [H, H + L)     header JSON (utf-8): format, version, dtype, dim, maxBoxes, count,
 *                  recordSize, dataOffset, layout (byte offsets inside a record), ids
 *   last 24 bytes  trailer: u64 H, u32 L, u32 0, "VLPREND\n"
 * The header sits at the end so the writer can stream records without knowing the
 * count; readers find it through the fixed-size trailer.
 * A record (m = maxBoxes, D = dim): u32 numBoxes, u32 imgH, u32 imgW, u32 0;
 *   boxes f32[m*4] (pixels); objectsId i32[m]; objectsConf f32[m]; attrsId i32[m];
 *   attrsConf f32[m]; features dtype[m*D]; zero padding to a multiple of 8.
 *   Slots past numBoxes are zero.
 */
import fs from "node:fs";
import { basename } from "node:path";
import { writingTo } from "../engine/serialize/atomic.ts";
import { parseObj36Row, rawRowShape, readObj36TsvRows, scanTsvLines, featureDim, nonFiniteMessage, Obj36Error, type Obj36Record } from "./formats/obj36.ts";

export interface RegionFeatures {
  imgId: string;
  imgH: number;
  imgW: number;
  numBoxes: number;
  /** feature dimension D (features.length / numBoxes) */
  dim: number;
  /** numBoxes*4, pixels (x1, y1, x2, y2) */
  boxes: Float32Array;
  /** numBoxes*4, (x1/W, y1/H, x2/W, y2/H) as LXMERT feeds its box encoder */
  normBoxes: Float32Array;
  /** numBoxes*D */
  features: Float32Array;
  /** object class per box, -1 = no label */
  objectsId: Int32Array;
  objectsConf: Float32Array;
  /** attribute class per box, -1 = no label */
  attrsId: Int32Array;
  attrsConf: Float32Array;
}

export interface RegionSource {
  ids(): string[];
  get(imgId: string): RegionFeatures;
  /** Where an image's record is, for messages: "<file>: line 17 (img_id X)" or "<file>: record 3 (img_id X)". */
  where(imgId: string): string;
  close(): void;
}

export function normalizeBoxes(boxes: Float32Array, imgW: number, imgH: number): Float32Array {
  const out = new Float32Array(boxes.length);
  for (let i = 0; i < boxes.length; i += 4) {
    out[i] = boxes[i] / imgW;
    out[i + 1] = boxes[i + 1] / imgH;
    out[i + 2] = boxes[i + 2] / imgW;
    out[i + 3] = boxes[i + 3] / imgH;
  }
  return out;
}

/**
 * A TSV record as region features. `fileDim` is the file's feature dimension, given to a
 * 0-box row (whose own features say nothing about it) so that it reports the same `dim`
 * as the other rows and as a `RegionStore` made from the file.
 */
export function fromObj36(rec: Obj36Record, fileDim?: number): RegionFeatures {
  return {
    imgId: rec.img_id,
    imgH: rec.img_h,
    imgW: rec.img_w,
    numBoxes: rec.num_boxes,
    dim: rec.num_boxes === 0 ? fileDim ?? 0 : featureDim(rec),
    boxes: rec.boxes,
    normBoxes: normalizeBoxes(rec.boxes, rec.img_w, rec.img_h),
    features: rec.features,
    objectsId: rec.objects_id,
    objectsConf: rec.objects_conf,
    attrsId: rec.attrs_id,
    attrsConf: rec.attrs_conf,
  };
}

function readFully(fd: number, buf: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) throw new Error(`${what}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** Writes all of `buf`; a filesystem error (a full disk) names `path`. */
function writeFully(fd: number, buf: Uint8Array, path: string): void {
  let done = 0;
  writingTo(path, () => {
    while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done);
  });
}

// ================================================================ TSV offset index

export interface TsvIndexEntry {
  /** byte offset of the row */
  offset: number;
  /** row length in bytes, without the line ending */
  length: number;
  /** 1-based line number, for error messages */
  line: number;
}

export type TsvIndex = Map<string, TsvIndexEntry>;

interface TsvIndexFile {
  format: "vlpkit.tsv-index";
  version: 1;
  tsvSize: number;
  tsvMtimeMs: number;
  ids: string[];
  offsets: number[];
  lengths: number[];
  lines: number[];
}

export function tsvIndexPath(tsvPath: string): string {
  return `${tsvPath}.idx.json`;
}

function loadIndexFile(indexPath: string, stat: fs.Stats): TsvIndex | null {
  let raw: TsvIndexFile;
  try {
    raw = JSON.parse(fs.readFileSync(indexPath, "utf8"));
  } catch {
    return null; // missing or unreadable: rebuild
  }
  if (raw?.format !== "vlpkit.tsv-index" || raw.version !== 1) return null;
  if (raw.tsvSize !== stat.size || raw.tsvMtimeMs !== stat.mtimeMs) return null;
  const n = raw.ids?.length;
  if (!Array.isArray(raw.ids) || raw.offsets?.length !== n || raw.lengths?.length !== n || raw.lines?.length !== n) return null;
  const index: TsvIndex = new Map();
  for (let i = 0; i < n; i++) index.set(raw.ids[i], { offset: raw.offsets[i], length: raw.lengths[i], line: raw.lines[i] });
  return index.size === n ? index : null;
}

function unquoteId(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s;
}

/**
 * Map img_id → row location for an obj36 TSV, by scanning only the first field of
 * each line. Saved next to the TSV as `<tsv>.idx.json` (or `opts.indexPath`) and
 * reused while the TSV's size and mtime are unchanged. If the index cannot be
 * written (read-only dataset directory) the map is still returned.
 */
export async function buildTsvIndex(
  tsvPath: string,
  opts: { indexPath?: string; rebuild?: boolean } = {},
): Promise<TsvIndex> {
  const indexPath = opts.indexPath ?? tsvIndexPath(tsvPath);
  const stat = fs.statSync(tsvPath);
  if (!opts.rebuild) {
    const cached = loadIndexFile(indexPath, stat);
    if (cached) return cached;
  }
  const index: TsvIndex = new Map();
  for await (const { bytes, lineNo, offset } of scanTsvLines(tsvPath)) {
    if (bytes.length === 0) continue;
    const tab = bytes.indexOf(9);
    if (tab <= 0) throw new Error(`${tsvPath}: line ${lineNo}: no img_id field (line starts ${JSON.stringify(bytes.subarray(0, 40).toString())})`);
    const id = unquoteId(bytes.subarray(0, tab).toString("utf8"));
    const prev = index.get(id);
    if (prev) throw new Error(`${tsvPath}: line ${lineNo} (img_id ${id}): duplicate img_id, first at line ${prev.line}`);
    index.set(id, { offset, length: bytes.length, line: lineNo });
  }
  const after = fs.statSync(tsvPath);
  if (after.size !== stat.size || after.mtimeMs !== stat.mtimeMs) {
    throw new Error(`${tsvPath}: file changed while it was being indexed`);
  }
  const file: TsvIndexFile = {
    format: "vlpkit.tsv-index", version: 1, tsvSize: stat.size, tsvMtimeMs: stat.mtimeMs,
    ids: [], offsets: [], lengths: [], lines: [],
  };
  for (const [id, e] of index) {
    file.ids.push(id);
    file.offsets.push(e.offset);
    file.lengths.push(e.length);
    file.lines.push(e.line);
  }
  const tmp = `${indexPath}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(file));
    fs.renameSync(tmp, indexPath);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EROFS" && code !== "EPERM") throw err;
  }
  return index;
}

/** Random access to an obj36 TSV: one positioned read + parse per `get`. */
export class TsvRegionReader implements RegionSource {
  private fd: number | null;
  /** feature dimension of the first row with boxes (0 if no row has boxes); 0-box rows report it too */
  readonly dim: number;

  private constructor(readonly path: string, private readonly index: TsvIndex, fd: number) {
    this.fd = fd;
    this.dim = this.firstFeatureDim();
  }

  static async open(tsvPath: string, opts: { indexPath?: string } = {}): Promise<TsvRegionReader> {
    const index = await buildTsvIndex(tsvPath, opts);
    return new TsvRegionReader(tsvPath, index, fs.openSync(tsvPath, "r"));
  }

  private readRow(imgId: string, e: TsvIndexEntry): Buffer {
    if (this.fd === null) throw new Error(`${this.path}: reader is closed`);
    const buf = Buffer.allocUnsafeSlow(e.length);
    readFully(this.fd, buf, e.offset, `${this.path}: line ${e.line} (img_id ${imgId})`);
    return buf;
  }

  /** Rows are read in file order until one has boxes (usually the first). */
  private firstFeatureDim(): number {
    for (const [id, e] of this.index) {
      const shape = rawRowShape(this.readRow(id, e));
      if (shape && shape.numBoxes > 0) return shape.dim;
    }
    return 0;
  }

  get size(): number {
    return this.index.size;
  }

  ids(): string[] {
    return [...this.index.keys()];
  }

  has(imgId: string): boolean {
    return this.index.has(imgId);
  }

  getRecord(imgId: string): Obj36Record {
    if (this.fd === null) throw new Error(`${this.path}: reader is closed`);
    const e = this.index.get(imgId);
    if (!e) throw new Error(`${this.path}: no row with img_id ${JSON.stringify(imgId)} (${this.index.size} rows indexed)`);
    const buf = this.readRow(imgId, e);
    const rec = parseObj36Row(buf.toString("utf8"), `${this.path}: line ${e.line}`);
    if (rec.img_id !== imgId) {
      throw new Error(`${this.path}: line ${e.line}: index says img_id ${imgId} but the row has ${rec.img_id}; delete ${tsvIndexPath(this.path)}`);
    }
    return rec;
  }

  get(imgId: string): RegionFeatures {
    return fromObj36(this.getRecord(imgId), this.dim);
  }

  where(imgId: string): string {
    const e = this.index.get(imgId);
    return `${this.path}: ${e ? `line ${e.line}` : "no row"} (img_id ${imgId})`;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

// ================================================================ float16

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** binary16 bits for float32 bits `x`, round-to-nearest-even (overflow → inf, NaN stays NaN). */
function float32BitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0); // inf / NaN
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal → ±0
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++;
    return sign | h; // may round up into the smallest normal, which is the right encoding
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // carry may reach inf: correct
  return sign | h;
}

/** IEEE 754 binary16 bits of `v` (rounded to float32 first), round-to-nearest-even. */
export function floatToHalf(v: number): number {
  f32Scratch[0] = v;
  return float32BitsToHalf(u32Scratch[0]);
}

/**
 * Encode values to binary16 into `out`. Returns the index of the first finite value
 * that overflowed to ±inf (|v| ≥ 65520), or -1.
 */
export function encodeHalfArray(src: ArrayLike<number>, out: Uint16Array): number {
  const n = src.length;
  let overflow = -1;
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const x = bits[i];
      const h = float32BitsToHalf(x);
      if (overflow < 0 && (h & 0x7fff) === 0x7c00 && (x & 0x7f800000) !== 0x7f800000) overflow = i;
      out[i] = h;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const h = floatToHalf(src[i]);
      if (overflow < 0 && (h & 0x7fff) === 0x7c00 && Number.isFinite(src[i])) overflow = i;
      out[i] = h;
    }
  }
  return overflow;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 bit patterns of all 65536 halves (bit copies keep NaN payloads and are faster than float stores) */
let halfBits: Uint32Array | null = null;

/** Decode binary16 bits to float32 (table lookup). */
export function decodeHalfArray(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  if (out.length < src.length) throw new Error(`decodeHalfArray: output has ${out.length} slots for ${src.length} values`);
  if (!halfBits) {
    const f = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f[h] = halfToFloat(h);
    halfBits = new Uint32Array(f.buffer);
  }
  const table = halfBits;
  const bits = new Uint32Array(out.buffer, out.byteOffset, src.length);
  const n = src.length;
  for (let i = 0; i < n; i++) bits[i] = table[src[i]];
  return out;
}

// ================================================================ vlp.regions store

export type FeatureDtype = "float32" | "float16";

const MAGIC = Buffer.from("VLPREGS\n", "latin1");
const TRAILER_MAGIC = Buffer.from("VLPREND\n", "latin1");
const VERSION = 1;
const DATA_OFFSET = 64;
const TRAILER_SIZE = 24;
const META_FIXED = 16; // numBoxes, imgH, imgW, reserved

interface RecordLayout {
  boxes: number;
  objectsId: number;
  objectsConf: number;
  attrsId: number;
  attrsConf: number;
  features: number;
}

interface StoreHeader {
  format: "vlp.regions";
  version: number;
  dtype: FeatureDtype;
  dim: number;
  maxBoxes: number;
  count: number;
  recordSize: number;
  dataOffset: number;
  layout: RecordLayout;
  ids: string[];
  /** where the features came from, e.g. "grid" for the detector-free stand-in (absent: a detector's TSV) */
  source?: string;
}

function recordLayout(dim: number, maxBoxes: number, dtype: FeatureDtype): { layout: RecordLayout; recordSize: number } {
  const m = maxBoxes;
  const layout: RecordLayout = {
    boxes: META_FIXED,
    objectsId: META_FIXED + 16 * m,
    objectsConf: META_FIXED + 20 * m,
    attrsId: META_FIXED + 24 * m,
    attrsConf: META_FIXED + 28 * m,
    features: META_FIXED + 32 * m,
  };
  const featBytes = m * dim * (dtype === "float16" ? 2 : 4);
  const recordSize = Math.ceil((layout.features + featBytes) / 8) * 8;
  return { layout, recordSize };
}

/** What `RegionStoreWriter.add` takes; missing labels are stored as -1 / 0. */
export interface RegionInput {
  imgId: string;
  imgH: number;
  imgW: number;
  numBoxes: number;
  boxes: ArrayLike<number>;
  features: ArrayLike<number>;
  objectsId?: ArrayLike<number>;
  objectsConf?: ArrayLike<number>;
  attrsId?: ArrayLike<number>;
  attrsConf?: ArrayLike<number>;
}

export interface RegionStoreOptions {
  dim: number;
  maxBoxes: number;
  dtype?: FeatureDtype;
  /** recorded in the header as `source` (e.g. "grid") */
  source?: string;
}

/** Streams records into a vlp.regions file (written to `<path>.tmp-<pid>`, renamed on close). */
export class RegionStoreWriter {
  readonly dim: number;
  readonly maxBoxes: number;
  readonly dtype: FeatureDtype;
  readonly source: string | undefined;
  private readonly layout: RecordLayout;
  private readonly recordSize: number;
  private readonly record: Buffer;
  private readonly tmpPath: string;
  private fd: number | null;
  private readonly idList: string[] = [];
  private readonly seen = new Set<string>();

  constructor(readonly path: string, opts: RegionStoreOptions) {
    const { dim, maxBoxes, dtype = "float32", source } = opts;
    if (!Number.isInteger(dim) || dim <= 0) throw new Error(`${path}: dim must be a positive integer, got ${dim}`);
    if (!Number.isInteger(maxBoxes) || maxBoxes <= 0) throw new Error(`${path}: maxBoxes must be a positive integer, got ${maxBoxes}`);
    if (dtype !== "float32" && dtype !== "float16") throw new Error(`${path}: dtype must be float32 or float16, got ${dtype}`);
    this.dim = dim;
    this.maxBoxes = maxBoxes;
    this.dtype = dtype;
    this.source = source;
    ({ layout: this.layout, recordSize: this.recordSize } = recordLayout(dim, maxBoxes, dtype));
    this.record = Buffer.allocUnsafeSlow(this.recordSize);
    this.tmpPath = `${path}.tmp-${process.pid}`;
    this.fd = fs.openSync(this.tmpPath, "w");
    const pre = Buffer.alloc(DATA_OFFSET);
    MAGIC.copy(pre, 0);
    pre.writeUInt32LE(VERSION, 8);
    writeFully(this.fd, pre, this.tmpPath);
  }

  get count(): number {
    return this.idList.length;
  }

  add(r: RegionInput): void {
    if (this.fd === null) throw new Error(`${this.path}: RegionStoreWriter.add after close`);
    const where = `${this.path}: record ${this.idList.length} (img_id ${r.imgId})`;
    if (typeof r.imgId !== "string" || r.imgId === "") throw new Error(`${where}: imgId must be a non-empty string`);
    if (this.seen.has(r.imgId)) throw new Error(`${where}: duplicate img_id`);
    const n = r.numBoxes;
    if (!Number.isInteger(n) || n < 0 || n > this.maxBoxes) throw new Error(`${where}: numBoxes ${n} not in [0, ${this.maxBoxes}]`);
    for (const k of ["imgH", "imgW"] as const) {
      if (!Number.isInteger(r[k]) || r[k] < 0 || r[k] > 0xffffffff) throw new Error(`${where}: ${k} ${r[k]} is not a u32`);
    }
    const need = (name: string, a: ArrayLike<number> | undefined, len: number) => {
      if (a !== undefined && a.length !== len) throw new Error(`${where}: ${name} has ${a.length} values, expected ${len} for ${n} boxes`);
    };
    need("boxes", r.boxes, 4 * n);
    need("features", r.features, n * this.dim);
    need("objectsId", r.objectsId, n);
    need("objectsConf", r.objectsConf, n);
    need("attrsId", r.attrsId, n);
    need("attrsConf", r.attrsConf, n);
    const bad = nonFiniteMessage("boxes", r.boxes, 4) ?? nonFiniteMessage("features", r.features, this.dim);
    if (bad) throw new Error(`${where}: ${bad}`);

    const buf = this.record;
    const L = this.layout;
    const m = this.maxBoxes;
    buf.fill(0);
    buf.writeUInt32LE(n, 0);
    buf.writeUInt32LE(r.imgH, 4);
    buf.writeUInt32LE(r.imgW, 8);
    const ab = buf.buffer;
    new Float32Array(ab, buf.byteOffset + L.boxes, 4 * m).set(r.boxes);
    const oid = new Int32Array(ab, buf.byteOffset + L.objectsId, m);
    const aid = new Int32Array(ab, buf.byteOffset + L.attrsId, m);
    if (r.objectsId) oid.set(r.objectsId); else oid.fill(-1, 0, n);
    if (r.attrsId) aid.set(r.attrsId); else aid.fill(-1, 0, n);
    if (r.objectsConf) new Float32Array(ab, buf.byteOffset + L.objectsConf, m).set(r.objectsConf);
    if (r.attrsConf) new Float32Array(ab, buf.byteOffset + L.attrsConf, m).set(r.attrsConf);
    const nf = n * this.dim;
    if (this.dtype === "float32") {
      new Float32Array(ab, buf.byteOffset + L.features, nf).set(r.features);
    } else {
      const bad = encodeHalfArray(r.features, new Uint16Array(ab, buf.byteOffset + L.features, nf));
      if (bad >= 0) {
        throw new Error(`${where}: feature ${r.features[bad]} (box ${Math.floor(bad / this.dim)}, dim ${bad % this.dim}) overflows float16 (max 65504); use dtype float32`);
      }
    }
    writeFully(this.fd, buf, this.tmpPath);
    this.idList.push(r.imgId);
    this.seen.add(r.imgId);
  }

  /** Write the header and trailer, then move the file into place. */
  async close(): Promise<void> {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    const header: StoreHeader = {
      format: "vlp.regions", version: VERSION, dtype: this.dtype, dim: this.dim, maxBoxes: this.maxBoxes,
      count: this.idList.length, recordSize: this.recordSize, dataOffset: DATA_OFFSET, layout: this.layout, ids: this.idList,
      ...(this.source === undefined ? {} : { source: this.source }),
    };
    const json = Buffer.from(JSON.stringify(header), "utf8");
    const trailer = Buffer.alloc(TRAILER_SIZE);
    trailer.writeBigUInt64LE(BigInt(DATA_OFFSET + this.idList.length * this.recordSize), 0);
    trailer.writeUInt32LE(json.length, 8);
    TRAILER_MAGIC.copy(trailer, 16);
    try {
      writeFully(fd, json, this.tmpPath);
      writeFully(fd, trailer, this.tmpPath);
    } finally {
      fs.closeSync(fd);
    }
    await fs.promises.rename(this.tmpPath, this.path);
  }

  /** Discard the partially written file. */
  abort(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    fs.rmSync(this.tmpPath, { force: true });
  }
}

/** Read-only vlp.regions store; `get` does two positioned reads and never maps the file. */
export class RegionStore implements RegionSource {
  readonly dim: number;
  readonly maxBoxes: number;
  readonly dtype: FeatureDtype;
  readonly count: number;
  /** the header's `source` ("grid" for detector-free features), if any */
  readonly source: string | undefined;
  private readonly recordSize: number;
  private readonly dataOffset: number;
  private readonly layout: RecordLayout;
  private readonly idList: string[];
  private readonly position = new Map<string, number>();
  private fd: number | null;
  /** reused read buffer for float16 features (decoded into a fresh Float32Array per get) */
  private halfScratch: Uint16Array | null = null;

  private constructor(readonly path: string, fd: number, h: StoreHeader) {
    this.fd = fd;
    this.dim = h.dim;
    this.maxBoxes = h.maxBoxes;
    this.dtype = h.dtype;
    this.count = h.count;
    this.source = typeof h.source === "string" ? h.source : undefined;
    this.recordSize = h.recordSize;
    this.dataOffset = h.dataOffset;
    this.layout = h.layout;
    this.idList = h.ids;
    h.ids.forEach((id, i) => {
      if (this.position.has(id)) throw new Error(`${path}: header lists img_id ${id} twice (records ${this.position.get(id)} and ${i})`);
      this.position.set(id, i);
    });
  }

  static open(path: string): RegionStore {
    const fd = fs.openSync(path, "r");
    try {
      return new RegionStore(path, fd, RegionStore.readHeader(path, fd));
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  private static readHeader(path: string, fd: number): StoreHeader {
    const size = fs.fstatSync(fd).size;
    const bad = (msg: string): never => {
      throw new Error(`${path}: not a valid vlp.regions store: ${msg}`);
    };
    if (size < DATA_OFFSET + TRAILER_SIZE) bad(`file is only ${size} bytes`);
    const pre = Buffer.alloc(12);
    readFully(fd, pre, 0, path);
    if (!pre.subarray(0, 8).equals(MAGIC)) bad("bad magic");
    const version = pre.readUInt32LE(8);
    if (version !== VERSION) bad(`version ${version}, this reader knows ${VERSION}`);
    const trailer = Buffer.alloc(TRAILER_SIZE);
    readFully(fd, trailer, size - TRAILER_SIZE, path);
    if (!trailer.subarray(16).equals(TRAILER_MAGIC)) bad("bad trailer (truncated or still being written?)");
    const hOff = Number(trailer.readBigUInt64LE(0));
    const hLen = trailer.readUInt32LE(8);
    if (hOff + hLen + TRAILER_SIZE !== size) bad(`header at ${hOff}+${hLen} does not end at the trailer (file size ${size})`);
    const json = Buffer.alloc(hLen);
    readFully(fd, json, hOff, path);
    let h: StoreHeader;
    try {
      h = JSON.parse(json.toString("utf8"));
    } catch (err) {
      return bad(`header JSON: ${(err as Error).message}`);
    }
    if (h.format !== "vlp.regions") bad(`header format ${h.format}`);
    if (h.dtype !== "float32" && h.dtype !== "float16") bad(`dtype ${h.dtype}`);
    if (!Number.isInteger(h.dim) || h.dim <= 0 || !Number.isInteger(h.maxBoxes) || h.maxBoxes <= 0) bad(`dim ${h.dim} / maxBoxes ${h.maxBoxes}`);
    if (!Array.isArray(h.ids) || h.ids.length !== h.count) bad(`count ${h.count} but ${h.ids?.length} ids`);
    const expect = recordLayout(h.dim, h.maxBoxes, h.dtype);
    if (h.recordSize !== expect.recordSize || JSON.stringify(h.layout) !== JSON.stringify(expect.layout)) bad("record layout does not match dim/maxBoxes/dtype");
    if (h.dataOffset !== DATA_OFFSET || hOff !== DATA_OFFSET + h.count * h.recordSize) {
      bad(`${h.count} records of ${h.recordSize} bytes do not fill [${h.dataOffset}, ${hOff})`);
    }
    return h;
  }

  ids(): string[] {
    return this.idList.slice();
  }

  has(imgId: string): boolean {
    return this.position.has(imgId);
  }

  get(imgId: string): RegionFeatures {
    const i = this.position.get(imgId);
    if (i === undefined) throw new Error(`${this.path}: no record for img_id ${JSON.stringify(imgId)} (${this.count} records)`);
    return this.getAt(i);
  }

  where(imgId: string): string {
    const i = this.position.get(imgId);
    return `${this.path}: ${i === undefined ? "no record" : `record ${i}`} (img_id ${imgId})`;
  }

  /** Record by position (0 ≤ i < count), in the order the writer added them. */
  getAt(i: number): RegionFeatures {
    if (this.fd === null) throw new Error(`${this.path}: store is closed`);
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new Error(`${this.path}: record ${i} out of range [0, ${this.count})`);
    const imgId = this.idList[i];
    const where = `${this.path}: record ${i} (img_id ${imgId})`;
    const base = this.dataOffset + i * this.recordSize;
    const L = this.layout;
    const m = this.maxBoxes;
    const meta = Buffer.allocUnsafeSlow(L.features);
    readFully(this.fd, meta, base, where);
    const n = meta.readUInt32LE(0);
    if (n > m) throw new Error(`${where}: numBoxes ${n} > maxBoxes ${m} (corrupt store)`);
    const imgH = meta.readUInt32LE(4);
    const imgW = meta.readUInt32LE(8);
    const ab = meta.buffer;
    const f32 = (off: number, len: number) => new Float32Array(ab.slice(off, off + 4 * len));
    const i32 = (off: number, len: number) => new Int32Array(ab.slice(off, off + 4 * len));
    const boxes = f32(L.boxes, 4 * n);
    const nf = n * this.dim;
    let features: Float32Array;
    if (this.dtype === "float32") {
      features = new Float32Array(nf);
      readFully(this.fd, new Uint8Array(features.buffer), base + L.features, where);
    } else {
      this.halfScratch ??= new Uint16Array(m * this.dim);
      const half = this.halfScratch.subarray(0, nf);
      readFully(this.fd, new Uint8Array(half.buffer, 0, 2 * nf), base + L.features, where);
      features = decodeHalfArray(half);
    }
    // a store written before the writer checked, or damaged since
    const bad = nonFiniteMessage("boxes", boxes, 4) ?? nonFiniteMessage("features", features, this.dim);
    if (bad) throw new Error(`${where}: ${bad}`);
    return {
      imgId, imgH, imgW, numBoxes: n, dim: this.dim,
      boxes, normBoxes: normalizeBoxes(boxes, imgW, imgH), features,
      objectsId: i32(L.objectsId, n), objectsConf: f32(L.objectsConf, n),
      attrsId: i32(L.attrsId, n), attrsConf: f32(L.attrsConf, n),
    };
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

export interface ConvertResult {
  count: number;
  dim: number;
  maxBoxes: number;
  dtype: FeatureDtype;
  bytes: number;
}

/**
 * The checks a TSV gets on its way into a store, row by row: an img_id seen on an earlier
 * line, a feature dimension other than the first row with boxes. Errors name the TSV's
 * path and line. `dim` / `dimLine` may be given (from a first pass); otherwise the first
 * row with boxes sets them.
 */
export class Obj36RowChecker {
  private readonly firstLine = new Map<string, number>();

  /** `dimRows`: how many rows have `dim`, when it was chosen as the dimension of most rows rather than the first row's. */
  constructor(readonly tsvPath: string, public dim = 0, public dimLine = 0, readonly dimRows = 0) {}

  dimError(lineNo: number, imgId: string, d: number): Obj36Error {
    const why = this.dimRows > 0 ? `the dimension of most rows with boxes (${this.dimRows}), first at line ${this.dimLine}` : `the first row with boxes, line ${this.dimLine}`;
    return new Obj36Error(`${this.tsvPath}: line ${lineNo} (img_id ${imgId}): feature dim ${d} differs from ${this.dim} (${why})`);
  }

  /** null if the row may go into the store (and is then remembered), else what is wrong with it. */
  check(rec: Obj36Record, lineNo: number): Obj36Error | null {
    const first = this.firstLine.get(rec.img_id);
    if (first !== undefined) return new Obj36Error(`${this.tsvPath}: line ${lineNo} (img_id ${rec.img_id}): duplicate img_id, first at line ${first}`);
    if (rec.num_boxes > 0) {
      const d = featureDim(rec);
      if (this.dim === 0) {
        this.dim = d;
        this.dimLine = lineNo;
      } else if (d !== this.dim) {
        return this.dimError(lineNo, rec.img_id, d);
      }
    }
    this.firstLine.set(rec.img_id, lineNo);
    return null;
  }
}

export interface ConvertOptions {
  dtype?: FeatureDtype;
  /**
   * Skip rows that are malformed, repeat an earlier img_id, or have another feature
   * dimension than most rows with boxes; each is passed to `onSkip`, naming the TSV's
   * path, line and img_id. (Without it, a row whose dimension differs from the first row
   * with boxes stops the conversion.)
   */
  skipInvalid?: boolean;
  onSkip?: (err: Error) => void;
  /** Called after each row of the second pass with the rows done and the total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * obj36 TSV → vlp.regions. A first pass reads only num_boxes and the features
 * field's length to size the records (dim, maxBoxes); the second pass parses and
 * validates every row. The store is written to a temporary file and renamed into
 * place at the end, so `outPath` is either the old file or the complete new one.
 */
export async function convertTsvToStore(tsvPath: string, outPath: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  let dim = 0;
  let dimLine = 0;
  let rows = 0;
  // under skipInvalid the rows' most common dimension is kept (the first row with boxes may be the odd one)
  const dims = new Map<number, { rows: number; line: number; maxBoxes: number }>();
  for await (const { bytes, lineNo } of scanTsvLines(tsvPath)) {
    if (bytes.length === 0) continue;
    rows++;
    const shape = rawRowShape(bytes);
    if (!shape || shape.numBoxes === 0) continue; // malformed: the parse pass reports it
    if (dim === 0) {
      dim = shape.dim;
      dimLine = lineNo;
    } else if (shape.dim !== dim && !opts.skipInvalid) {
      throw new Obj36RowChecker(tsvPath, dim, dimLine).dimError(lineNo, bytes.subarray(0, bytes.indexOf(9)).toString("utf8"), shape.dim);
    }
    const d = dims.get(shape.dim) ?? { rows: 0, line: lineNo, maxBoxes: 0 };
    d.rows++;
    d.maxBoxes = Math.max(d.maxBoxes, shape.numBoxes);
    dims.set(shape.dim, d);
  }
  if (dim === 0) throw new Error(`${tsvPath}: no row with boxes and features`);
  // the most rows, ties to the earliest (a Map keeps first-seen order)
  const [mostDim, most] = [...dims].reduce((a, b) => (b[1].rows > a[1].rows ? b : a));
  const byMajority = mostDim !== dim;
  dim = mostDim;
  dimLine = most.line;
  const maxBoxes = most.maxBoxes;
  const dtype = opts.dtype ?? "float32";
  const writer = new RegionStoreWriter(outPath, { dim, maxBoxes, dtype, source: `obj36 TSV ${basename(tsvPath)}` });
  const checker = new Obj36RowChecker(tsvPath, dim, dimLine, byMajority ? most.rows : 0);
  let done = 0;
  try {
    for await (const { record: rec, lineNo } of readObj36TsvRows(tsvPath, { skipInvalid: opts.skipInvalid, onSkip: opts.onSkip })) {
      opts.onProgress?.(++done, rows);
      const err = checker.check(rec, lineNo);
      if (err) {
        if (!opts.skipInvalid) throw err;
        opts.onSkip?.(err);
        continue;
      }
      writer.add(fromObj36(rec, dim));
    }
    opts.onProgress?.(rows, rows);
    await writer.close();
  } catch (err) {
    writer.abort();
    throw err;
  }
  return { count: writer.count, dim, maxBoxes, dtype, bytes: fs.statSync(outPath).size };
}

// ================================================================ grid regions

export interface GridRegions {
  numBoxes: number;
  boxes: Float32Array;
  normBoxes: Float32Array;
  objectsId: Int32Array;
  objectsConf: Float32Array;
  attrsId: Int32Array;
  attrsConf: Float32Array;
}

function cellEdges(k: number, size: number): number[] {
  return Array.from({ length: k + 1 }, (_, i) => Math.round((i * size) / k));
}

/**
 * k×k grid cells over a W×H image as pixel boxes (x1, y1, x2, y2), row-major,
 * cell edges rounded to whole pixels; no labels (ids -1, confidences 0).
 */
export function gridRegions(k: number, imgW: number, imgH: number): GridRegions {
  if (!Number.isInteger(k) || k <= 0) throw new Error(`gridRegions: k must be a positive integer, got ${k}`);
  if (!(imgW > 0 && imgH > 0)) throw new Error(`gridRegions: image size must be positive, got ${imgW}x${imgH}`);
  const xs = cellEdges(k, imgW);
  const ys = cellEdges(k, imgH);
  const n = k * k;
  const boxes = new Float32Array(4 * n);
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < k; c++) {
      boxes.set([xs[c], ys[r], xs[c + 1], ys[r + 1]], 4 * (r * k + c));
    }
  }
  return {
    numBoxes: n, boxes, normBoxes: normalizeBoxes(boxes, imgW, imgH),
    objectsId: new Int32Array(n).fill(-1), objectsConf: new Float32Array(n),
    attrsId: new Int32Array(n).fill(-1), attrsConf: new Float32Array(n),
  };
}

/** Number of leading statistics in a grid-cell feature before the histograms. */
export const GRID_BASE_STATS = 14;

/**
 * Hand-made features for the k×k grid cells of an 8-bit image (`channels` 1, 3 or 4
 * interleaved; alpha ignored; grey is treated as R=G=B). Values are in [0, 1]
 * intensity units. For each cell, in this order:
 *   [0..2]   mean R, G, B          [3..5]  standard deviation R, G, B
 *   [6..8]   min R, G, B           [9..11] max R, G, B
 *   [12]     mean |horizontal luma difference|   [13] mean |vertical luma difference|
 *            (luma = 0.299 R + 0.587 G + 0.114 B, differences between neighbours in the cell)
 *   [14..]   R, G, B histograms with b = floor((dim - 14) / 3) equal-width bins each,
 *            as fractions of the cell's pixels (each channel's bins sum to 1)
 *   rest     zeros (dim - 14 not divisible by 3)
 * With dim < 14 the vector is the first dim statistics. Empty cells (k larger than
 * the image) are all zeros. Returns k*k*dim floats, cells row-major.
 */
export function gridCellFeatures(
  pixels: Uint8Array, width: number, height: number,
  opts: { k: number; dim: number; channels?: number },
): Float32Array {
  const { k, dim, channels = 3 } = opts;
  if (![1, 3, 4].includes(channels)) throw new Error(`gridCellFeatures: channels must be 1, 3 or 4, got ${channels}`);
  if (pixels.length !== width * height * channels) {
    throw new Error(`gridCellFeatures: ${pixels.length} bytes, expected ${width}x${height}x${channels} = ${width * height * channels}`);
  }
  if (!Number.isInteger(dim) || dim <= 0) throw new Error(`gridCellFeatures: dim must be a positive integer, got ${dim}`);
  const xs = cellEdges(k, width);
  const ys = cellEdges(k, height);
  const bins = Math.max(0, Math.floor((dim - GRID_BASE_STATS) / 3));
  const out = new Float32Array(k * k * dim);
  const stats = new Float64Array(GRID_BASE_STATS);
  const hist = new Float64Array(3 * bins);
  const rgb = [0, 0, 0];
  const px = (x: number, y: number) => {
    const o = (y * width + x) * channels;
    if (channels === 1) {
      rgb[0] = rgb[1] = rgb[2] = pixels[o] / 255;
    } else {
      rgb[0] = pixels[o] / 255;
      rgb[1] = pixels[o + 1] / 255;
      rgb[2] = pixels[o + 2] / 255;
    }
  };
  const luma = (x: number, y: number) => {
    px(x, y);
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
  };
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < k; c++) {
      const [x0, x1, y0, y1] = [xs[c], xs[c + 1], ys[r], ys[r + 1]];
      const count = (x1 - x0) * (y1 - y0);
      if (count === 0) continue;
      stats.fill(0);
      hist.fill(0);
      for (let ch = 0; ch < 3; ch++) {
        stats[6 + ch] = Infinity;
        stats[9 + ch] = -Infinity;
      }
      let dx = 0;
      let dy = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          px(x, y);
          for (let ch = 0; ch < 3; ch++) {
            const v = rgb[ch];
            stats[ch] += v;
            stats[3 + ch] += v * v;
            if (v < stats[6 + ch]) stats[6 + ch] = v;
            if (v > stats[9 + ch]) stats[9 + ch] = v;
            if (bins > 0) hist[ch * bins + Math.min(bins - 1, Math.floor(v * bins))] += 1;
          }
          const l = luma(x, y);
          if (x + 1 < x1) dx += Math.abs(luma(x + 1, y) - l);
          if (y + 1 < y1) dy += Math.abs(luma(x, y + 1) - l);
        }
      }
      for (let ch = 0; ch < 3; ch++) {
        const mean = stats[ch] / count;
        stats[ch] = mean;
        stats[3 + ch] = Math.sqrt(Math.max(0, stats[3 + ch] / count - mean * mean));
      }
      const w = x1 - x0;
      const h = y1 - y0;
      stats[12] = w > 1 ? dx / ((w - 1) * h) : 0;
      stats[13] = h > 1 ? dy / (w * (h - 1)) : 0;
      const cell = out.subarray((r * k + c) * dim, (r * k + c + 1) * dim);
      for (let i = 0; i < Math.min(dim, GRID_BASE_STATS); i++) cell[i] = stats[i];
      for (let i = 0; i < 3 * bins; i++) cell[GRID_BASE_STATS + i] = hist[i] / count;
    }
  }
  return out;
}

/**
 * Detector-free regions for a decoded image: a k×k grid (default 6×6 = 36 cells,
 * like obj36) with `gridCellFeatures` as features (default dim 2048).
 */
export function gridRegionFeatures(
  imgId: string, pixels: Uint8Array, width: number, height: number,
  opts: { k?: number; dim?: number; channels?: number } = {},
): RegionFeatures {
  const k = opts.k ?? 6;
  const dim = opts.dim ?? 2048;
  const g = gridRegions(k, width, height);
  const features = gridCellFeatures(pixels, width, height, { k, dim, channels: opts.channels });
  return { imgId, imgH: height, imgW: width, dim, ...g, features };
}

/**
 * Grid regions straight from an encoded image (JPEG/PNG/WebP... via sharp): decoded
 * to 8-bit sRGB without alpha, at its stored size (no EXIF rotation, like cv2.imread
 * in the bottom-up-attention extractor), then `gridRegionFeatures`.
 */
export async function gridRegionsFromImage(
  imgId: string, encoded: Uint8Array, opts: { k?: number; dim?: number } = {},
): Promise<RegionFeatures> {
  const { openImage, decodeErrorMessage } = await import("../vision/image.ts");
  let decoded: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    decoded = await openImage(encoded).removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new Error(`image ${imgId}: cannot decode (${encoded.length} bytes): ${await decodeErrorMessage(encoded, err)}`);
  }
  const { data, info } = decoded;
  const pixels = new Uint8Array(data.buffer, data.byteOffset, data.length);
  return gridRegionFeatures(imgId, pixels, info.width, info.height, { ...opts, channels: info.channels });
}

/** Several region files read as one: each image from the first file that holds it. */
class RegionUnion implements RegionSource {
  private readonly owner = new Map<string, RegionSource>();
  constructor(private readonly paths: string[], private readonly parts: RegionSource[]) {
    for (const p of parts) for (const id of p.ids()) if (!this.owner.has(id)) this.owner.set(id, p);
  }

  ids(): string[] {
    return [...this.owner.keys()];
  }

  get(imgId: string): RegionFeatures {
    const p = this.owner.get(imgId);
    if (!p) throw new Error(`${this.paths.join(", ")}: no record for img_id ${JSON.stringify(imgId)}`);
    return p.get(imgId);
  }

  where(imgId: string): string {
    return this.owner.get(imgId)?.where(imgId) ?? `${this.paths.join(", ")}: no record (img_id ${imgId})`;
  }

  close(): void {
    for (const p of this.parts) p.close();
  }
}

/** Opens region features by file type: an obj36 TSV (indexed on first use) or a `.regions` store. */
async function openRegionFile(path: string): Promise<RegionSource> {
  return path.endsWith(".tsv") ? TsvRegionReader.open(path) : RegionStore.open(path);
}

/** An obj36 TSV or `.regions` store, or several read as one. */
export async function openRegions(path: string | string[]): Promise<RegionSource> {
  if (typeof path === "string") return openRegionFile(path);
  if (path.length === 1) return openRegionFile(path[0]);
  const parts: RegionSource[] = [];
  for (const p of path) parts.push(await openRegionFile(p));
  return new RegionUnion(path, parts);
}

