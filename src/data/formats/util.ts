// Shared helpers for the dataset-format readers: file access with clear errors,
// per-record validation, and the skipInvalid policy.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { writingTo } from "../../engine/serialize/atomic.ts";

export type Json = Record<string, unknown>;

export interface ReadOptions {
  /** Skip malformed records (counted in `skipped`) instead of throwing. */
  skipInvalid?: boolean;
}

export interface ReadResult<T> {
  records: T[];
  skipped: number;
}

/** A validation failure inside one record; the reader adds file and record context. */
export class FieldError extends Error {}

/** A malformed record, with the file, record index and id (when known). */
export class FormatError extends Error {
  constructor(readonly file: string, readonly record: number, readonly id: string | undefined, detail: string) {
    super(`${file}: record ${record}${id ? ` (${id})` : ""}: ${detail}`);
  }
}

export function readText(path: string): string {
  if (!existsSync(path)) throw new Error(`${path}: file not found`);
  return readFileSync(path, "utf8");
}

export function readJson(path: string): unknown {
  const text = readText(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: invalid JSON: ${(e as Error).message}`);
  }
}

export function writeText(path: string, text: string): void {
  writingTo(path, () => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  });
}

export function writeJson(path: string, data: unknown): void {
  writeText(path, JSON.stringify(data));
}

/** Stands in for a record that could not even be parsed (e.g. a bad JSONL line). */
export class InvalidItem {
  constructor(readonly reason: string) {}
}

/** Non-empty lines of a JSONL file, parsed; a line that is not JSON becomes an InvalidItem. */
export function readJsonLines(path: string): unknown[] {
  const out: unknown[] = [];
  readText(path).split("\n").forEach((text, i) => {
    if (text.trim() === "") return;
    try {
      out.push(JSON.parse(text));
    } catch (e) {
      out.push(new InvalidItem(`line ${i + 1}: invalid JSON: ${(e as Error).message}`));
    }
  });
  return out;
}

export function writeJsonLines(path: string, rows: unknown[]): void {
  writeText(path, rows.map((r) => JSON.stringify(r) + "\n").join(""));
}

/** The top-level value as an array, or a list field of a top-level object. */
export function topArray(path: string, data: unknown, field?: string): unknown[] {
  const value = field === undefined ? data : isObject(data) ? data[field] : undefined;
  if (!Array.isArray(value)) {
    throw new Error(`${path}: expected ${field === undefined ? "a JSON array" : `an object with a list "${field}"`}`);
  }
  return value;
}

export function topObject(path: string, data: unknown): Json {
  if (!isObject(data)) throw new Error(`${path}: expected a JSON object`);
  return data;
}

export const isObject = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x);

/** How a record names itself in errors, e.g. idLabel("question_id") -> "question_id 42". */
export function idLabel(...fields: string[]): (raw: unknown) => string | undefined {
  return (raw) => {
    if (!isObject(raw)) return undefined;
    for (const f of fields) {
      const v = raw[f];
      if (typeof v === "string" || typeof v === "number") return `${f} ${v}`;
    }
    return undefined;
  };
}

/**
 * Validate every raw record with `parse`; a FieldError (or any Error) becomes a FormatError
 * naming file, record index and id, or is counted and skipped under skipInvalid.
 */
export function parseRecords<T>(
  file: string,
  items: unknown[],
  parse: (rec: Json, index: number) => T,
  opts: ReadOptions & { id?: (raw: unknown) => string | undefined } = {},
): ReadResult<T> {
  const records: T[] = [];
  let skipped = 0;
  items.forEach((raw, i) => {
    try {
      if (raw instanceof InvalidItem) throw new FieldError(raw.reason);
      if (!isObject(raw)) throw new FieldError("not a JSON object");
      records.push(parse(raw, i));
    } catch (e) {
      if (!(e instanceof FieldError)) throw e;
      if (opts.skipInvalid) skipped++;
      else throw new FormatError(file, i, opts.id?.(raw), e.message);
    }
  });
  return { records, skipped };
}

// ---- field validators: throw FieldError naming the field ----

function field(o: Json, name: string): unknown {
  if (!(name in o) || o[name] === undefined) throw new FieldError(`missing field "${name}"`);
  return o[name];
}

const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);
const wrongType = (name: string, want: string, v: unknown) =>
  new FieldError(`field "${name}" should be ${want}, got ${typeName(v)}`);

export function str(o: Json, name: string): string {
  const v = field(o, name);
  if (typeof v !== "string") throw wrongType(name, "a string", v);
  return v;
}

/**
 * A file name relative to an image folder: no absolute path, no `..` segment, no NUL. Readers
 * join it to the folder, so "../../etc/passwd" would read outside it.
 */
export function relPath(o: Json, name: string): string {
  const v = str(o, name);
  if (v === "" || v.includes("\0") || /^([/\\]|[A-Za-z]:)/.test(v) || v.split(/[/\\]/).includes("..")) {
    throw new FieldError(`field "${name}" should be a file name inside the image folder (no "..", not absolute), got ${JSON.stringify(v.slice(0, 200))}`);
  }
  return v;
}

export function num(o: Json, name: string): number {
  const v = field(o, name);
  if (typeof v !== "number" || !Number.isFinite(v)) throw wrongType(name, "a number", v);
  return v;
}

export function int(o: Json, name: string): number {
  const v = num(o, name);
  if (!Number.isInteger(v)) throw new FieldError(`field "${name}" should be an integer, got ${v}`);
  return v;
}

export function bool(o: Json, name: string): boolean {
  const v = field(o, name);
  if (typeof v !== "boolean") throw wrongType(name, "a boolean", v);
  return v;
}

export function list(o: Json, name: string): unknown[] {
  const v = field(o, name);
  if (!Array.isArray(v)) throw wrongType(name, "a list", v);
  return v;
}

export function obj(o: Json, name: string): Json {
  const v = field(o, name);
  if (!isObject(v)) throw wrongType(name, "an object", v);
  return v;
}

export function strList(o: Json, name: string): string[] {
  return list(o, name).map((v, i) => {
    if (typeof v !== "string") throw wrongType(`${name}[${i}]`, "a string", v);
    return v;
  });
}

export function intList(o: Json, name: string): number[] {
  return list(o, name).map((v, i) => {
    if (typeof v !== "number" || !Number.isInteger(v)) throw wrongType(`${name}[${i}]`, "an integer", v);
    return v;
  });
}

/** An {answer: score} map with finite numeric scores. */
export function scoreMap(o: Json, name: string): Record<string, number> {
  const m = obj(o, name);
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== "number" || !Number.isFinite(v)) throw wrongType(`${name}.${k}`, "a number", v);
  }
  return m as Record<string, number>;
}

/** A copy without the keys whose value is undefined (optional fields that were absent). */
export function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Run a validator only if the field is present. */
export function optional<T>(o: Json, name: string, get: (o: Json, name: string) => T): T | undefined {
  return o[name] === undefined ? undefined : get(o, name);
}

/** Validate a nested list of objects, naming the element in errors, e.g. answers[3]: ... */
export function nested<T>(o: Json, name: string, parse: (rec: Json) => T): T[] {
  return list(o, name).map((v, i) => {
    if (!isObject(v)) throw new FieldError(`${name}[${i}] is not an object`);
    try {
      return parse(v);
    } catch (e) {
      if (e instanceof FieldError) throw new FieldError(`${name}[${i}]: ${e.message}`);
      throw e;
    }
  });
}
