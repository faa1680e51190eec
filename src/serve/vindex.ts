// A vector index for exact top-k search: L2-normalised embeddings with their ids, stored as a
// raw little-endian matrix plus JSON, searched with engine matrix products in chunks.
//
// Folder layout (one index = one folder, any number of "parts", e.g. "image" and "text"):
//   index.json              {format, version, checkpoint, model, dim, dtype, imagesRoot, parts: {name: {count}}}
//   <part>.f32 | <part>.f16 count x dim rows, row-major, little-endian
//   <part>.ids.json         the id of each row (string[])
//   <part>.texts.json       (text parts) the text of each row (string[])
// index.json is written last (atomically) and its `count` is the truth: rows or ids past it (a
// crash between the writes of an add) are ignored and overwritten by the next add.
//
// Memory: the matrix is held in the stored dtype, dim * 4 bytes per vector in float32 and
// dim * 2 in float16 (float16 chunks are widened to float32 for the product, since CPU matmul has
// no half kernel); per million vectors: 256 MB (f32) / 128 MB (f16) at dim 64, 3.07 GB / 1.54 GB
// at dim 768, plus the ids (a JS string each, ~40-80 bytes for short ids).
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, writeSync, ftruncateSync, fstatSync } from "node:fs";
import { join } from "node:path";
import { Tensor, tensor, empty, fromBytes, tidy, noGrad, cat, call } from "../engine/index.ts";
import { writeJsonAtomic } from "../engine/serialize/atomic.ts";

export type IndexDType = "float32" | "float16";
export const INDEX_FORMAT = "vlpkit-index";

export interface IndexManifest {
  format: typeof INDEX_FORMAT;
  version: 1;
  /** The checkpoint (run directory, absolute) whose encoders made the vectors. */
  checkpoint: string;
  /** Model name of that checkpoint (config.name). */
  model: string;
  dim: number;
  dtype: IndexDType;
  /** The image folder the image ids are relative to (served read-only by `vlp serve`). */
  imagesRoot: string | null;
  parts: Record<string, { count: number }>;
}

export interface SearchHit {
  /** Row of the part. */
  row: number;
  id: string;
  score: number;
  text?: string;
}

const ELEM = { float32: 4, float16: 2 } as const;
const ext = (d: IndexDType) => (d === "float32" ? "f32" : "f16");
const PART_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
/** Rows multiplied per product (bounded temporary memory: CHUNK scores per query). */
const CHUNK = 131072;
/** Rows read from disk per step when loading. */
const LOAD_ROWS = 65536;

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
}

/** One part of an index: a growable [capacity, dim] tensor, of which the first `count` rows are live. */
export class IndexPart {
  private data: Tensor | null = null;
  private capacity = 0;
  count = 0;
  ids: string[] = [];
  texts: string[] | null = null;
  private idSet: Set<string> | null = null;

  constructor(readonly name: string, readonly dim: number, readonly dtype: IndexDType) {}

  has(id: string): boolean {
    this.idSet ??= new Set(this.ids);
    return this.idSet.has(id);
  }

  /** The live rows [count, dim] (a view; do not keep it past the next add). */
  matrix(): Tensor | null {
    return this.data && this.count > 0 ? this.data.narrow(0, 0, this.count) : null;
  }

  private reserve(n: number): void {
    if (n <= this.capacity) return;
    const cap = Math.max(n, Math.ceil(this.capacity * 1.5), 1024);
    const grown = empty([cap, this.dim], { dtype: this.dtype }).keep();
    if (this.data) {
      if (this.count > 0) tidy(() => { grown.narrow(0, 0, this.count).copy_(this.data!.narrow(0, 0, this.count)); });
      this.data.dispose();
    }
    this.data = grown;
    this.capacity = cap;
  }

  /** Append rows (a float tensor [n, dim]) in memory. */
  appendRows(rows: Tensor, ids: string[], texts?: string[]): void {
    const n = rows.size(0);
    if (rows.ndim !== 2 || rows.size(1) !== this.dim) throw new Error(`index part ${this.name}: rows of shape [${rows.shape}], expected [n, ${this.dim}]`);
    if (ids.length !== n) throw new Error(`index part ${this.name}: ${ids.length} ids for ${n} rows`);
    if (texts && texts.length !== n) throw new Error(`index part ${this.name}: ${texts.length} texts for ${n} rows`);
    this.reserve(this.count + n);
    tidy(() => { this.data!.narrow(0, this.count, n).copy_(rows.to(this.dtype)); });
    if (this.count === 0 && texts && !this.texts) this.texts = [];
    for (let i = 0; i < n; i++) {
      this.ids.push(ids[i]);
      this.texts?.push(texts?.[i] ?? "");
      this.idSet?.add(ids[i]);
    }
    this.count += n;
  }

  /**
   * Exact top-k by dot product for each query row (queries [Q, dim] float32, normalised): the rows
   * are multiplied in chunks of `chunk` rows (default CHUNK), each chunk's top-k kept, and the candidates merged.
   */
  search(queries: Tensor, k: number, chunk = CHUNK): SearchHit[][] {
    const m = this.matrix();
    const Q = queries.size(0);
    if (!m || k <= 0) return Array.from({ length: Q }, () => []);
    const kk = Math.min(k, this.count);
    const [vals, idx] = noGrad(() => tidy(() => {
      const q = queries.float().contiguous();
      const candV: Tensor[] = [];
      const candI: Tensor[] = [];
      for (let o = 0; o < this.count; o += chunk) {
        const n = Math.min(chunk, this.count - o);
        const [v, i] = tidy(() => {
          let c = m.narrow(0, o, n);
          if (c.dtype !== "float32") c = c.float();
          // one query: matrix-vector product (BLAS gemv is ~2.5x faster here than a gemm with one column)
          const s = Q === 1 ? call<Tensor>("aten::mv", c, q.select(0, 0)).unsqueeze(0) : q.matmul(c.transpose(0, 1));
          const [tv, ti] = s.topk(Math.min(kk, n), 1);
          return [tv, ti.add(o)];
        });
        candV.push(v);
        candI.push(i);
      }
      if (candV.length === 1) return [candV[0], candI[0]];
      const allV = cat(candV, 1);
      const allI = cat(candI, 1);
      const [tv, pos] = allV.topk(kk, 1);
      return [tv, allI.gather(1, pos)];
    }));
    const v = vals.toFloat32Array();
    const ix = idx.toArray();
    vals.dispose();
    idx.dispose();
    return Array.from({ length: Q }, (_, qi) => Array.from({ length: kk }, (_, j) => {
      const row = ix[qi * kk + j];
      const hit: SearchHit = { row, id: this.ids[row], score: v[qi * kk + j] };
      if (this.texts) hit.text = this.texts[row];
      return hit;
    }));
  }

  /** Native bytes held by the matrix (capacity included). */
  get bytes(): number {
    return this.capacity * this.dim * ELEM[this.dtype];
  }

  dispose(): void {
    this.data?.dispose();
    this.data = null;
    this.capacity = 0;
  }
}

/** An index folder opened for search and incremental adds. */
export class VectorIndex {
  readonly parts = new Map<string, IndexPart>();

  private constructor(readonly dir: string, public manifest: IndexManifest) {}

  get dim(): number {
    return this.manifest.dim;
  }
  get dtype(): IndexDType {
    return this.manifest.dtype;
  }

  /** A new, empty index folder (fails if one is there already). */
  static create(dir: string, o: { checkpoint: string; model: string; dim: number; dtype: IndexDType; imagesRoot: string | null }): VectorIndex {
    if (existsSync(join(dir, "index.json"))) throw new Error(`${dir}: an index is there already (add to it, or choose another --out)`);
    if (!Number.isInteger(o.dim) || o.dim < 1) throw new Error(`index: dim must be a positive integer, got ${o.dim}`);
    if (o.dtype !== "float32" && o.dtype !== "float16") throw new Error(`index: dtype must be float32 or float16, got ${JSON.stringify(o.dtype)}`);
    mkdirSync(dir, { recursive: true });
    const manifest: IndexManifest = { format: INDEX_FORMAT, version: 1, checkpoint: o.checkpoint, model: o.model, dim: o.dim, dtype: o.dtype, imagesRoot: o.imagesRoot, parts: {} };
    writeJsonAtomic(join(dir, "index.json"), manifest);
    return new VectorIndex(dir, manifest);
  }

  /** Open an index folder and load its vectors into memory. */
  static open(dir: string): VectorIndex {
    const file = join(dir, "index.json");
    if (!existsSync(file)) throw new Error(`${dir}: no index.json there (not an index folder; build one with \`vlp index build\`)`);
    const m = readJson<IndexManifest>(file);
    if (m.format !== INDEX_FORMAT || m.version !== 1) throw new Error(`${file}: not a ${INDEX_FORMAT} v1 manifest`);
    if (!Number.isInteger(m.dim) || m.dim < 1 || (m.dtype !== "float32" && m.dtype !== "float16")) throw new Error(`${file}: bad dim/dtype ${m.dim}/${m.dtype}`);
    const index = new VectorIndex(dir, m);
    for (const [name, { count }] of Object.entries(m.parts ?? {})) {
      if (!PART_NAME.test(name)) throw new Error(`${file}: bad part name ${JSON.stringify(name)}`);
      index.parts.set(name, index.loadPart(name, count));
    }
    return index;
  }

  private loadPart(name: string, count: number): IndexPart {
    const { dim, dtype } = this.manifest;
    const part = new IndexPart(name, dim, dtype);
    const ids = readJson<string[]>(join(this.dir, `${name}.ids.json`));
    if (!Array.isArray(ids) || ids.length < count) throw new Error(`${join(this.dir, `${name}.ids.json`)}: ${Array.isArray(ids) ? ids.length : "no"} ids for ${count} rows`);
    const textsFile = join(this.dir, `${name}.texts.json`);
    const texts = existsSync(textsFile) ? readJson<string[]>(textsFile) : null;
    if (texts && texts.length < count) throw new Error(`${textsFile}: ${texts.length} texts for ${count} rows`);
    const vfile = join(this.dir, `${name}.${ext(dtype)}`);
    const rowBytes = dim * ELEM[dtype];
    const fd = openSync(vfile, "r");
    try {
      const size = fstatSync(fd).size;
      if (size < count * rowBytes) throw new Error(`${vfile}: ${size} bytes, expected at least ${count} x ${dim} x ${ELEM[dtype]}`);
      const buf = Buffer.allocUnsafe(Math.min(count, LOAD_ROWS) * rowBytes);
      for (let o = 0; o < count; o += LOAD_ROWS) {
        const n = Math.min(LOAD_ROWS, count - o);
        const want = n * rowBytes;
        let got = 0;
        while (got < want) {
          const r = readSync(fd, buf, got, want - got, o * rowBytes + got);
          if (r === 0) throw new Error(`${vfile}: unexpected end of file at row ${o}`);
          got += r;
        }
        tidy(() => part.appendRows(fromBytes(new Uint8Array(buf.buffer, buf.byteOffset, want), dtype, [n, dim]), ids.slice(o, o + n), texts ? texts.slice(o, o + n) : undefined));
      }
    } finally {
      closeSync(fd);
    }
    if (count === 0 && texts) part.texts = [];
    return part;
  }

  part(name: string): IndexPart | undefined {
    return this.parts.get(name);
  }

  /**
   * Incremental add: rows (normalised float32 [n, dim] as a tensor or a Float32Array) with ids
   * (and texts for text parts) are appended to the part's file and to memory; ids already in the
   * part are rejected. The manifest is rewritten last.
   */
  add(name: string, rows: Tensor | Float32Array, ids: string[], texts?: string[]): void {
    if (!PART_NAME.test(name)) throw new Error(`index: bad part name ${JSON.stringify(name)}`);
    const { dim, dtype } = this.manifest;
    let part = this.parts.get(name);
    if (!part) {
      part = new IndexPart(name, dim, dtype);
      this.parts.set(name, part);
    }
    const dup = ids.find((id) => part!.has(id)) ?? ids.find((id, i) => ids.indexOf(id) !== i);
    if (dup !== undefined) throw new Error(`index part ${name}: id ${JSON.stringify(dup)} is there already`);
    if (texts && part.count > 0 && !part.texts) throw new Error(`index part ${name}: has no texts, cannot add rows with texts`);
    if (!texts && part.texts && part.count > 0) throw new Error(`index part ${name}: rows need texts`);
    tidy(() => {
      const t = rows instanceof Tensor ? rows : tensor(rows, { shape: [rows.length / dim, dim] });
      if (t.ndim !== 2 || t.size(1) !== dim) throw new Error(`index part ${name}: rows [${t.shape}], expected [n, ${dim}]`);
      const stored = t.to(dtype).contiguous();
      // 1. vectors: written at the row offset given by the manifest's count (overwrites a torn tail)
      const vfile = join(this.dir, `${name}.${ext(dtype)}`);
      const fd = openSync(vfile, existsSync(vfile) ? "r+" : "w+");
      try {
        const offset = part!.count * dim * ELEM[dtype];
        ftruncateSync(fd, offset);
        const bytes = stored.bytes();
        let done = 0;
        while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, offset + done);
      } finally {
        closeSync(fd);
      }
      part!.appendRows(stored, ids, texts);
    });
    // 2. ids (and texts), 3. the manifest
    writeJsonAtomic(join(this.dir, `${name}.ids.json`), part.ids);
    if (part.texts) writeJsonAtomic(join(this.dir, `${name}.texts.json`), part.texts);
    this.manifest = { ...this.manifest, parts: { ...this.manifest.parts, [name]: { count: part.count } } };
    writeJsonAtomic(join(this.dir, "index.json"), this.manifest);
  }

  /** Native bytes of all parts. */
  get bytes(): number {
    let b = 0;
    for (const p of this.parts.values()) b += p.bytes;
    return b;
  }

  dispose(): void {
    for (const p of this.parts.values()) p.dispose();
  }
}
