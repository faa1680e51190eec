/**
 * The `vlp.regions` store: `RegionStoreWriter` streams records into one, `RegionStore` reads them
 * back with two positioned reads per `get` (features stored as float32 or float16, decoded to
 * float32 on read).
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
import { nonFiniteMessage } from "../formats/obj36.ts";
import { decodeHalfArray, encodeHalfArray } from "./float16.ts";
import { normalizeBoxes, type RegionFeatures, type RegionSource } from "./features.ts";
import { readFully, writeFully } from "./io.ts";

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
