/**
 * Hugging Face safetensors, byte for byte:
 *
 *   [u64 little-endian N][N bytes of UTF-8 JSON header, space padded][data buffer]
 *
 * The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
 * (offsets relative to the start of the data buffer) plus an optional
 * "__metadata__": {string: string}. Readers here validate the file the way the
 * reference implementation does: header at most 100 MB, valid UTF-8 JSON, no
 * duplicate names, known dtypes, byte length = numel x element size, and the
 * tensors tile the data buffer exactly (contiguous, no overlap, no gap, no
 * trailing bytes).
 *
 * Writer layout: header keys are written "__metadata__" first, then tensors
 * sorted by name (UTF-8 byte order, as Rust sorts strings). The data buffer is
 * laid out by element size descending (8, 4, 2, 1 bytes), then by name, so
 * every tensor starts at a multiple of its element size (the header is padded
 * to 8 bytes); readers can view the bytes as typed arrays without copying.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { writeAllSync, writeFileAtomic } from "./atomic.ts";
import { type DType, type RawTensor, byteLength, checkRawTensor, elementSize } from "./raw.ts";

/** Largest header the reference implementation accepts. */
export const MAX_HEADER_SIZE = 100_000_000;

const TO_ST: Record<DType, string> = {
  float64: "F64",
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  int16: "I16",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};
const FROM_ST = new Map<string, DType>(Object.entries(TO_ST).map(([k, v]) => [v, k as DType]));
/** Valid safetensors dtypes that RawTensor cannot represent. */
const UNSUPPORTED_ST = new Set(["U16", "U32", "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"]);

export function safetensorsDType(dtype: DType): string {
  return TO_ST[dtype];
}

export type TensorInput = Record<string, RawTensor> | Map<string, RawTensor>;
export type Metadata = Record<string, string>;

export interface SafetensorsContents {
  /** In header order (for files written here: sorted by name). */
  tensors: Map<string, RawTensor>;
  metadata: Metadata;
}

/** Where a tensor lives in a safetensors file. */
export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Offset of the tensor's first byte from the start of the file. */
  fileOffset: number;
  byteLength: number;
}

// ---------------------------------------------------------------------------
// Strict JSON (duplicate keys are an error; objects keep their key order)

type Json = null | boolean | number | string | Json[] | Map<string, Json>;

const MAX_JSON_DEPTH = 64;

function parseStrictJson(text: string, where: string): Json {
  let i = 0;
  const fail = (msg: string): never => {
    throw new Error(`${where}: bad header JSON: ${msg} at character ${i}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const str = (): string => {
    // at the opening quote
    i++;
    let out = "";
    let run = i;
    while (true) {
      if (i >= text.length) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(run, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(run, i);
      const e = text[i + 1];
      i += 2;
      switch (e) {
        case '"': out += '"'; break;
        case "\\": out += "\\"; break;
        case "/": out += "/"; break;
        case "b": out += "\b"; break;
        case "f": out += "\f"; break;
        case "n": out += "\n"; break;
        case "r": out += "\r"; break;
        case "t": out += "\t"; break;
        case "u": {
          const hex = text.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          i -= 2;
          fail("bad escape");
      }
      run = i;
    }
  };
  const num = (): number => {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail("bad number");
    i += m[0].length;
    return Number(m[0]);
  };
  const value = (depth: number): Json => {
    if (depth > MAX_JSON_DEPTH) fail("nesting too deep");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = new Map<string, Json>();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      while (true) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const keyAt = i;
        const key = str();
        if (obj.has(key)) {
          i = keyAt;
          fail(`duplicate key ${JSON.stringify(key)}`);
        }
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        obj.set(key, value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: Json[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      while (true) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return num();
    for (const [lit, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return v;
      }
    }
    return fail(i >= text.length ? "unexpected end" : `unexpected character ${JSON.stringify(text[i])}`);
  };
  const result = value(0);
  ws();
  if (i !== text.length) fail("trailing characters after the JSON value");
  return result;
}

// ---------------------------------------------------------------------------
// Header parsing and validation

interface ParsedHeader {
  /** Offsets relative to the data buffer. */
  entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[];
  metadata: Metadata;
}

function setOwn(obj: Record<string, string>, key: string, value: string): void {
  // defineProperty so that a key like "__proto__" is stored as data, not as the prototype
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function parseHeader(bytes: Uint8Array, dataLength: number, where: string): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new Error(`${where}: header is not valid UTF-8`);
  }
  if (!text.startsWith("{")) throw new Error(`${where}: header does not start with '{' (not a safetensors file?)`);
  const root = parseStrictJson(text, where);
  if (!(root instanceof Map)) throw new Error(`${where}: header JSON is not an object`);

  const metadata: Metadata = {};
  const entries: ParsedHeader["entries"] = [];
  for (const [name, info] of root) {
    if (name === "__metadata__") {
      if (!(info instanceof Map)) throw new Error(`${where}: "__metadata__" must be an object of strings`);
      for (const [k, v] of info) {
        if (typeof v !== "string") {
          throw new Error(`${where}: "__metadata__" value for ${JSON.stringify(k)} is not a string`);
        }
        setOwn(metadata, k, v);
      }
      continue;
    }
    const at = `${where}: tensor ${JSON.stringify(name)}`;
    if (!(info instanceof Map)) throw new Error(`${at}: entry is not an object`);
    const st = info.get("dtype");
    if (typeof st !== "string") throw new Error(`${at}: missing "dtype"`);
    const dtype = FROM_ST.get(st);
    if (dtype === undefined) {
      if (UNSUPPORTED_ST.has(st)) throw new Error(`${at}: dtype ${st} is not supported by vlpkit`);
      throw new Error(`${at}: unknown dtype ${JSON.stringify(st)}`);
    }
    const shape = info.get("shape");
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${at}: "shape" must be an array of non-negative integers`);
    }
    const offs = info.get("data_offsets");
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new Error(`${at}: "data_offsets" must be [begin, end] with non-negative integers`);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) throw new Error(`${at}: data_offsets [${begin}, ${end}] end before they begin`);
    let expected: number;
    try {
      expected = byteLength(dtype, shape as number[]);
    } catch (e) {
      throw new Error(`${at}: ${(e as Error).message}`);
    }
    if (end - begin !== expected) {
      throw new Error(
        `${at}: ${st} shape [${shape.join(", ")}] needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  // The tensors must tile the data buffer exactly.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: string | undefined;
  for (const e of sorted) {
    if (e.begin < pos) {
      throw new Error(
        `${where}: tensor ${JSON.stringify(e.name)} data_offsets [${e.begin}, ${e.end}] overlap tensor ${JSON.stringify(prev)} (which ends at ${pos})`,
      );
    }
    if (e.begin > pos) {
      throw new Error(
        `${where}: gap in the data buffer: bytes ${pos}..${e.begin} before tensor ${JSON.stringify(e.name)} belong to no tensor`,
      );
    }
    pos = e.end;
    prev = e.name;
  }
  if (pos !== dataLength) {
    throw new Error(
      pos > dataLength
        ? `${where}: truncated: tensors need a ${pos}-byte data buffer but only ${dataLength} bytes follow the header`
        : `${where}: ${dataLength - pos} unexpected trailing bytes after the last tensor (data buffer is ${dataLength} bytes, tensors cover ${pos})`,
    );
  }
  return { entries, metadata };
}

function readHeaderLength(prefix: Uint8Array, fileSize: number, where: string): number {
  if (fileSize < 8) throw new Error(`${where}: file is ${fileSize} bytes, too short for the 8-byte header length`);
  const n = Buffer.from(prefix.buffer, prefix.byteOffset, 8).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new Error(`${where}: header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit (corrupt or not a safetensors file)`);
  }
  const len = Number(n);
  if (len < 2) throw new Error(`${where}: header length ${len} is too small`);
  if (8 + len > fileSize) {
    throw new Error(`${where}: truncated: header length is ${len} bytes but the file has only ${fileSize - 8} after the length`);
  }
  return len;
}

// ---------------------------------------------------------------------------
// Encoding

function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

interface Plan {
  header: Uint8Array;
  /** Tensors in data order. */
  order: { name: string; tensor: RawTensor }[];
}

function plan(tensors: TensorInput, metadata: Metadata | undefined, where: string): Plan {
  const list: { name: string; tensor: RawTensor }[] = [];
  const iter = tensors instanceof Map ? tensors.entries() : Object.entries(tensors);
  for (const [name, tensor] of iter) {
    if (typeof name !== "string") throw new Error(`${where}: tensor names must be strings, got ${typeof name}`);
    if (name === "__metadata__") throw new Error(`${where}: "__metadata__" cannot be used as a tensor name`);
    checkRawTensor(tensor, `${where}: tensor ${JSON.stringify(name)}`);
    list.push({ name, tensor });
  }
  const byName = [...list].sort((a, b) => utf8Compare(a.name, b.name));
  const order = [...byName].sort(
    (a, b) => elementSize(b.tensor.dtype) - elementSize(a.tensor.dtype) || utf8Compare(a.name, b.name),
  );
  const offsets = new Map<string, [number, number]>();
  let pos = 0;
  for (const { name, tensor } of order) {
    offsets.set(name, [pos, pos + tensor.data.byteLength]);
    pos += tensor.data.byteLength;
  }

  const parts: string[] = [];
  if (metadata !== undefined) {
    if (typeof metadata !== "object" || metadata === null) throw new Error(`${where}: metadata must be an object`);
    const meta: string[] = [];
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new Error(`${where}: metadata value for ${JSON.stringify(k)} must be a string`);
      meta.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${meta.join(",")}}`);
  }
  for (const { name, tensor } of byName) {
    const [b, e] = offsets.get(name)!;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${TO_ST[tensor.dtype]}","shape":[${tensor.shape.join(",")}],"data_offsets":[${b},${e}]}`,
    );
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const padded = Math.ceil((8 + json.byteLength) / 8) * 8 - 8;
  if (padded > MAX_HEADER_SIZE) throw new Error(`${where}: header would be ${padded} bytes, over the ${MAX_HEADER_SIZE}-byte limit`);
  const header = new Uint8Array(8 + padded);
  header.fill(0x20, 8);
  Buffer.from(header.buffer, header.byteOffset, 8).writeBigUInt64LE(BigInt(padded), 0);
  header.set(json, 8);
  return { header, order };
}

/** Serializes to one in-memory buffer (see writeSafetensors for big checkpoints). */
export function encodeSafetensors(tensors: TensorInput, metadata?: Metadata): Uint8Array {
  const { header, order } = plan(tensors, metadata, "safetensors");
  let total = header.byteLength;
  for (const { tensor } of order) total += tensor.data.byteLength;
  const out = new Uint8Array(total);
  out.set(header, 0);
  let pos = header.byteLength;
  for (const { tensor } of order) {
    out.set(tensor.data, pos);
    pos += tensor.data.byteLength;
  }
  return out;
}

/** Atomically writes a safetensors file (temp file + fsync + rename). */
export function writeSafetensors(path: string, tensors: TensorInput, metadata?: Metadata): void {
  const { header, order } = plan(tensors, metadata, path);
  writeFileAtomic(path, (fd) => {
    writeAllSync(fd, header);
    for (const { tensor } of order) writeAllSync(fd, tensor.data);
  });
}

/**
 * Parses an in-memory safetensors buffer. Tensor data are views into `bytes`
 * (no copy).
 */
export function decodeSafetensors(bytes: Uint8Array, where = "<safetensors buffer>"): SafetensorsContents {
  bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength); // plain views even for a Buffer
  const n = readHeaderLength(bytes, bytes.byteLength, where);
  const { entries, metadata } = parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength - 8 - n, where);
  const tensors = new Map<string, RawTensor>();
  for (const e of entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: bytes.subarray(8 + n + e.begin, 8 + n + e.end) });
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------
// File reading

const READ_CHUNK = 1 << 30;

function readFully(fd: number, into: Uint8Array, position: number, where: string): void {
  let off = 0;
  while (off < into.byteLength) {
    const n = readSync(fd, into, off, Math.min(READ_CHUNK, into.byteLength - off), position + off);
    if (n === 0) throw new Error(`${where}: unexpected end of file at byte ${position + off} (file changed while reading?)`);
    off += n;
  }
}

/**
 * A safetensors file opened for lazy access: the header is read and
 * validated up front, each tensor is read with a positioned read when asked
 * for. Call close() when done.
 */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Metadata;
  private fd: number | undefined;
  private readonly index: Map<string, SafetensorsEntry>;

  /** Use openSafetensors(). */
  constructor(path: string, fd: number, metadata: Metadata, index: Map<string, SafetensorsEntry>) {
    this.path = path;
    this.fd = fd;
    this.metadata = metadata;
    this.index = index;
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.index.keys()];
  }

  has(name: string): boolean {
    return this.index.has(name);
  }

  get size(): number {
    return this.index.size;
  }

  /** dtype, shape and location of a tensor, without reading it. */
  info(name: string): SafetensorsEntry {
    const e = this.index.get(name);
    if (e === undefined) throw new Error(`${this.path}: no tensor named ${JSON.stringify(name)}`);
    return { ...e, shape: [...e.shape] };
  }

  /** Reads one tensor into a fresh buffer. */
  read(name: string): RawTensor {
    const e = this.info(name);
    if (this.fd === undefined) throw new Error(`${this.path}: file is closed`);
    const data = new Uint8Array(e.byteLength);
    readFully(this.fd, data, e.fileOffset, `${this.path}: tensor ${JSON.stringify(name)}`);
    return { dtype: e.dtype, shape: e.shape, data };
  }

  /** Reads every tensor (header order). */
  readAll(): Map<string, RawTensor> {
    const out = new Map<string, RawTensor>();
    for (const name of this.index.keys()) out.set(name, this.read(name));
    return out;
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/** Opens and validates a safetensors file for lazy, per-tensor reads. */
export function openSafetensors(path: string): SafetensorsFile {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const prefix = new Uint8Array(8);
    if (size >= 8) readFully(fd, prefix, 0, path);
    const n = readHeaderLength(prefix, size, path);
    const headerBytes = new Uint8Array(n);
    readFully(fd, headerBytes, 8, path);
    const { entries, metadata } = parseHeader(headerBytes, size - 8 - n, path);
    const index = new Map<string, SafetensorsEntry>();
    for (const e of entries) {
      index.set(e.name, {
        name: e.name,
        dtype: e.dtype,
        shape: e.shape,
        fileOffset: 8 + n + e.begin,
        byteLength: e.end - e.begin,
      });
    }
    return new SafetensorsFile(path, fd, metadata, index);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Reads a whole safetensors file. */
export function readSafetensors(path: string): SafetensorsContents {
  const file = openSafetensors(path);
  try {
    return { tensors: file.readAll(), metadata: { ...file.metadata } };
  } finally {
    file.close();
  }
}
