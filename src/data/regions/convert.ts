// obj36 TSV → `.regions` store (`vlp data convert`), with the row checks a TSV gets on its way in.
import fs from "node:fs";
import { basename } from "node:path";
import { readObj36TsvRows, rawRowShape, scanTsvLines, featureDim, Obj36Error, type Obj36Record } from "../formats/obj36.ts";
import { fromObj36 } from "./features.ts";
import { RegionStoreWriter, type FeatureDtype } from "./store.ts";

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
