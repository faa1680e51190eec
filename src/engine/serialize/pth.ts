/**
 * Import of PyTorch checkpoints written by torch.save (.pth / .pt / .bin)
 * without Python and without executing anything from the file.
 *
 * Two container formats:
 *  - zip (torch >= 1.6, the default): <folder>/data.pkl holds the pickled
 *    object, <folder>/data/<key> the raw bytes of each storage, optionally
 *    <folder>/byteorder ("little" | "big") and <folder>/version. The folder
 *    name varies (file stem in torch 1.x, "archive" in 2.x). Entries are
 *    STORED (torch) or DEFLATEd (re-zipped files); zip64 is handled.
 *  - legacy (_use_new_zipfile_serialization=False): consecutive pickles
 *    (magic number, protocol version, sys_info, the object, the sorted list
 *    of storage keys), then for each key an int64 element count followed by
 *    the storage bytes (always little-endian).
 *
 * The pickle is read by the restricted unpickler in pickle.ts with an
 * allow-list of the globals a state_dict needs (tensor rebuilding, storage
 * types, OrderedDict, ...); anything else is refused. Tensors come back as
 * C-contiguous RawTensor values (views and non-contiguous strides are
 * gathered; a contiguous tensor's data may be a view of the storage bytes it
 * shares with other tensors, as in torch).
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { crc32, inflateRawSync } from "node:zlib";
import { type GlobalImpl, PickleError, PyGlobal, describe, findBuiltinGlobal, isTuple, unpickleAt } from "./pickle.ts";
import { type DType, type RawTensor, elementSize, isRawTensor } from "./raw.ts";

// ---------------------------------------------------------------------------
// File access helpers

const READ_CHUNK = 1 << 30;

/**
 * A DEFLATEd entry may expand at most this many times. Float weights compress ~1.1x and torch
 * itself stores entries uncompressed; a zip bomb expands ~1000x, so a 1 MB file could otherwise
 * claim (and get) a gigabyte.
 */
export const MAX_INFLATE_RATIO = 100;

/**
 * Bytes a file's non-contiguous tensors may copy out of their storages, beyond twice the file's
 * size: a stride-0 (expanded) view of one element can claim any size, so a 600-byte file could
 * otherwise allocate gigabytes. Legitimate views (transposes, expanded position ids) stay far below.
 */
export const MAX_GATHER_SLACK = 64 << 20;

function readAt(fd: number, position: number, length: number, where: string): Uint8Array {
  const out = new Uint8Array(length);
  let off = 0;
  while (off < length) {
    const n = readSync(fd, out, off, Math.min(READ_CHUNK, length - off), position + off);
    if (n === 0) throw new Error(`${where}: unexpected end of file at byte ${position + off}`);
    off += n;
  }
  return out;
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// ---------------------------------------------------------------------------
// Zip reader (read-only, positioned reads; STORED and DEFLATE; zip64)

export interface ZipEntry {
  name: string;
  flags: number;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

function u64Number(v: DataView, at: number, what: string, where: string): number {
  const big = v.getBigUint64(at, true);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${where}: zip ${what} ${big} is out of range`);
  return Number(big);
}

export class ZipReader {
  readonly path: string;
  readonly entries = new Map<string, ZipEntry>();
  private fd: number | undefined;
  private readonly size: number;

  get fileSize(): number {
    return this.size;
  }

  constructor(path: string) {
    this.path = path;
    const fd = openSync(path, "r");
    this.fd = fd;
    try {
      this.size = fstatSync(fd).size;
      this.readDirectory(fd);
    } catch (e) {
      closeSync(fd);
      this.fd = undefined;
      throw e;
    }
  }

  private readDirectory(fd: number): void {
    const where = this.path;
    const tailLen = Math.min(this.size, 22 + 0xffff + 20);
    const tailStart = this.size - tailLen;
    const tail = readAt(fd, tailStart, tailLen, where);
    const tv = dv(tail);
    let eocd = -1;
    let loose = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) !== SIG_EOCD) continue;
      const commentLen = tv.getUint16(i + 20, true);
      if (i + 22 + commentLen === tailLen) {
        eocd = i;
        break;
      }
      if (loose < 0 && i + 22 + commentLen <= tailLen) loose = i;
    }
    if (eocd < 0) eocd = loose;
    if (eocd < 0) throw new Error(`${where}: zip end-of-central-directory record not found (truncated or not a zip file)`);

    let disk = tv.getUint16(eocd + 4, true);
    let cdDisk = tv.getUint16(eocd + 6, true);
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    const eocdAbs = tailStart + eocd;

    let cdEnd = eocdAbs;
    const locAt = eocd - 20;
    if (locAt >= 0 && tv.getUint32(locAt, true) === SIG_EOCD64_LOCATOR) {
      const z64Offset = u64Number(tv, locAt + 8, "zip64 end record offset", where);
      if (z64Offset + 56 > eocdAbs - 20) throw new Error(`${where}: zip64 end-of-central-directory offset ${z64Offset} is out of range`);
      const rec = readAt(fd, z64Offset, 56, where);
      const rv = dv(rec);
      if (rv.getUint32(0, true) !== SIG_EOCD64) throw new Error(`${where}: bad zip64 end-of-central-directory signature at byte ${z64Offset}`);
      disk = rv.getUint32(16, true);
      cdDisk = rv.getUint32(20, true);
      count = u64Number(rv, 32, "entry count", where);
      cdSize = u64Number(rv, 40, "central directory size", where);
      cdOffset = u64Number(rv, 48, "central directory offset", where);
      cdEnd = z64Offset;
    } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      throw new Error(`${where}: zip needs zip64 fields but the zip64 locator is missing`);
    }
    if (disk !== 0 || cdDisk !== 0) throw new Error(`${where}: multi-disk zip archives are not supported`);
    if (cdOffset + cdSize > cdEnd) {
      throw new Error(`${where}: zip central directory (bytes ${cdOffset}..${cdOffset + cdSize}) runs past its end record (truncated file?)`);
    }

    const cd = readAt(fd, cdOffset, cdSize, where);
    const cv = dv(cd);
    const decoder = new TextDecoder("utf-8");
    let p = 0;
    for (let n = 0; n < count; n++) {
      const at = `${where}: zip central directory entry ${n} (byte ${cdOffset + p})`;
      if (p + 46 > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) throw new Error(`${at}: bad signature or truncated`);
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      const crc = cv.getUint32(p + 16, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let size = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      let diskStart = cv.getUint16(p + 34, true);
      let localHeaderOffset = cv.getUint32(p + 42, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw new Error(`${at}: truncated`);
      const name = decoder.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // zip64 extended information: only the fields saturated in the fixed header, in this order
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cv.getUint16(e, true);
        const len = cv.getUint16(e + 2, true);
        if (e + 4 + len > extraEnd) throw new Error(`${at}: extra field overruns the entry`);
        if (id === 0x0001) {
          let q = e + 4;
          const take = (what: string): number => {
            if (q + 8 > e + 4 + len) throw new Error(`${at}: zip64 extra field is missing the ${what}`);
            const v = u64Number(cv, q, what, at);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = take("uncompressed size");
          if (compressedSize === 0xffffffff) compressedSize = take("compressed size");
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take("local header offset");
          if (diskStart === 0xffff) {
            if (q + 4 > e + 4 + len) throw new Error(`${at}: zip64 extra field is missing the disk number`);
            diskStart = cv.getUint32(q, true);
          }
        }
        e += 4 + len;
      }
      if (diskStart !== 0) throw new Error(`${at}: multi-disk zip archives are not supported`);
      if (this.entries.has(name)) throw new Error(`${where}: zip has two entries named ${JSON.stringify(name)}`);
      this.entries.set(name, { name, flags, method, crc, compressedSize, size, localHeaderOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Reads and (if needed) inflates one entry, checking its size and CRC-32. */
  read(name: string): Uint8Array {
    if (this.fd === undefined) throw new Error(`${this.path}: zip file is closed`);
    const entry = this.entries.get(name);
    if (entry === undefined) throw new Error(`${this.path}: zip entry ${JSON.stringify(name)} not found`);
    const at = `${this.path}: zip entry ${JSON.stringify(name)}`;
    if (entry.flags & 0x1) throw new Error(`${at}: encrypted entries are not supported`);
    const local = readAt(this.fd, entry.localHeaderOffset, 30, at);
    const lv = dv(local);
    if (lv.getUint32(0, true) !== SIG_LOCAL) throw new Error(`${at}: bad local header signature at byte ${entry.localHeaderOffset}`);
    const dataStart = entry.localHeaderOffset + 30 + lv.getUint16(26, true) + lv.getUint16(28, true);
    if (dataStart + entry.compressedSize > this.size) {
      throw new Error(`${at}: data (bytes ${dataStart}..${dataStart + entry.compressedSize}) runs past the end of the file (truncated?)`);
    }
    const raw = readAt(this.fd, dataStart, entry.compressedSize, at);
    let data: Uint8Array;
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size) throw new Error(`${at}: stored entry has compressed size ${entry.compressedSize} != size ${entry.size}`);
      data = raw;
    } else if (entry.method === 8) {
      if (entry.size > Math.max(entry.compressedSize, 1) * MAX_INFLATE_RATIO) {
        throw new Error(`${at}: ${entry.compressedSize} compressed bytes claim ${entry.size}, more than ${MAX_INFLATE_RATIO}x (a zip bomb?; torch.save stores entries uncompressed)`);
      }
      let out: Buffer;
      try {
        out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (e) {
        throw new Error(`${at}: cannot inflate: ${(e as Error).message}`);
      }
      data = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } else {
      throw new Error(`${at}: compression method ${entry.method} is not supported (only stored and deflate)`);
    }
    if (data.byteLength !== entry.size) throw new Error(`${at}: size is ${data.byteLength}, directory says ${entry.size}`);
    if (crc32(data) >>> 0 !== entry.crc) throw new Error(`${at}: CRC-32 mismatch (corrupt file)`);
    return data;
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

// ---------------------------------------------------------------------------
// Storages and tensor rebuilding

const STORAGE_DTYPES = new Map<string, DType>([
  ["FloatStorage", "float32"],
  ["DoubleStorage", "float64"],
  ["HalfStorage", "float16"],
  ["BFloat16Storage", "bfloat16"],
  ["LongStorage", "int64"],
  ["IntStorage", "int32"],
  ["ShortStorage", "int16"],
  ["CharStorage", "int8"],
  ["ByteStorage", "uint8"],
  ["BoolStorage", "bool"],
  ["UntypedStorage", "uint8"],
]);

/** A storage referenced from the pickle; its bytes are attached after unpickling. */
class TorchStorage {
  constructor(
    /** Key of the root storage whose bytes hold this one. */
    readonly rootKey: string,
    readonly typeName: string,
    readonly dtype: DType,
    /** Elements in this storage. */
    readonly numel: number,
    /** First element of this storage inside the root (legacy storage views). */
    readonly rootElementOffset = 0,
  ) {}
}

interface Fixup {
  tensor: RawTensor;
  storage: TorchStorage;
  offset: number;
  size: number[];
  stride: number[];
}

function intArg(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) throw new Error(`${what} must be an integer, got ${describe(v)}`);
  return v;
}

function intList(v: unknown, what: string): number[] {
  if (!Array.isArray(v)) throw new Error(`${what} must be a tuple of integers, got ${describe(v)}`);
  return v.map((x, i) => intArg(x, `${what}[${i}]`));
}

/**
 * Copies the elements addressed by (offset, size, stride) out of `src` into
 * a new C-contiguous buffer. Strides are in elements.
 */
export function gatherStrided(
  src: Uint8Array,
  elemSize: number,
  offset: number,
  size: readonly number[],
  stride: readonly number[],
): Uint8Array {
  let n = 1;
  for (const d of size) n *= d;
  const out = new Uint8Array(n * elemSize);
  if (n === 0) return out;
  // copy in machine words (1, 2 or 4 bytes) so NaN payloads are untouched and no BigInt is needed
  const w = elemSize === 1 ? 1 : elemSize === 2 ? 2 : 4;
  const wpe = elemSize / w;
  if (src.byteOffset % w !== 0) src = new Uint8Array(src); // aligned copy
  const Words = w === 1 ? Uint8Array : w === 2 ? Uint16Array : Uint32Array;
  const S = new Words(src.buffer as ArrayBuffer, src.byteOffset, Math.floor(src.byteLength / w));
  const O = new Words(out.buffer, 0, out.byteLength / w);
  const ndim = size.length;
  if (ndim === 0) {
    O.set(S.subarray(offset * wpe, offset * wpe + wpe));
    return out;
  }
  const L = size[ndim - 1];
  const ls = stride[ndim - 1] * wpe;
  const outer = n / L;
  const idx = new Array<number>(ndim - 1).fill(0);
  let base = offset * wpe;
  let o = 0;
  for (let it = 0; it < outer; it++) {
    if (ls === wpe) {
      O.set(S.subarray(base, base + L * wpe), o);
      o += L * wpe;
    } else if (wpe === 1) {
      for (let j = 0, s = base; j < L; j++, s += ls) O[o++] = S[s];
    } else {
      for (let j = 0, s = base; j < L; j++, s += ls) {
        O[o++] = S[s];
        O[o++] = S[s + 1];
      }
    }
    for (let d = ndim - 2; d >= 0; d--) {
      idx[d]++;
      base += stride[d] * wpe;
      if (idx[d] < size[d]) break;
      base -= stride[d] * wpe * size[d];
      idx[d] = 0;
    }
  }
  return out;
}

function isContiguous(size: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expected) return false;
    expected *= size[d];
  }
  return true;
}

function swapBytes(bytes: Uint8Array, elemSize: number): Uint8Array {
  if (elemSize === 1) return bytes;
  const out = new Uint8Array(bytes.byteLength);
  for (let i = 0; i < bytes.byteLength; i += elemSize) {
    for (let j = 0; j < elemSize; j++) out[i + j] = bytes[i + elemSize - 1 - j];
  }
  return out;
}

/** Resolves a tensor's bytes from its storage's bytes (`storageBytes` covers exactly the storage). */
function materialize(f: Fixup, storageBytes: Uint8Array, where: string): void {
  const es = elementSize(f.storage.dtype);
  const { size, stride, offset } = f;
  let n = 1;
  let last = offset;
  for (let d = 0; d < size.length; d++) {
    n *= size[d];
    if (size[d] > 0) last += (size[d] - 1) * stride[d];
  }
  if (n === 0) {
    f.tensor.data = new Uint8Array(0);
    return;
  }
  if (last >= f.storage.numel) {
    throw new Error(
      `${where}: tensor of size [${size.join(", ")}] stride [${stride.join(", ")}] offset ${offset} reaches element ${last} of storage "${f.storage.rootKey}" which has only ${f.storage.numel} elements`,
    );
  }
  if (isContiguous(size, stride)) {
    f.tensor.data = storageBytes.subarray(offset * es, (offset + n) * es);
  } else {
    f.tensor.data = gatherStrided(storageBytes, es, offset, size, stride);
  }
}

/**
 * Refuses, before anything is copied, tensors whose strided copies together need more than twice
 * the file plus MAX_GATHER_SLACK (contiguous tensors are views of their storage and cost nothing).
 */
function checkGatherBudget(fixups: readonly Fixup[], fileSize: number, path: string): void {
  const budget = 2 * fileSize + MAX_GATHER_SLACK;
  let total = 0;
  for (const f of fixups) {
    if (isContiguous(f.size, f.stride)) continue;
    total += f.size.reduce((a, d) => a * d, 1) * elementSize(f.storage.dtype);
    if (total > budget) {
      throw new Error(
        `${path}: tensor of size [${f.size.join(", ")}] stride [${f.stride.join(", ")}] on storage "${f.storage.rootKey}" would bring the copies of non-contiguous tensors to ${total} bytes, more than the ${budget} a ${fileSize}-byte file may need`,
      );
    }
  }
}

// ---------------------------------------------------------------------------
// The allow-list

const REFUSAL_HINT = "only tensor-rebuilding globals are allowed";

interface TorchGlobalsContext {
  fixups: Fixup[];
  tensors: WeakSet<object>;
}

function isOurTensor(ctx: TorchGlobalsContext, v: unknown): v is RawTensor {
  return typeof v === "object" && v !== null && ctx.tensors.has(v);
}

function torchGlobals(ctx: TorchGlobalsContext): (module: string, name: string) => GlobalImpl | undefined {
  const rebuildTensor = (args: readonly unknown[], minArgs: number): RawTensor => {
    if (args.length < minArgs) throw new Error(`expected at least ${minArgs} arguments, got ${args.length}`);
    const storage = args[0];
    if (!(storage instanceof TorchStorage)) throw new Error(`first argument must be a storage, got ${describe(storage)}`);
    const offset = intArg(args[1], "storage_offset");
    const size = intList(args[2], "size");
    const stride = intList(args[3], "stride");
    if (size.length !== stride.length) throw new Error(`size has ${size.length} dims but stride has ${stride.length}`);
    if (offset < 0 || size.some((d) => d < 0) || stride.some((d) => d < 0)) {
      throw new Error(`negative offset, size or stride (size [${size}], stride [${stride}], offset ${offset})`);
    }
    const tensor: RawTensor = { dtype: storage.dtype, shape: size, data: new Uint8Array(0) };
    ctx.tensors.add(tensor);
    ctx.fixups.push({ tensor, storage, offset, size, stride });
    return tensor;
  };
  const passTensor = (args: readonly unknown[]): RawTensor => {
    if (!isOurTensor(ctx, args[0])) throw new Error(`expected a tensor, got ${describe(args[0])}`);
    return args[0];
  };
  const rebuildTensorV2: GlobalImpl = { call: (a) => rebuildTensor(a, 4) };
  const rebuildTensorV1: GlobalImpl = { call: (a) => rebuildTensor(a, 4) };
  const rebuildParameter: GlobalImpl = { call: passTensor };
  const tensorTypes = new Set(["torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter", "torch.nn.Parameter"]);
  const rebuildFromType: GlobalImpl = {
    call: (a) => {
      const [func, newType, args] = a;
      if (!(func instanceof PyGlobal) || !(func.impl === rebuildTensorV2 || func.impl === rebuildTensorV1 || func.impl === rebuildParameter)) {
        throw new Error(`only wraps torch._utils._rebuild_tensor_v2, got ${describe(func)}`);
      }
      if (!(newType instanceof PyGlobal) || !tensorTypes.has(newType.qualifiedName)) {
        throw new Error(`tensor subclass ${describe(newType)} is not supported (only torch.Tensor and torch.nn.Parameter)`);
      }
      if (!isTuple(args)) throw new Error(`arguments must be a tuple, got ${describe(args)}`);
      return func.impl.call!(args);
    },
  };
  const parameterType: GlobalImpl = { call: passTensor };
  const plainType: GlobalImpl = {};
  const storageType: GlobalImpl = {};
  const torchSize: GlobalImpl = {
    call: (a) => Object.freeze(intList(a[0] ?? [], "torch.Size")),
  };

  return (module, name) => {
    const q = `${module}.${name}`;
    switch (q) {
      case "torch._utils._rebuild_tensor_v2":
        return rebuildTensorV2;
      case "torch._utils._rebuild_tensor":
        return rebuildTensorV1;
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state":
        return rebuildParameter;
      case "torch._tensor._rebuild_from_type_v2":
      case "torch.tensor._rebuild_from_type_v2":
        return rebuildFromType;
      case "torch.nn.parameter.Parameter":
      case "torch.nn.Parameter":
        return parameterType;
      case "torch.Tensor":
      case "torch._tensor.Tensor":
        return plainType;
      case "torch.Size":
        return torchSize;
    }
    const builtin = findBuiltinGlobal(module, name);
    if (builtin !== undefined) return builtin;
    if ((module === "torch" || module === "torch.cuda" || module === "torch.storage") && STORAGE_DTYPES.has(name)) {
      return storageType;
    }
    return undefined;
  };
}

function storageTypeName(v: unknown, where: string): string {
  if (!(v instanceof PyGlobal) || !STORAGE_DTYPES.has(v.name) || v.opaque) {
    throw new Error(`${where}: unsupported storage type ${describe(v)} (complex, quantized and other storages are not supported)`);
  }
  return v.name;
}

function asciiString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return String.fromCharCode(...v);
  return undefined;
}

// ---------------------------------------------------------------------------
// Loading

export interface LoadPthOptions {
  /**
   * Keep loading when the pickle names a global outside the allow-list,
   * recording it as an inert PyOpaque value (nothing is ever executed either
   * way). Off by default: such files are refused.
   */
  opaqueGlobals?: boolean;
}

function detectFormat(path: string, fd: number, size: number): "zip" | "legacy" {
  const head = readAt(fd, 0, Math.min(size, 512), path);
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5)) return "zip";
  if (head.length >= 2 && head[0] === 0x80) return "legacy";
  if (head.length >= 262 && String.fromCharCode(...head.subarray(257, 262)) === "ustar") {
    throw new Error(`${path}: the tar-based torch checkpoint format (PyTorch < 0.4) is not supported; re-save it with a newer torch`);
  }
  if (size === 0) throw new Error(`${path}: file is empty`);
  throw new Error(`${path}: not a PyTorch checkpoint (neither a zip archive nor a legacy pickle stream)`);
}

function loadZip(path: string, options: LoadPthOptions): unknown {
  const zip = new ZipReader(path);
  try {
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length === 0) {
      const hint = zip.has("constants.pkl") || [...zip.entries.keys()].some((n) => n.endsWith("/constants.pkl"))
        ? " (looks like a TorchScript archive from torch.jit.save)"
        : "";
      throw new Error(`${path}: zip archive has no <folder>/data.pkl, not a torch.save checkpoint${hint}`);
    }
    if (pkls.length > 1) throw new Error(`${path}: zip archive has several data.pkl entries: ${pkls.join(", ")}`);
    const prefix = pkls[0].slice(0, -"data.pkl".length);
    let bigEndian = false;
    if (zip.has(prefix + "byteorder")) {
      const order = new TextDecoder().decode(zip.read(prefix + "byteorder")).trim();
      if (order !== "little" && order !== "big") throw new Error(`${path}: unknown byteorder ${JSON.stringify(order)}`);
      bigEndian = order === "big";
    }

    const ctx: TorchGlobalsContext = { fixups: [], tensors: new WeakSet() };
    const storages = new Map<string, TorchStorage>();
    const persistentLoad = (pid: unknown): unknown => {
      if (!isTuple(pid) || asciiString(pid[0]) !== "storage" || pid.length !== 5) {
        throw new Error(`unsupported persistent id ${describe(pid)} (expected ('storage', type, key, location, numel))`);
      }
      const key = asciiString(pid[2]);
      if (key === undefined) throw new Error(`storage key must be a string, got ${describe(pid[2])}`);
      const typeName = storageTypeName(pid[1], `storage "${key}"`);
      const numel = intArg(pid[4], `storage "${key}" numel`);
      const existing = storages.get(key);
      if (existing !== undefined) {
        if (existing.typeName !== typeName) throw new Error(`storage "${key}" is referenced as both ${existing.typeName} and ${typeName}`);
        return existing;
      }
      const s = new TorchStorage(key, typeName, STORAGE_DTYPES.get(typeName)!, numel);
      storages.set(key, s);
      return s;
    };
    const pkl = zip.read(prefix + "data.pkl");
    const { value, end } = unpickleAt(pkl, 0, {
      source: path,
      findGlobal: torchGlobals(ctx),
      refusalHint: REFUSAL_HINT,
      persistentLoad,
      opaqueGlobals: options.opaqueGlobals,
    });
    if (end !== pkl.length) throw new Error(`${path}: ${pkl.length - end} trailing bytes after the pickle in ${prefix}data.pkl`);

    checkGatherBudget(ctx.fixups, zip.fileSize, path);
    // Attach storage bytes, one storage at a time.
    const byKey = new Map<string, Fixup[]>();
    for (const f of ctx.fixups) {
      const list = byKey.get(f.storage.rootKey);
      if (list) list.push(f);
      else byKey.set(f.storage.rootKey, [f]);
    }
    for (const [key, fixups] of byKey) {
      const storage = storages.get(key)!;
      const entry = `${prefix}data/${key}`;
      if (!zip.has(entry)) throw new Error(`${path}: storage "${key}" is missing from the archive (no entry ${entry})`);
      const es = elementSize(storage.dtype);
      // the size the directory claims, checked before reading (read() checks it against the data)
      const claimed = zip.entries.get(entry)!.size;
      if (claimed !== storage.numel * es) {
        throw new Error(
          `${path}: ${entry} has ${claimed} bytes but ${storage.typeName} of ${storage.numel} elements needs ${storage.numel * es}`,
        );
      }
      let bytes = zip.read(entry);
      if (bigEndian) bytes = swapBytes(bytes, es);
      for (const f of fixups) materialize(f, bytes, `${path}: ${entry}`);
    }
    return value;
  } finally {
    zip.close();
  }
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

function loadLegacy(path: string, fd: number, size: number, options: LoadPthOptions): unknown {
  const refuseAll = () => undefined;
  let chunk = Math.min(size, 1 << 20);
  while (true) {
    const buf = readAt(fd, 0, chunk, path);
    const ctx: TorchGlobalsContext = { fixups: [], tensors: new WeakSet() };
    const roots = new Map<string, { typeName: string; dtype: DType; numel: number }>();
    const views = new Map<string, TorchStorage>();
    try {
      let r = unpickleAt(buf, 0, { source: `${path} (magic number)`, findGlobal: refuseAll });
      if (r.value !== LEGACY_MAGIC) throw new Error(`${path}: invalid magic number; not a torch checkpoint or corrupt`);
      r = unpickleAt(buf, r.end, { source: `${path} (protocol version)`, findGlobal: refuseAll });
      if (r.value !== LEGACY_PROTOCOL) throw new Error(`${path}: unsupported legacy protocol version ${String(r.value)}`);
      r = unpickleAt(buf, r.end, { source: `${path} (sys_info)`, findGlobal: refuseAll });

      const persistentLoad = (pid: unknown): unknown => {
        if (!isTuple(pid)) throw new Error(`unsupported persistent id ${describe(pid)}`);
        const kind = asciiString(pid[0]);
        if (kind === "module") {
          throw new Error("the file holds a whole nn.Module (torch.save(model)); only state_dicts and plain containers can be loaded");
        }
        if (kind !== "storage" || pid.length !== 6) {
          throw new Error(`unsupported persistent id ${describe(pid)} (expected ('storage', type, key, location, numel, view))`);
        }
        const key = asciiString(pid[2]);
        if (key === undefined) throw new Error(`storage key must be a string, got ${describe(pid[2])}`);
        const typeName = storageTypeName(pid[1], `storage "${key}"`);
        const numel = intArg(pid[4], `storage "${key}" numel`);
        const dtype = STORAGE_DTYPES.get(typeName)!;
        const root = roots.get(key);
        if (root === undefined) roots.set(key, { typeName, dtype, numel });
        else if (root.typeName !== typeName) throw new Error(`storage "${key}" is referenced as both ${root.typeName} and ${typeName}`);
        const view = pid[5];
        const viewKey = view === null ? key : isTuple(view) && view.length === 3 ? asciiString(view[0]) : undefined;
        if (viewKey === undefined) throw new Error(`bad storage view metadata ${describe(view)}`);
        let s = views.get(viewKey);
        if (s === undefined) {
          s = view === null
            ? new TorchStorage(key, typeName, dtype, numel)
            : new TorchStorage(key, typeName, dtype, intArg((view as unknown[])[2], "view size"), intArg((view as unknown[])[1], "view offset"));
          views.set(viewKey, s);
        }
        return s;
      };
      const main = unpickleAt(buf, r.end, {
        source: path,
        findGlobal: torchGlobals(ctx),
        refusalHint: REFUSAL_HINT,
        persistentLoad,
        opaqueGlobals: options.opaqueGlobals,
      });
      const keysResult = unpickleAt(buf, main.end, { source: `${path} (storage key list)`, findGlobal: refuseAll });
      const keys = keysResult.value;
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
        throw new Error(`${path}: storage key list is not a list of strings`);
      }

      // Storage records follow: int64 element count, then the bytes.
      let pos = keysResult.end;
      const rootBytes = new Map<string, Uint8Array>();
      for (const key of keys as string[]) {
        const root = roots.get(key);
        if (root === undefined) throw new Error(`${path}: storage "${key}" is listed but never referenced`);
        if (pos + 8 > size) throw new Error(`${path}: truncated: storage "${key}" record at byte ${pos} runs past the end of the file`);
        const count = dv(readAt(fd, pos, 8, path)).getBigInt64(0, true);
        if (count !== BigInt(root.numel)) {
          throw new Error(`${path}: storage "${key}" at byte ${pos} has ${count} elements, the pickle says ${root.numel}`);
        }
        const nbytes = root.numel * elementSize(root.dtype);
        if (pos + 8 + nbytes > size) throw new Error(`${path}: truncated: storage "${key}" data (${nbytes} bytes at byte ${pos + 8}) runs past the end of the file`);
        rootBytes.set(key, readAt(fd, pos + 8, nbytes, path));
        pos += 8 + nbytes;
      }
      checkGatherBudget(ctx.fixups, size, path);
      for (const f of ctx.fixups) {
        const bytes = rootBytes.get(f.storage.rootKey);
        if (bytes === undefined) throw new Error(`${path}: storage "${f.storage.rootKey}" is used by a tensor but its data is missing`);
        const es = elementSize(f.storage.dtype);
        const start = f.storage.rootElementOffset * es;
        const end = start + f.storage.numel * es;
        if (end > bytes.byteLength) throw new Error(`${path}: storage view past the end of storage "${f.storage.rootKey}"`);
        materialize(f, bytes.subarray(start, end), `${path}: storage "${f.storage.rootKey}"`);
      }
      return main.value;
    } catch (e) {
      if (e instanceof PickleError && e.truncated && chunk < size) {
        chunk = Math.min(size, chunk * 4);
        continue;
      }
      throw e;
    }
  }
}

/**
 * Loads a torch.save file and returns the pickled object as plain values
 * (dicts as Map, tensors as RawTensor; see pickle.ts for the mapping).
 */
export function loadPth(path: string, options: LoadPthOptions = {}): unknown {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const format = detectFormat(path, fd, size);
    if (format === "zip") return loadZip(path, options);
    return loadLegacy(path, fd, size, options);
  } finally {
    closeSync(fd);
  }
}

export interface LoadStateDictOptions extends LoadPthOptions {
  /**
   * Where the state_dict is inside the loaded object: a top-level key
   * ("state_dict", "model", ...) or a path of keys (["model", "ema"]).
   * Without it the state_dict is found automatically.
   */
  key?: string | string[];
}

const PREFERRED_KEYS = ["state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params"];

function isTensorDict(v: unknown): v is Map<string, RawTensor> {
  if (!(v instanceof Map)) return false;
  for (const [k, t] of v) if (typeof k !== "string" || !isRawTensor(t)) return false;
  return true;
}

function findStateDict(v: unknown, depth: number): Map<string, RawTensor> | undefined {
  if (isTensorDict(v)) return v;
  if (!(v instanceof Map) || depth >= 3) return undefined;
  for (const k of PREFERRED_KEYS) {
    if (v.has(k)) {
      const found = findStateDict(v.get(k), depth + 1);
      if (found !== undefined) return found;
    }
  }
  const candidates = [...v.values()].filter((x) => isTensorDict(x) && x.size > 0);
  return candidates.length === 1 ? (candidates[0] as Map<string, RawTensor>) : undefined;
}

function keyList(m: Map<unknown, unknown>): string {
  const ks = [...m.keys()].map((k) => (typeof k === "string" ? JSON.stringify(k) : String(k)));
  return ks.length > 20 ? `${ks.slice(0, 20).join(", ")}, ... (${ks.length} keys)` : ks.join(", ");
}

/**
 * Loads a checkpoint and returns its flat state_dict (name -> RawTensor), in
 * file order. Handles a bare state_dict and wrappers such as
 * {"model": sd, "epoch": 3} or {"state_dict": sd, ...} (or pass `key`).
 */
export function loadPthStateDict(path: string, options: LoadStateDictOptions = {}): Map<string, RawTensor> {
  const root = loadPth(path, options);
  if (options.key !== undefined) {
    const keys = typeof options.key === "string" ? [options.key] : options.key;
    let v: unknown = root;
    const walked: string[] = [];
    for (const k of keys) {
      if (!(v instanceof Map)) throw new Error(`${path}: ${walked.length ? `[${walked.join("][")}]` : "the top-level object"} is a ${describe(v)}, not a dict`);
      if (!v.has(k)) {
        throw new Error(`${path}: no key ${JSON.stringify(k)} in ${walked.length ? `[${walked.join("][")}]` : "the top-level dict"} (keys: ${keyList(v)})`);
      }
      v = v.get(k);
      walked.push(JSON.stringify(k));
    }
    if (!(v instanceof Map)) throw new Error(`${path}: [${walked.join("][")}] is a ${describe(v)}, not a state_dict`);
    const out = new Map<string, RawTensor>();
    for (const [name, t] of v) {
      if (typeof name !== "string") throw new Error(`${path}: [${walked.join("][")}] has a non-string key ${String(name)}`);
      if (!isRawTensor(t)) throw new Error(`${path}: [${walked.join("][")}][${JSON.stringify(name)}] is a ${describe(t)}, not a tensor`);
      out.set(name, t);
    }
    return out;
  }
  const found = findStateDict(root, 0);
  if (found === undefined) {
    const what = root instanceof Map ? `top-level keys: ${keyList(root)}` : `the file holds a ${describe(root)}`;
    throw new Error(`${path}: cannot find a state_dict (a dict of tensors) automatically (${what}); pass {key: ...}`);
  }
  return found;
}
