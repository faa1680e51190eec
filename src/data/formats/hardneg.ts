// ViLBERT-style hard negative pool (used by LXMERT-S retrieval fine-tuning), stored as JSON:
// {train_image_list: [image ids], train_hard_pool: [[indices into train_image_list], ...]},
// row i of train_hard_pool holding the hard negative images of train_image_list[i].

import { type ReadOptions, FieldError, FormatError, parseRecords, readJson, topArray, writeJson } from "./util.ts";

export type ImageId = string | number;

export interface HardNegatives { train_image_list: ImageId[]; train_hard_pool: number[][] }

function checkRow(row: unknown, n: number): number[] {
  if (!Array.isArray(row)) throw new FieldError("hard pool row is not a list");
  row.forEach((v, j) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= n) {
      throw new FieldError(`index ${JSON.stringify(v)} at position ${j} is not an image index in [0, ${n})`);
    }
  });
  return row as number[];
}

function imageList(path: string, data: unknown): ImageId[] {
  return topArray(path, data, "train_image_list").map((id, i) => {
    if (typeof id !== "string" && typeof id !== "number") throw new Error(`${path}: train_image_list[${i}] is not an image id`);
    return id;
  });
}

/**
 * Rows are records (record i = image i). Under skipInvalid a bad row becomes an empty pool,
 * keeping rows aligned with train_image_list.
 */
export function readHardNegatives(path: string, opts: ReadOptions = {}): HardNegatives & { skipped: number } {
  const data = readJson(path);
  const images = imageList(path, data);
  const rows = topArray(path, data, "train_hard_pool");
  if (rows.length !== images.length) {
    throw new Error(`${path}: train_hard_pool has ${rows.length} rows but train_image_list has ${images.length} images`);
  }
  const pool: number[][] = rows.map(() => []);
  const res = parseRecords(path, rows.map((row, i) => ({ row, i })), ({ row, i }) => {
    pool[i as number] = checkRow(row, images.length);
  }, { ...opts, id: (raw) => `image ${images[(raw as { i: number }).i]}` });
  return { train_image_list: images, train_hard_pool: pool, skipped: res.skipped };
}

/** Validates before writing, so a bad pool never reaches disk. */
export function writeHardNegatives(path: string, hn: HardNegatives): void {
  const n = hn.train_image_list.length;
  if (hn.train_hard_pool.length !== n) throw new Error(`${path}: ${hn.train_hard_pool.length} pool rows for ${n} images`);
  hn.train_hard_pool.forEach((row, i) => {
    try {
      checkRow(row, n);
    } catch (e) {
      throw new FormatError(path, i, `image ${hn.train_image_list[i]}`, (e as Error).message);
    }
  });
  writeJson(path, { train_image_list: hn.train_image_list, train_hard_pool: hn.train_hard_pool });
}
