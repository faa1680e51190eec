/**
 * ViLT / VLMo Arrow tables (`{name}.arrow`, Arrow IPC file format as written by
 * pyarrow's RecordBatchFileWriter from a pandas DataFrame):
 *   captions: image (binary JPEG), caption list<string>, image_id, split
 *   VQA:      image, questions list<string>, answers list<list<string>>,
 *             answer_labels list<list<int64>>, answer_scores list<list<float64>>,
 *             image_id, question_id list<int64>, split
 *   NLVR2:    image_0, image_1, questions list<string>, answers list<string>
 *             ("True"/"False", one per question), identifier
 * (image_id is a string for the caption tables and an int64 for VQA in ViLT's
 * scripts; both are accepted. The VQA test split has empty answer lists, which
 * pyarrow stores as list<null>; accepted too.)
 *
 * Reading never loads the file: `ArrowFile` walks the IPC messages (metadata only),
 * then reads column buffers with positioned reads. Text and number buffers of a
 * record batch are read whole on first use and cached, for the two most recently used
 * batches only; binary (image) bytes are read per row on demand, so a pass over a 20 GB
 * file of JPEGs holds about two batches' offsets and text in memory.
 * Writers stream record batches of `batchRows` rows through apache-arrow's
 * RecordBatchFileWriter.
 */
import fs from "node:fs";
import { namedFsError } from "../../engine/serialize/atomic.ts";
import {
  Message, RecordBatchFileWriter, RecordBatch, Schema, Field, Struct, List, Utf8, Binary, Int64, Float64,
  Type, makeData, vectorFromArray, type DataType,
} from "apache-arrow";
// The file footer (schema + record batch locations) has no top-level export.
import { Footer } from "apache-arrow/ipc/metadata/file";

/** A malformed or unsupported Arrow file/row; the message names file, row and column. */
export class ArrowFormatError extends Error {
  override name = "ArrowFormatError";
}

function readFully(fd: number, buf: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) throw new ArrowFormatError(`${what}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

// ================================================================ flatbuffer size checks

/**
 * Checks that every vector the Arrow metadata decoder will walk (schema fields and their children,
 * custom metadata, record batch field nodes and buffers, the footer's blocks) lies inside `buf`,
 * before apache-arrow decodes it: a damaged length makes the decoder build billions of objects
 * (a 2.8 KB file ran the heap out at 4 GB) or read past the buffer into undefined (a bare
 * TypeError). Flatbuffers: a table starts with an int32 back-offset to its vtable of uint16 field
 * offsets; an offset field holds a uint32 forward offset; a vector is a uint32 length, then items.
 */
class FlatbufferCheck {
  private tables = 0;
  constructor(private readonly buf: Uint8Array, private readonly fail: (msg: string) => never) {}
  private u32(at: number): number {
    if (at < 0 || at + 4 > this.buf.length) this.fail(`flatbuffer offset ${at} outside the ${this.buf.length}-byte metadata`);
    return this.buf[at] | (this.buf[at + 1] << 8) | (this.buf[at + 2] << 16) | ((this.buf[at + 3] << 24) >>> 0);
  }
  private u16(at: number): number {
    if (at < 0 || at + 2 > this.buf.length) this.fail(`flatbuffer offset ${at} outside the ${this.buf.length}-byte metadata`);
    return this.buf[at] | (this.buf[at + 1] << 8);
  }
  root(): number {
    return this.table(this.u32(0));
  }
  private table(t: number): number {
    if (++this.tables > this.buf.length / 4) this.fail("flatbuffer tables loop");
    const vt = t - (this.u32(t) | 0);
    this.u16(vt);
    return t;
  }
  /** Position of field `i` of table `t`, or -1 when absent. */
  private field(t: number, i: number): number {
    const vt = t - (this.u32(t) | 0);
    const size = this.u16(vt);
    if (4 + 2 * i >= size) return -1;
    const off = this.u16(vt + 4 + 2 * i);
    return off === 0 ? -1 : t + off;
  }
  u8Field(t: number, i: number): number {
    const f = this.field(t, i);
    return f < 0 ? 0 : this.buf[f] ?? this.fail(`flatbuffer field outside the metadata`);
  }
  /** Table at offset field `i`, or -1. */
  sub(t: number, i: number): number {
    const f = this.field(t, i);
    return f < 0 ? -1 : this.table(f + this.u32(f));
  }
  /** Item count of vector field `i` of `itemSize`-byte items, checked to fit; [start, count]. */
  vector(t: number, i: number, itemSize: number, what: string): [number, number] {
    const f = this.field(t, i);
    if (f < 0) return [0, 0];
    const v = f + this.u32(f);
    const n = this.u32(v);
    if (v + 4 + n * itemSize > this.buf.length) this.fail(`${what}: ${n} entries claimed, more than the ${this.buf.length}-byte metadata holds`);
    return [v + 4, n];
  }
  /** The tables of vector field `i`. */
  tableList(t: number, i: number, what: string): number[] {
    const [start, n] = this.vector(t, i, 4, what);
    return Array.from({ length: n }, (_, k) => this.table(start + 4 * k + this.u32(start + 4 * k)));
  }
  keyValues(t: number, i: number): void {
    for (const kv of this.tableList(t, i, "custom metadata")) {
      this.vector(kv, 0, 1, "metadata key");
      this.vector(kv, 1, 1, "metadata value");
    }
  }
  schema(t: number): void {
    for (const f of this.tableList(t, 1, "schema fields")) this.fieldTable(f, 0);
    this.keyValues(t, 2);
    this.vector(t, 3, 8, "schema features");
  }
  private fieldTable(t: number, depth: number): void {
    if (depth > 64) this.fail("fields nested more than 64 deep");
    this.vector(t, 0, 1, "field name");
    for (const c of this.tableList(t, 5, "field children")) this.fieldTable(c, depth + 1);
    this.keyValues(t, 6);
  }
  footer(): void {
    const t = this.root();
    const schema = this.sub(t, 1);
    if (schema < 0) this.fail("the footer has no schema");
    this.schema(schema);
    this.vector(t, 2, 24, "dictionary blocks");
    this.vector(t, 3, 24, "record batch blocks");
    this.keyValues(t, 4);
  }
  message(): void {
    const t = this.root();
    const type = this.u8Field(t, 1);
    const header = this.sub(t, 2);
    if (header >= 0 && type === 1) this.schema(header);
    if (header >= 0 && type === 3) {
      this.vector(header, 1, 16, "record batch field nodes");
      this.vector(header, 2, 16, "record batch buffers");
      this.vector(header, 4, 8, "record batch variadic buffer counts");
    }
    this.keyValues(t, 4);
  }
}

// ================================================================ low-level lazy reader

interface BufferRef {
  /** absolute file offset */
  offset: number;
  length: number;
}

interface ColumnNode {
  field: Field;
  type: DataType;
  length: number;
  nullCount: number;
  buffers: BufferRef[];
  children: ColumnNode[];
  /** buffers read so far (binary data buffers are never cached) */
  cache: (Uint8Array | undefined)[];
}

interface BatchInfo {
  rowStart: number;
  numRows: number;
  columns: ColumnNode[];
}

const MAGIC = Buffer.from("ARROW1", "latin1");

/** record batches whose text/number buffers stay cached (see ArrowFile.touch) */
const CACHED_BATCHES = 2;

/** Buffers per array in an IPC record batch, by type (Arrow columnar format, metadata V5). */
function bufferCount(type: DataType): number | null {
  switch (type.typeId) {
    case Type.Null: return 0;
    case Type.Struct: case Type.FixedSizeList: return 1;
    case Type.Binary: case Type.Utf8: case Type.LargeBinary: case Type.LargeUtf8: return 3;
    case Type.List: case Type.LargeList: case Type.Map: return 2;
    case Type.Union: return (type as any).mode === 0 ? 1 : 2; // sparse: type ids; dense: + offsets
    case Type.Int: case Type.Float: case Type.Bool: case Type.Decimal: case Type.Date: case Type.Time:
    case Type.Timestamp: case Type.Interval: case Type.FixedSizeBinary: case Type.Duration:
      return 2;
    default: return null; // views, run-end encoded, ...: not supported
  }
}

function typeName(t: DataType): string {
  return String(t);
}

/**
 * Random access to the values of an Arrow IPC file (file or stream format) by
 * positioned reads. Dictionary-encoded columns and compressed bodies are refused.
 */
export class ArrowFile {
  readonly schema: Schema;
  readonly numRows: number;
  private readonly batches: BatchInfo[] = [];
  /** batches whose buffers may be cached, least recently used first */
  private readonly recentBatches: BatchInfo[] = [];
  private fd: number | null;

  private constructor(readonly path: string, fd: number) {
    this.fd = fd;
    const { schema, batches } = this.scan(fd);
    this.schema = schema;
    this.batches = batches;
    this.numRows = batches.reduce((s, b) => s + b.numRows, 0);
  }

  static open(path: string): ArrowFile {
    const fd = fs.openSync(path, "r");
    try {
      return new ArrowFile(path, fd);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  get columnNames(): string[] {
    return this.schema.fields.map((f) => f.name);
  }

  get numBatches(): number {
    return this.batches.length;
  }

  /** record batches that hold cached buffers now (at most two, however many were read) */
  get cachedBatchCount(): number {
    const cached = (n: ColumnNode): boolean => n.cache.some((b) => b !== undefined) || n.children.some(cached);
    return this.batches.filter((b) => b.columns.some(cached)).length;
  }

  columnType(name: string): DataType | null {
    return this.schema.fields.find((f) => f.name === name)?.type ?? null;
  }

  private fail(msg: string): never {
    throw new ArrowFormatError(`${this.path}: ${msg}`);
  }

  private scan(fd: number): { schema: Schema; batches: BatchInfo[] } {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(8, size));
    readFully(fd, head, 0, this.path);
    if (head.length >= 6 && head.subarray(0, 6).equals(MAGIC)) return this.scanFile(fd, size);
    return this.scanStream(fd, size);
  }

  /** IPC file: the footer holds the schema and where each record batch is. */
  private scanFile(fd: number, size: number): { schema: Schema; batches: BatchInfo[] } {
    if (size < 8 + 10) this.fail(`file is only ${size} bytes`);
    const tail = Buffer.alloc(10);
    readFully(fd, tail, size - 10, this.path);
    if (!tail.subarray(4).equals(MAGIC)) this.fail("no ARROW1 magic at the end of the file (truncated?)");
    const footerLen = tail.readInt32LE(0);
    const footerStart = size - 10 - footerLen;
    if (footerLen <= 0 || footerStart < 8) this.fail(`bad footer length ${footerLen}`);
    const raw = Buffer.allocUnsafeSlow(footerLen);
    readFully(fd, raw, footerStart, this.path);
    let footer: Footer;
    const where = `the footer (bytes ${footerStart}..${footerStart + footerLen})`;
    try {
      new FlatbufferCheck(raw, (m) => this.fail(`${where}: ${m}`)).footer();
      footer = Footer.decode(raw);
    } catch (err) {
      if (err instanceof ArrowFormatError) throw err;
      return this.fail(`cannot decode ${where}: ${(err as Error).message}`);
    }
    const schema = this.guard(where, () => this.checkSchema(footer.schema));
    if (footer.numDictionaries > 0) this.fail("dictionary batches are not supported");
    const batches: BatchInfo[] = [];
    let rowStart = 0;
    for (let k = 0; k < footer.numRecordBatches; k++) {
      const block = this.guard(`footer block ${k}`, () => footer.getRecordBatch(k)!);
      if (!Number.isSafeInteger(block.offset) || block.offset < 0) this.fail(`footer block ${k}: bad offset ${block.offset}`);
      const b = this.guard(`record batch ${k} (footer block at byte ${block.offset})`, () => {
        const { msg, bodyStart } = this.readMessage(fd, block.offset, footerStart);
        if (!msg?.isRecordBatch()) this.fail(`footer block ${k} at byte ${block.offset} is not a record batch`);
        if (bodyStart !== block.offset + block.metaDataLength) this.fail(`footer block ${k}: metadata length disagrees with the message`);
        if (bodyStart + msg.bodyLength > footerStart) this.fail(`record batch ${k} runs past the footer`);
        return this.layoutBatch(schema, msg, bodyStart, rowStart);
      });
      batches.push(b);
      rowStart += b.numRows;
    }
    return { schema, batches };
  }

  /** IPC stream: schema message, then record batches, until end-of-stream or end of file. */
  private scanStream(fd: number, size: number): { schema: Schema; batches: BatchInfo[] } {
    let schema: Schema | null = null;
    const batches: BatchInfo[] = [];
    let rowStart = 0;
    let pos = 0;
    while (pos + 8 <= size) {
      const r = this.readMessage(fd, pos, size);
      if (!r.msg) break; // end-of-stream marker
      const { msg, bodyStart } = r;
      if (bodyStart + msg.bodyLength > size) this.fail(`message at byte ${pos} has a body past the end of the file`);
      this.guard(`the message at byte ${pos}`, () => {
        if (msg.isSchema()) {
          schema = this.checkSchema(msg.header());
        } else if (msg.isRecordBatch()) {
          if (!schema) this.fail(`record batch before the schema at byte ${pos}`);
          const b = this.layoutBatch(schema, msg, bodyStart, rowStart);
          batches.push(b);
          rowStart += b.numRows;
        } else if (msg.isDictionaryBatch()) {
          this.fail("dictionary batches are not supported");
        }
      });
      pos = bodyStart + msg.bodyLength;
    }
    if (!schema) this.fail("not an Arrow IPC file or stream (no schema message)");
    return { schema, batches };
  }

  /**
   * `fn()`, with any error that is not already an ArrowFormatError (apache-arrow's decoders meet
   * damaged metadata as a bare TypeError or RangeError) named with the file and `block`.
   */
  private guard<T>(block: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ArrowFormatError) throw err;
      return this.fail(`${block}: damaged metadata (${(err as Error).message})`);
    }
  }

  private checkSchema(schema: Schema): Schema {
    for (const f of schema.fields) {
      if (f.type.typeId === Type.Dictionary) this.fail(`column "${f.name}" is dictionary-encoded; not supported`);
    }
    return schema;
  }

  /** Message at `pos`: optional 0xFFFFFFFF continuation, int32 metadata length, flatbuffer. */
  private readMessage(fd: number, pos: number, end: number): { msg: Message; bodyStart: number } | { msg: null; bodyStart: number } {
    const word = Buffer.alloc(8);
    readFully(fd, word, pos, this.path);
    let metaLen = word.readInt32LE(0);
    let prefix = 4;
    if (metaLen === -1) {
      metaLen = word.readInt32LE(4);
      prefix = 8;
    }
    if (metaLen === 0) return { msg: null, bodyStart: pos + prefix };
    if (metaLen < 0 || pos + prefix + metaLen > end) this.fail(`bad message length ${metaLen} at byte ${pos}`);
    const meta = Buffer.allocUnsafeSlow(metaLen);
    readFully(fd, meta, pos + prefix, this.path);
    try {
      new FlatbufferCheck(meta, (m) => this.fail(`the message at byte ${pos}: ${m}`)).message();
      const msg = Message.decode(meta);
      if (!Number.isSafeInteger(msg.bodyLength) || msg.bodyLength < 0) this.fail(`the message at byte ${pos}: bad body length ${msg.bodyLength}`);
      return { msg, bodyStart: pos + prefix + metaLen };
    } catch (err) {
      if (err instanceof ArrowFormatError) throw err;
      return this.fail(`cannot decode the message at byte ${pos}: ${(err as Error).message}`);
    }
  }

  private layoutBatch(schema: Schema, msg: Message, bodyStart: number, rowStart: number): BatchInfo {
    const at = bodyStart;
    const rb = (msg as Message<any>).header() as ReturnType<Message<3>["header"]>;
    if (rb.compression) this.fail(`record batch at byte ${at} is compressed; write the file uncompressed`);
    let node = 0;
    let buf = 0;
    const build = (field: Field): ColumnNode => {
      const n = rb.nodes[node++];
      const count = bufferCount(field.type);
      if (!n) this.fail(`record batch at byte ${at} has too few field nodes`);
      if (count === null) this.fail(`column "${field.name}" has unsupported type ${typeName(field.type)}`);
      const regions = rb.buffers.slice(buf, buf + count);
      buf += count;
      if (regions.length !== count) this.fail(`record batch at byte ${at} has too few buffers`);
      const buffers = regions.map((r) => {
        if (r.offset + r.length > msg.bodyLength) this.fail(`column "${field.name}": buffer outside the body of the batch at byte ${at}`);
        return { offset: bodyStart + r.offset, length: r.length };
      });
      const children = (field.type.children ?? []).map(build);
      return { field, type: field.type, length: n.length, nullCount: n.nullCount, buffers, children, cache: [] };
    };
    return { rowStart, numRows: rb.length, columns: schema.fields.map(build) };
  }

  private locate(row: number, column: string): { node: ColumnNode; i: number } {
    if (!Number.isInteger(row) || row < 0 || row >= this.numRows) this.fail(`row ${row} out of range [0, ${this.numRows})`);
    const c = this.schema.fields.findIndex((f) => f.name === column);
    if (c < 0) this.fail(`no column "${column}" (columns: ${this.columnNames.join(", ")})`);
    let lo = 0;
    let hi = this.batches.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.batches[mid].rowStart <= row) lo = mid;
      else hi = mid - 1;
    }
    const b = this.batches[lo];
    this.touch(b);
    return { node: b.columns[c], i: row - b.rowStart };
  }

  /**
   * Keep the cached buffers of the CACHED_BATCHES most recently used record batches only,
   * so that a pass over a large table holds one batch's text, not the whole file's.
   */
  private touch(b: BatchInfo): void {
    const recent = this.recentBatches;
    if (recent[recent.length - 1] === b) return;
    const k = recent.indexOf(b);
    if (k >= 0) recent.splice(k, 1);
    recent.push(b);
    while (recent.length > CACHED_BATCHES) {
      const clear = (n: ColumnNode): void => {
        n.cache = [];
        n.children.forEach(clear);
      };
      recent.shift()!.columns.forEach(clear);
    }
  }

  private buffer(node: ColumnNode, k: number, where: string): Uint8Array {
    let b = node.cache[k];
    if (!b) {
      const ref = node.buffers[k];
      b = Buffer.allocUnsafeSlow(ref.length);
      readFully(this.fdOrFail(), b, ref.offset, where);
      node.cache[k] = b;
    }
    return b;
  }

  private fdOrFail(): number {
    if (this.fd === null) this.fail("file is closed");
    return this.fd;
  }

  private isNull(node: ColumnNode, i: number, where: string): boolean {
    if (node.nullCount === 0 || node.type.typeId === Type.Null) return node.type.typeId === Type.Null;
    if (node.buffers[0].length === 0) return false;
    const v = this.buffer(node, 0, where);
    return ((v[i >> 3] >> (i & 7)) & 1) === 0;
  }

  private offsets(node: ColumnNode, i: number, where: string): [number, number] {
    const large = node.type.typeId === Type.LargeBinary || node.type.typeId === Type.LargeUtf8 || node.type.typeId === Type.LargeList;
    const o = this.buffer(node, 1, where);
    const dv = new DataView(o.buffer, o.byteOffset, o.byteLength);
    const w = large ? 8 : 4;
    if ((i + 2) * w > o.byteLength) throw new ArrowFormatError(`${where}: offsets buffer too short`);
    const get = (k: number) => (large ? Number(dv.getBigInt64(k * 8, true)) : dv.getInt32(k * 4, true));
    const a = get(i);
    const b = get(i + 1);
    if (a < 0 || b < a) throw new ArrowFormatError(`${where}: bad offsets ${a}..${b}`);
    return [a, b];
  }

  private decode(node: ColumnNode, i: number, where: string): unknown {
    if (i >= node.length) throw new ArrowFormatError(`${where}: index ${i} past the array length ${node.length}`);
    if (this.isNull(node, i, where)) return null;
    const t = node.type as any;
    switch (node.type.typeId) {
      case Type.Bool: {
        const d = this.buffer(node, 1, where);
        return ((d[i >> 3] >> (i & 7)) & 1) === 1;
      }
      case Type.Int: {
        const d = this.buffer(node, 1, where);
        const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
        const bytes = t.bitWidth / 8;
        if ((i + 1) * bytes > d.byteLength) throw new ArrowFormatError(`${where}: data buffer too short`);
        switch (t.bitWidth) {
          case 8: return t.isSigned ? dv.getInt8(i) : dv.getUint8(i);
          case 16: return t.isSigned ? dv.getInt16(2 * i, true) : dv.getUint16(2 * i, true);
          case 32: return t.isSigned ? dv.getInt32(4 * i, true) : dv.getUint32(4 * i, true);
          default: {
            const v = t.isSigned ? dv.getBigInt64(8 * i, true) : dv.getBigUint64(8 * i, true);
            return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
          }
        }
      }
      case Type.Float: {
        const d = this.buffer(node, 1, where);
        const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
        const bytes = [2, 4, 8][t.precision as number];
        if ((i + 1) * bytes > d.byteLength) throw new ArrowFormatError(`${where}: data buffer too short`);
        if (t.precision === 2) return dv.getFloat64(8 * i, true);
        if (t.precision === 1) return dv.getFloat32(4 * i, true);
        const h = dv.getUint16(2 * i, true);
        const e = (h >> 10) & 0x1f;
        const m = h & 0x3ff;
        const s = h & 0x8000 ? -1 : 1;
        return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      }
      case Type.Utf8: case Type.LargeUtf8: {
        const [a, b] = this.offsets(node, i, where);
        const d = this.buffer(node, 2, where);
        if (b > d.byteLength) throw new ArrowFormatError(`${where}: string past the end of its data buffer`);
        return Buffer.from(d.buffer, d.byteOffset + a, b - a).toString("utf8");
      }
      case Type.Binary: case Type.LargeBinary: {
        const [a, b] = this.offsets(node, i, where);
        const ref = node.buffers[2];
        if (b > ref.length) throw new ArrowFormatError(`${where}: value past the end of its data buffer`);
        const out = Buffer.allocUnsafeSlow(b - a);
        readFully(this.fdOrFail(), out, ref.offset + a, where);
        return new Uint8Array(out.buffer, 0, out.length);
      }
      case Type.List: case Type.LargeList: {
        const [a, b] = this.offsets(node, i, where);
        const out: unknown[] = [];
        for (let j = a; j < b; j++) out.push(this.decode(node.children[0], j, where));
        return out;
      }
      case Type.FixedSizeList: {
        const n = t.listSize as number;
        const out: unknown[] = [];
        for (let j = i * n; j < (i + 1) * n; j++) out.push(this.decode(node.children[0], j, where));
        return out;
      }
      case Type.Struct: {
        const out: Record<string, unknown> = {};
        node.children.forEach((c) => (out[c.field.name] = this.decode(c, i, where)));
        return out;
      }
      default:
        throw new ArrowFormatError(`${where}: unsupported type ${typeName(node.type)}`);
    }
  }

  /** The JS value of one cell: strings, numbers (int64 → number when safe, else bigint), arrays, Uint8Array for binary, null. */
  value(row: number, column: string): unknown {
    const { node, i } = this.locate(row, column);
    const where = `${this.path}: row ${row} column "${column}"`;
    try {
      return this.decode(node, i, where);
    } catch (err) {
      if (err instanceof ArrowFormatError) throw err;
      throw new ArrowFormatError(`${where}: damaged data (${(err as Error).message})`);
    }
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

// ================================================================ column shapes

/** Logical shapes of the ViLT columns, checked on both the schema and the values. */
type Shape = "binary" | "string" | "id" | "int" | "number" | { list: Shape };

const listOf = (s: Shape): Shape => ({ list: s });

function shapeName(s: Shape): string {
  return typeof s === "string" ? s : `list<${shapeName(s.list)}>`;
}

function typeMatches(t: DataType, s: Shape): boolean {
  const id = t.typeId;
  if (typeof s !== "string") {
    if (id !== Type.List && id !== Type.LargeList && id !== Type.FixedSizeList) return false;
    const child = t.children[0].type;
    return child.typeId === Type.Null || typeMatches(child, s.list);
  }
  switch (s) {
    case "binary": return id === Type.Binary || id === Type.LargeBinary;
    case "string": return id === Type.Utf8 || id === Type.LargeUtf8;
    case "int": return id === Type.Int;
    case "number": return id === Type.Int || id === Type.Float;
    case "id": return id === Type.Int || id === Type.Utf8 || id === Type.LargeUtf8;
  }
}

/** Throws naming the (nested) position of the first value that does not have shape `s`. */
function checkValue(v: unknown, s: Shape, where: string): void {
  const bad = (what: string): never => {
    throw new ArrowFormatError(`${where}: expected ${shapeName(s)}, got ${what}`);
  };
  if (v === null || v === undefined) bad(String(v));
  if (typeof s !== "string") {
    if (!Array.isArray(v)) bad(typeof v);
    (v as unknown[]).forEach((x, k) => checkValue(x, s.list, `${where}[${k}]`));
    return;
  }
  switch (s) {
    case "binary": if (!(v instanceof Uint8Array)) bad(typeof v); break;
    case "string": if (typeof v !== "string") bad(typeof v); break;
    case "int": if (!Number.isSafeInteger(v)) bad(String(v)); break;
    case "number": if (typeof v !== "number") bad(typeof v); break;
    case "id": if (typeof v !== "string" && !Number.isSafeInteger(v)) bad(String(v)); break;
  }
}

interface TableSpec {
  kind: string;
  /** column → shape; binary columns are read on demand only */
  columns: Record<string, Shape>;
  /** cross-column checks on a (non-image) row */
  check?: (row: Record<string, unknown>, fail: (column: string, msg: string) => never) => void;
}

// ================================================================ typed readers

class TableReader<Row> {
  protected readonly file: ArrowFile;

  protected constructor(readonly path: string, protected readonly spec: TableSpec) {
    this.file = ArrowFile.open(path);
    try {
      for (const [name, shape] of Object.entries(spec.columns)) {
        const t = this.file.columnType(name);
        if (!t) throw new ArrowFormatError(`${path}: not a ${spec.kind} table: no column "${name}" (columns: ${this.file.columnNames.join(", ")})`);
        if (!typeMatches(t, shape)) throw new ArrowFormatError(`${path}: column "${name}" has type ${typeName(t)}, expected ${shapeName(shape)}`);
      }
    } catch (err) {
      this.file.close();
      throw err;
    }
  }

  get numRows(): number {
    return this.file.numRows;
  }

  /** All non-binary columns of a row (images are fetched separately). */
  row(i: number): Row {
    const out: Record<string, unknown> = {};
    for (const [name, shape] of Object.entries(this.spec.columns)) {
      if (shape === "binary") continue;
      const v = this.file.value(i, name);
      checkValue(v, shape, `${this.path}: row ${i} column "${name}"`);
      out[name] = v;
    }
    this.spec.check?.(out, (column, msg) => {
      throw new ArrowFormatError(`${this.path}: row ${i} column "${column}": ${msg}`);
    });
    return out as Row;
  }

  protected bytes(i: number, column: string): Uint8Array {
    const v = this.file.value(i, column);
    checkValue(v, "binary", `${this.path}: row ${i} column "${column}"`);
    return v as Uint8Array;
  }

  *rows(): Generator<Row> {
    for (let i = 0; i < this.numRows; i++) yield this.row(i);
  }

  close(): void {
    this.file.close();
  }
}

export interface CaptionRow {
  caption: string[];
  image_id: string | number;
  split: string;
}

export interface VqaRow {
  questions: string[];
  answers: string[][];
  answer_labels: number[][];
  answer_scores: number[][];
  image_id: string | number;
  question_id: number[];
  split: string;
}

export interface Nlvr2Row {
  questions: string[];
  answers: ("True" | "False")[];
  identifier: string;
}

const CAPTION_SPEC: TableSpec = {
  kind: "caption",
  columns: { image: "binary", caption: listOf("string"), image_id: "id", split: "string" },
};

const VQA_SPEC: TableSpec = {
  kind: "VQA",
  columns: {
    image: "binary", questions: listOf("string"), answers: listOf(listOf("string")),
    answer_labels: listOf(listOf("int")), answer_scores: listOf(listOf("number")),
    image_id: "id", question_id: listOf("int"), split: "string",
  },
  check: (r, fail) => {
    const q = (r.questions as string[]).length;
    if ((r.question_id as number[]).length !== q) fail("question_id", `${(r.question_id as number[]).length} ids for ${q} questions`);
    const answers = r.answers as string[][];
    if (answers.length !== 0 && answers.length !== q) fail("answers", `${answers.length} answer lists for ${q} questions`);
    for (const col of ["answer_labels", "answer_scores"] as const) {
      const v = r[col] as unknown[][];
      if (v.length !== answers.length) fail(col, `${v.length} lists for ${answers.length} answer lists`);
      v.forEach((x, k) => {
        if (x.length !== answers[k].length) fail(col, `question ${k}: ${x.length} values for ${answers[k].length} answers`);
      });
    }
  },
};

const NLVR2_SPEC: TableSpec = {
  kind: "NLVR2",
  columns: { image_0: "binary", image_1: "binary", questions: listOf("string"), answers: listOf("string"), identifier: "string" },
  check: (r, fail) => {
    const q = r.questions as string[];
    const a = r.answers as string[];
    if (a.length !== q.length) fail("answers", `${a.length} answers for ${q.length} questions`);
    a.forEach((x, k) => {
      if (x !== "True" && x !== "False") fail("answers", `answer ${k} is ${JSON.stringify(x)}, expected "True" or "False"`);
    });
  },
};

export class CaptionArrowReader extends TableReader<CaptionRow> {
  static open(path: string): CaptionArrowReader {
    return new CaptionArrowReader(path, CAPTION_SPEC);
  }

  /** The encoded image (JPEG/PNG bytes) of a row, read from disk on demand. */
  image(i: number): Uint8Array {
    return this.bytes(i, "image");
  }
}

export class VqaArrowReader extends TableReader<VqaRow> {
  static open(path: string): VqaArrowReader {
    return new VqaArrowReader(path, VQA_SPEC);
  }

  image(i: number): Uint8Array {
    return this.bytes(i, "image");
  }
}

export class Nlvr2ArrowReader extends TableReader<Nlvr2Row> {
  static open(path: string): Nlvr2ArrowReader {
    return new Nlvr2ArrowReader(path, NLVR2_SPEC);
  }

  /** Image 0 or 1 of a pair. */
  image(i: number, which: 0 | 1): Uint8Array {
    if (which !== 0 && which !== 1) throw new ArrowFormatError(`${this.path}: image index must be 0 or 1, got ${which}`);
    return this.bytes(i, which === 0 ? "image_0" : "image_1");
  }
}

// ================================================================ writers

export interface ArrowWriterOptions {
  /** rows per record batch (default 1000) */
  batchRows?: number;
  /** also flush when the buffered binary bytes exceed this (default 256 MB) */
  batchBytes?: number;
}

const item = (t: DataType) => new List(new Field("item", t, true));

/** Arrow type for a shape; ids become int64 or utf8 depending on the JS type seen first. */
function arrowType(s: Shape, idIsNumber: boolean): DataType {
  if (typeof s !== "string") return item(arrowType(s.list, idIsNumber));
  switch (s) {
    case "binary": return new Binary();
    case "string": return new Utf8();
    case "int": return new Int64();
    case "number": return new Float64();
    case "id": return idIsNumber ? new Int64() : new Utf8();
  }
}

function toArrowValue(v: unknown, s: Shape): unknown {
  if (typeof s !== "string") return (v as unknown[]).map((x) => toArrowValue(x, s.list));
  if (s === "int" || (s === "id" && typeof v === "number")) return BigInt(v as number);
  return v;
}

class TableWriter<Row extends object> {
  private readonly tmpPath: string;
  private readonly fd: number;
  private readonly writer = new RecordBatchFileWriter();
  private readonly pump: Promise<void>;
  private pumpError: unknown = null;
  private schema: Schema | null = null;
  private idIsNumber: boolean | null = null;
  private pending: Record<string, unknown>[] = [];
  private pendingBytes = 0;
  private rowCount = 0;
  private closed = false;
  private readonly batchRows: number;
  private readonly batchBytes: number;

  protected constructor(readonly path: string, private readonly spec: TableSpec, opts: ArrowWriterOptions, private readonly defaultIdIsNumber: boolean) {
    this.batchRows = opts.batchRows ?? 1000;
    this.batchBytes = opts.batchBytes ?? 256 * 1024 * 1024;
    this.tmpPath = `${path}.tmp-${process.pid}`;
    const fd = fs.openSync(this.tmpPath, "w");
    this.fd = fd;
    this.pump = (async () => {
      for await (const chunk of this.writer) {
        let done = 0;
        while (done < chunk.byteLength) done += fs.writeSync(fd, chunk, done, chunk.byteLength - done);
      }
    })().catch((err) => {
      this.pumpError = namedFsError(this.path, err); // a full disk names the table
    });
  }

  get rows(): number {
    return this.rowCount;
  }

  /** Validate and buffer one row; writes a record batch when the buffer is full. */
  async write(row: Row): Promise<void> {
    if (this.closed) throw new Error(`${this.path}: write after close`);
    const src = row as Record<string, unknown>;
    const rowNo = this.rowCount;
    const fail = (column: string, msg: string): never => {
      throw new ArrowFormatError(`${this.path}: row ${rowNo} column "${column}": ${msg}`);
    };
    let idIsNumber: boolean | null = null;
    for (const [name, shape] of Object.entries(this.spec.columns)) {
      checkValue(src[name], shape, `${this.path}: row ${rowNo} column "${name}"`);
      if (shape === "id") {
        idIsNumber = typeof src[name] === "number";
        if (this.idIsNumber !== null && this.idIsNumber !== idIsNumber) {
          fail(name, `${typeof src[name]} after ${this.idIsNumber ? "number" : "string"} ids in earlier rows`);
        }
      }
    }
    this.spec.check?.(src, fail);
    if (idIsNumber !== null) this.idIsNumber = idIsNumber;
    // Buffered rows hold copies, so callers may reuse their arrays after write().
    const r: Record<string, unknown> = {};
    for (const [name, shape] of Object.entries(this.spec.columns)) {
      if (shape === "binary") {
        const bytes = new Uint8Array(src[name] as Uint8Array);
        this.pendingBytes += bytes.byteLength;
        r[name] = bytes;
      } else {
        r[name] = toArrowValue(src[name], shape);
      }
    }
    this.pending.push(r);
    this.rowCount++;
    if (this.pending.length >= this.batchRows || this.pendingBytes >= this.batchBytes) await this.flush();
  }

  private makeSchema(): Schema {
    const idNum = this.idIsNumber ?? this.defaultIdIsNumber;
    return new Schema(Object.entries(this.spec.columns).map(([name, s]) => new Field(name, arrowType(s, idNum), true)));
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    this.schema ??= this.makeSchema();
    const rows = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    const children = this.schema.fields.map((f) => {
      const v = vectorFromArray(rows.map((r) => r[f.name]) as any[], f.type);
      if (v.data.length !== 1) throw new Error(`${this.path}: column "${f.name}" built ${v.data.length} chunks, expected 1`);
      return v.data[0];
    });
    const data = makeData({ type: new Struct(this.schema.fields), length: rows.length, nullCount: 0, children });
    this.writer.write(new RecordBatch(this.schema, data));
    await new Promise(setImmediate); // let the pump write the batch's chunks
    if (this.pumpError) throw this.pumpError;
  }

  /** Flush, write the footer, move the file into place. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
      if (!this.schema) this.writer.reset(undefined, this.makeSchema()); // empty table: schema + footer only
      this.writer.finish();
      await this.pump;
      if (this.pumpError) throw this.pumpError;
    } finally {
      fs.closeSync(this.fd);
    }
    await fs.promises.rename(this.tmpPath, this.path);
  }

  /** Stop writing and delete the partial file. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.writer.abort();
    await this.pump;
    fs.closeSync(this.fd);
    fs.rmSync(this.tmpPath, { force: true });
  }
}

export type CaptionRowWithImage = CaptionRow & { image: Uint8Array };
export type VqaRowWithImage = VqaRow & { image: Uint8Array };
export type Nlvr2RowWithImages = Nlvr2Row & { image_0: Uint8Array; image_1: Uint8Array };

/** Writes a ViLT caption table (image_id stored as int64 if numbers are given, else utf8). */
export class CaptionArrowWriter extends TableWriter<CaptionRowWithImage> {
  constructor(path: string, opts: ArrowWriterOptions = {}) {
    super(path, CAPTION_SPEC, opts, false);
  }
}

/** Writes a ViLT VQA table (image_id int64 if numbers are given, else utf8). */
export class VqaArrowWriter extends TableWriter<VqaRowWithImage> {
  constructor(path: string, opts: ArrowWriterOptions = {}) {
    super(path, VQA_SPEC, opts, true);
  }
}

export class Nlvr2ArrowWriter extends TableWriter<Nlvr2RowWithImages> {
  constructor(path: string, opts: ArrowWriterOptions = {}) {
    super(path, NLVR2_SPEC, opts, false);
  }
}
