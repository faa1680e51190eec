/**
 * WebDataset / img2dataset tar shards as a streaming sample source.
 *
 * A shard is a plain tar (optionally gzipped: .tar.gz / .tgz) whose consecutive
 * entries sharing a key form one sample: `000001.jpg`, `000001.txt`, `000001.json`
 * → key "000001", files { jpg, txt, json }. As in webdataset, the key is the entry
 * path up to the first "." of its basename and the extension is the rest,
 * lower-cased ("a/b/00001.seg.png" → key "a/b/00001", ext "seg.png").
 *
 * Malformed input raises `WdsError` naming the shard and the key, or with
 * `skipInvalid` is skipped and counted (`WdsReader.skipped`, `onSkip`):
 *   - a sample missing a `required` extension (e.g. an img2dataset failure),
 *   - the same file twice in a sample, or a key reappearing after other samples,
 *   - an entry name with no extension,
 *   - a truncated/corrupt tar (the sample being read is dropped; the rest of
 *     that shard is lost, reading continues with the next shard).
 */
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { Rng, hashSeed } from "../../engine/rng.ts";

export interface WdsSample {
  /** entry path up to the first "." of the basename */
  key: string;
  /** the shard it came from */
  shard: string;
  /** extension (lower-case, without the leading ".") → bytes */
  files: Record<string, Uint8Array>;
}

export class WdsError extends Error {
  override name = "WdsError";
  constructor(readonly shard: string, readonly key: string | null, message: string) {
    super(`${shard}: ${key === null ? "" : `sample "${key}": `}${message}`);
  }
}

export function sampleText(s: WdsSample, ext: string): string {
  const b = s.files[ext];
  if (!b) throw new WdsError(s.shard, s.key, `no "${ext}" file (has ${Object.keys(s.files).join(", ")})`);
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");
}

export function sampleJson(s: WdsSample, ext = "json"): unknown {
  const text = sampleText(s, ext);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new WdsError(s.shard, s.key, `"${ext}" is not valid JSON: ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------- shard lists

/**
 * Brace expansion as used for shard lists: numeric ranges keep zero padding
 * ("shard-{000..009}.tar" → 10 names), comma lists ("{train,val}"), several and
 * nested groups. A brace group that is neither is kept literally.
 */
export function expandBraces(pattern: string): string[] {
  const open = pattern.indexOf("{");
  if (open < 0) return [pattern];
  let depth = 0;
  let close = -1;
  for (let i = open; i < pattern.length; i++) {
    if (pattern[i] === "{") depth++;
    else if (pattern[i] === "}" && --depth === 0) {
      close = i;
      break;
    }
  }
  if (close < 0) return [pattern];
  const head = pattern.slice(0, open);
  const body = pattern.slice(open + 1, close);
  const tail = pattern.slice(close + 1);
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(body);
  let alternatives: string[];
  if (range) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    const padded = /^-?0\d/.test(range[1]) || /^-?0\d/.test(range[2]);
    const width = padded ? Math.max(range[1].replace("-", "").length, range[2].replace("-", "").length) : 0;
    const step = a <= b ? 1 : -1;
    alternatives = [];
    for (let v = a; step > 0 ? v <= b : v >= b; v += step) {
      alternatives.push((v < 0 ? "-" : "") + String(Math.abs(v)).padStart(width, "0"));
    }
  } else {
    alternatives = [];
    let d = 0;
    let start = 0;
    for (let i = 0; i <= body.length; i++) {
      const ch = body[i];
      if (ch === "{") d++;
      else if (ch === "}") d--;
      else if ((ch === "," && d === 0) || i === body.length) {
        alternatives.push(body.slice(start, i));
        start = i + 1;
      }
    }
    if (alternatives.length < 2) {
      // not an expansion: keep "{body}" literally, expand what follows
      return expandBraces(tail).map((t) => `${head}{${body}}${t}`);
    }
  }
  return alternatives.flatMap((alt) => expandBraces(head + alt + tail));
}

export function expandShards(specs: string | string[]): string[] {
  return (Array.isArray(specs) ? specs : [specs]).flatMap(expandBraces);
}

// ---------------------------------------------------------------- reading

export interface WdsReadOptions {
  /** extensions every sample must have; "jpg;png;jpeg" means any one of them */
  required?: string[];
  /** skip malformed samples (and the rest of a corrupt shard) instead of throwing */
  skipInvalid?: boolean;
  /** called for each skipped sample */
  onSkip?: (err: WdsError) => void;
}

/** directories, then a basename split at its first "." (which may not be the first character) */
const KEY_EXT = /^((?:.*\/)?[^./][^./]*)\.([^/]+)$/;

function splitName(name: string): { key: string; ext: string } | null {
  const m = KEY_EXT.exec(name.replace(/^\.\//, ""));
  return m ? { key: m[1], ext: m[2].toLowerCase() } : null;
}

async function readEntry(entry: AsyncIterable<unknown>): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of entry) chunks.push(c as Buffer);
  const b = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Async iterator over the samples of one or more shards, in order; one sample in memory at a time. */
export class WdsReader implements AsyncIterable<WdsSample> {
  readonly shards: string[];
  /** samples yielded so far */
  samples = 0;
  /** samples skipped so far (skipInvalid) */
  skipped = 0;
  private readonly required: string[][];

  constructor(shards: string | string[], private readonly opts: WdsReadOptions = {}) {
    this.shards = expandShards(shards);
    if (this.shards.length === 0) throw new Error("WdsReader: no shards");
    this.required = (opts.required ?? []).map((r) => r.split(";").map((e) => e.trim().toLowerCase()).filter(Boolean));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<WdsSample> {
    for (const shard of this.shards) yield* this.readShard(shard);
  }

  private invalid(err: WdsError): void {
    if (!this.opts.skipInvalid) throw err;
    this.skipped++;
    this.opts.onSkip?.(err);
  }

  private async *readShard(shard: string): AsyncGenerator<WdsSample> {
    const extract = tar.extract();
    const source = fs.createReadStream(shard);
    const gz = /\.(tar\.gz|tgz)$/.test(shard);
    const sink = extract as unknown as NodeJS.WritableStream;
    // settles with the stream error (or null) once the whole shard has been consumed
    const piped: Promise<Error | null> = (gz ? pipeline(source, zlib.createGunzip(), sink) : pipeline(source, sink))
      .then(() => null, (err: Error) => err);

    let cur: { key: string; files: Record<string, Uint8Array>; error: string | null } | null = null;
    const seen = new Set<string>();
    const finish = (s: NonNullable<typeof cur>): WdsSample | null => {
      let problem = s.error;
      if (!problem) {
        const missing = this.required.filter((alts) => !alts.some((e) => e in s.files));
        if (missing.length > 0) {
          problem = `incomplete: missing ${missing.map((a) => `"${a.join(";")}"`).join(", ")} (has ${Object.keys(s.files).join(", ") || "nothing"})`;
        }
      }
      if (problem) {
        this.invalid(new WdsError(shard, s.key, problem));
        return null;
      }
      return { key: s.key, shard, files: s.files };
    };

    try {
      for await (const entry of extract) {
        const h = entry.header;
        if (h.type !== "file" && h.type !== "contiguous-file") {
          entry.resume(); // directories, links, pax headers: not sample content
          continue;
        }
        const parts = splitName(h.name);
        if (!parts) {
          await readEntry(entry);
          this.invalid(new WdsError(shard, null, `entry "${h.name}" has no key.extension name`));
          continue;
        }
        if (cur && parts.key !== cur.key) {
          const done = finish(cur);
          cur = null;
          if (done) {
            this.samples++;
            yield done;
          }
        }
        if (!cur) {
          cur = { key: parts.key, files: {}, error: null };
          if (seen.has(parts.key)) cur.error = "key appears again after other samples (sample split in two)";
          seen.add(parts.key);
        }
        const data = await readEntry(entry); // a truncated entry fails here, blamed on its own sample
        if (parts.ext in cur.files) cur.error ??= `duplicate file "${h.name}"`;
        else cur.files[parts.ext] = data;
      }
      const streamError = await piped; // e.g. a bad gzip trailer after the last tar entry
      if (streamError) throw streamError;
    } catch (err) {
      if (err instanceof WdsError) throw err; // a malformed sample, already reported
      const e = err as NodeJS.ErrnoException;
      const msg = e.code === "ENOENT" ? `cannot open shard: ${e.message}`
        : `truncated or corrupt ${gz ? "gzip/" : ""}tar: ${e.message}`;
      const bad = new WdsError(shard, cur?.key ?? null, msg);
      cur = null;
      this.invalid(bad);
      return;
    } finally {
      source.destroy();
    }
    if (cur) {
      const done = finish(cur);
      if (done) {
        this.samples++;
        yield done;
      }
    }
  }
}

export function readWds(shards: string | string[], opts: WdsReadOptions = {}): WdsReader {
  return new WdsReader(shards, opts);
}

// ---------------------------------------------------------------- writing

/** File content: bytes, text (utf-8) or, for a JSON extension, any JSON value. */
export type WdsFileValue = Uint8Array | string | object;

export interface WdsWriteSample {
  key: string;
  files: Record<string, WdsFileValue>;
}

function encodeFile(ext: string, v: WdsFileValue): Buffer {
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === "string") return Buffer.from(v, "utf8");
  if (ext === "json" || ext.endsWith(".json")) return Buffer.from(JSON.stringify(v), "utf8");
  throw new Error(`value for "${ext}" must be bytes or a string (objects only for .json)`);
}

/** Writes one tar shard (to `<path>.tmp-<pid>`, renamed on close). */
export class WdsShardWriter {
  private readonly pack = tar.pack();
  private readonly tmpPath: string;
  private readonly fd: number;
  private readonly ended: Promise<void>;
  private readonly keys = new Set<string>();
  private closed = false;
  /** bytes of file content written */
  bytes = 0;

  constructor(readonly path: string, private readonly opts: { mtime?: Date } = {}) {
    this.tmpPath = `${path}.tmp-${process.pid}`;
    const fd = fs.openSync(this.tmpPath, "w");
    this.fd = fd;
    this.pack.on("data", (data: unknown) => {
      const chunk = data as Buffer;
      let done = 0;
      while (done < chunk.length) done += fs.writeSync(fd, chunk, done, chunk.length - done);
    });
    this.ended = new Promise((resolve, reject) => {
      this.pack.on("end", () => resolve());
      this.pack.on("error", reject);
    });
  }

  get count(): number {
    return this.keys.size;
  }

  async write(sample: WdsWriteSample): Promise<void> {
    if (this.closed) throw new Error(`${this.path}: write after close`);
    const { key, files } = sample;
    const where = `${this.path}: sample "${key}"`;
    const base = key.slice(key.lastIndexOf("/") + 1);
    if (!key || base === "" || base.includes(".") || key.startsWith("/")) {
      throw new Error(`${where}: a key must be a relative path whose last part has no "."`);
    }
    if (this.keys.has(key)) throw new Error(`${where}: duplicate key`);
    const exts = Object.keys(files);
    if (exts.length === 0) throw new Error(`${where}: no files`);
    const encoded = exts.map((ext) => {
      if (!ext || ext.startsWith(".") || ext.includes("/")) throw new Error(`${where}: bad extension "${ext}"`);
      try {
        return encodeFile(ext, files[ext]);
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`);
      }
    });
    this.keys.add(key);
    const mtime = this.opts.mtime ?? new Date();
    for (let i = 0; i < exts.length; i++) {
      const buf = encoded[i];
      await new Promise<void>((resolve, reject) => {
        this.pack.entry({ name: `${key}.${exts[i]}`, size: buf.length, mtime, mode: 0o644 }, buf, (err) => (err ? reject(err) : resolve()));
      });
      this.bytes += buf.length;
    }
    await new Promise(setImmediate); // let the data handler write the entries out
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pack.finalize();
    try {
      await this.ended;
    } finally {
      fs.closeSync(this.fd);
    }
    await fs.promises.rename(this.tmpPath, this.path);
  }
}

/**
 * Writes numbered shards from a pattern such as "out/shard-%06d.tar", starting a new
 * shard after `maxCount` samples or `maxBytes` bytes of content (webdataset's ShardWriter).
 */
export class WdsShardedWriter {
  readonly shards: string[] = [];
  private current: WdsShardWriter | null = null;
  private index = 0;

  constructor(
    readonly pattern: string,
    private readonly opts: { maxCount?: number; maxBytes?: number; startIndex?: number; mtime?: Date } = {},
  ) {
    if (!/%0?\d*d/.test(pattern)) throw new Error(`WdsShardedWriter: pattern needs a %d / %06d placeholder: ${pattern}`);
    this.index = opts.startIndex ?? 0;
  }

  private shardName(i: number): string {
    return this.pattern.replace(/%(0?)(\d*)d/, (_m, zero: string, width: string) => String(i).padStart(Number(width || 0), zero ? "0" : " "));
  }

  async write(sample: WdsWriteSample): Promise<void> {
    const full = this.current &&
      (this.current.count >= (this.opts.maxCount ?? 10000) || this.current.bytes >= (this.opts.maxBytes ?? 3e9));
    if (full) await this.closeCurrent();
    if (!this.current) {
      const name = this.shardName(this.index++);
      fs.mkdirSync(path.dirname(name), { recursive: true });
      this.current = new WdsShardWriter(name, { mtime: this.opts.mtime });
      this.shards.push(name);
    }
    await this.current.write(sample);
  }

  private async closeCurrent(): Promise<void> {
    const c = this.current;
    this.current = null;
    await c?.close();
  }

  async close(): Promise<void> {
    await this.closeCurrent();
  }
}

// ---------------------------------------------------------------- streaming by position

/** Where one sample's files lie in an uncompressed tar shard: the byte offset and size of each file's content. */
export interface WdsRef {
  shard: string;
  key: string;
  /** extension (lower-case) → [offset, size] in the shard */
  files: Record<string, [number, number]>;
}

const BLOCK = 512;

function cString(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString("utf8", start, end < 0 || end > start + len ? start + len : end);
}

/** A tar number field: octal text, or base-256 when the first byte's high bit is set (GNU, sizes of 8 GiB and more). */
function tarNumber(b: Buffer, start: number, len: number): number {
  if (b[start] & 0x80) {
    let v = b[start] & 0x7f;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + b[i];
    return v;
  }
  const s = cString(b, start, len).trim();
  return s === "" ? 0 : parseInt(s, 8);
}

function readAt(fd: number, length: number, position: number): Buffer {
  const b = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, b, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? b : b.subarray(0, done);
}

/** pax extended header records ("<len> <key>=<value>\n") */
function paxRecords(b: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < b.length) {
    const sp = b.indexOf(0x20, at);
    if (sp < 0) break;
    const len = Number(b.toString("ascii", at, sp));
    if (!Number.isInteger(len) || len <= 0) break;
    const rec = b.toString("utf8", sp + 1, at + len - 1);
    const eq = rec.indexOf("=");
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    at += len;
  }
  return out;
}

/**
 * The samples of one uncompressed tar shard as byte ranges, from its headers alone: one 512-byte
 * read per entry (and the pax / GNU long-name records), file contents skipped, so a scan holds one
 * sample's ranges whatever the shard's size. Samples group as in WdsReader; a malformed sample or
 * a corrupt / truncated tar throws a WdsError naming the shard (and the key, or the byte offset).
 * Gzipped shards cannot be read by position: ungzip them first (webdataset's own are plain tar).
 */
export function* scanShard(shard: string, opts: { required?: string[] } = {}): Generator<WdsRef> {
  if (/\.(tar\.gz|tgz)$/.test(shard)) throw new WdsError(shard, null, "a gzipped shard cannot be streamed by position: gunzip it (plain .tar)");
  const required = (opts.required ?? []).map((r) => r.split(";").map((e) => e.trim().toLowerCase()).filter(Boolean));
  let fd: number;
  try {
    fd = fs.openSync(shard, "r");
  } catch (err) {
    throw new WdsError(shard, null, `cannot open shard: ${(err as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const seen = new Set<string>();
    let cur: WdsRef | null = null;
    const finish = (s: WdsRef): WdsRef => {
      const missing = required.filter((alts) => !alts.some((e) => e in s.files));
      if (missing.length > 0) throw new WdsError(shard, s.key, `incomplete: missing ${missing.map((a) => `"${a.join(";")}"`).join(", ")} (has ${Object.keys(s.files).join(", ") || "nothing"})`);
      return s;
    };
    let pos = 0;
    let longName: string | null = null;
    let pax: Record<string, string> = {};
    while (pos + BLOCK <= size) {
      const h = readAt(fd, BLOCK, pos);
      if (h.length < BLOCK) break;
      if (h.every((x) => x === 0)) break; // end-of-archive blocks
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
      if (sum !== tarNumber(h, 148, 8)) throw new WdsError(shard, cur?.key ?? null, `corrupt tar: bad header checksum at byte ${pos}`);
      const type = String.fromCharCode(h[156] || 0x30);
      const entrySize = pax.size !== undefined ? Number(pax.size) : tarNumber(h, 124, 12);
      const dataAt = pos + BLOCK;
      if (dataAt + entrySize > size) throw new WdsError(shard, cur?.key ?? null, `truncated tar: entry at byte ${pos} needs ${entrySize} bytes, the file ends at ${size}`);
      const next = dataAt + Math.ceil(entrySize / BLOCK) * BLOCK;
      if (type === "x" || type === "L" || type === "g" || type === "K") {
        if (type === "x") pax = paxRecords(readAt(fd, entrySize, dataAt));
        if (type === "L") longName = cString(readAt(fd, entrySize, dataAt), 0, entrySize);
        pos = next;
        continue;
      }
      const ustar = h.toString("ascii", 257, 262) === "ustar";
      const prefix = ustar ? cString(h, 345, 155) : "";
      const name = pax.path ?? longName ?? (prefix ? `${prefix}/${cString(h, 0, 100)}` : cString(h, 0, 100));
      longName = null;
      pax = {};
      pos = next;
      if (type !== "0" && type !== "7") continue; // directories, links: not sample content
      const parts = splitName(name);
      if (!parts) throw new WdsError(shard, null, `entry "${name}" has no key.extension name`);
      if (cur && parts.key !== cur.key) {
        yield finish(cur);
        cur = null;
      }
      if (!cur) {
        if (seen.has(parts.key)) throw new WdsError(shard, parts.key, "key appears again after other samples (sample split in two)");
        seen.add(parts.key);
        cur = { shard, key: parts.key, files: {} };
      }
      if (parts.ext in cur.files) throw new WdsError(shard, cur.key, `duplicate file "${name}"`);
      cur.files[parts.ext] = [dataAt, entrySize];
    }
    if (cur) yield finish(cur);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the files of WdsRefs by position, keeping the most recently used shards open (at most `maxOpen`). */
export class WdsRefReader {
  private readonly fds = new Map<string, number>();
  constructor(private readonly maxOpen = 8) {}

  private fd(shard: string): number {
    let fd = this.fds.get(shard);
    if (fd !== undefined) {
      this.fds.delete(shard); // re-inserted: most recently used last
    } else {
      fd = fs.openSync(shard, "r");
      if (this.fds.size >= this.maxOpen) {
        const [oldest, ofd] = this.fds.entries().next().value as [string, number];
        fs.closeSync(ofd);
        this.fds.delete(oldest);
      }
    }
    this.fds.set(shard, fd);
    return fd;
  }

  /** The bytes of one file of a sample (`ext`: one extension, or alternatives "jpg;png"). */
  read(ref: WdsRef, ext: string): Uint8Array {
    const alt = ext.split(";").find((e) => e in ref.files);
    if (alt === undefined) throw new WdsError(ref.shard, ref.key, `no "${ext}" file (has ${Object.keys(ref.files).join(", ")})`);
    const [offset, size] = ref.files[alt];
    const b = readAt(this.fd(ref.shard), size, offset);
    if (b.length < size) throw new WdsError(ref.shard, ref.key, `truncated: "${alt}" ends past the end of the shard`);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}

export interface WdsStreamOptions {
  /** shuffle the shard order and the samples (through the buffer); false: file order */
  shuffle: boolean;
  seed: number;
  epoch: number;
  /** samples held by the shuffle buffer (default 1000; refs only, a few hundred bytes each) */
  buffer?: number;
  /** extensions every sample must have (as WdsReadOptions.required) */
  required?: string[];
  /** data parallel: this rank takes every `world`-th sample of the epoch's sequence, from the `rank`-th */
  rank?: number;
  world?: number;
}

/**
 * One epoch of sample refs over a shard list: the shards in an order shuffled by (seed, epoch),
 * each scanned in turn (scanShard: a shard at a time, headers only), the refs passed through a
 * shuffle buffer seeded by (seed, epoch) (webdataset's: fill to `buffer`, then each new sample
 * replaces a random one, which is emitted; the rest drained at the end in random order). The
 * sequence is a function of (shards, seed, epoch, buffer) alone, so skipping its first k refs
 * restores a position exactly; with several ranks each takes its stride of the same sequence.
 */
export function* streamRefs(shards: string[], o: WdsStreamOptions): Generator<WdsRef> {
  const rng = new Rng(hashSeed("wds", o.seed, o.epoch));
  const order = o.shuffle ? rng.shuffle([...shards]) : shards;
  const refs = (function* () {
    for (const s of order) yield* scanShard(s, { required: o.required });
  })();
  const size = o.shuffle ? Math.max(1, o.buffer ?? 1000) : 1;
  const world = o.world ?? 1;
  const rank = o.rank ?? 0;
  let i = 0;
  const mine = () => i++ % world === rank;
  if (size === 1) {
    for (const r of refs) if (mine()) yield r;
    return;
  }
  const buf: WdsRef[] = [];
  for (const r of refs) {
    if (buf.length < size) {
      buf.push(r);
      continue;
    }
    const j = rng.int(size);
    const out = buf[j];
    buf[j] = r;
    if (mine()) yield out;
  }
  rng.shuffle(buf);
  for (const r of buf) if (mine()) yield r;
}

/** The number of samples in a shard list (a header scan of each shard in turn). */
export function countSamples(shards: string[], opts: { required?: string[] } = {}): number {
  let n = 0;
  for (const s of shards) for (const _ of scanShard(s, opts)) n++;
  return n;
}
