/**
 * An obj36 TSV read at random: a byte-offset index of its rows (`<tsv>.idx.json`, `buildTsvIndex`)
 * and `TsvRegionReader`, whose `get` is one positioned read and one row parse.
 */
import fs from "node:fs";
import { parseObj36Row, rawRowShape, scanTsvLines, type Obj36Record } from "../formats/obj36.ts";
import { fromObj36, type RegionFeatures, type RegionSource } from "./features.ts";
import { readFully } from "./io.ts";

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
