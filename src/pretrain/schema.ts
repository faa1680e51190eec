// The schemas of recipes and task options: each shape is written once as a TypeBox schema, which is
// at once the JSON Schema (checked here by ajv, the validator Fastify runs, and published as
// recipes/*.schema.json for editors) and, through `Static<>`, the TypeScript type. `check` validates
// a value, applies the schema's defaults and throws naming the key and what it expected
// (`recipe.train.clip: expected a number > 0 (...), got -1`). Numeric ranges are written with `num`
// (`int`, `min`, `above`, `max`, `why`: the reason shown in the message).
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Type, type TSchema, type Static, type NumberOptions, type TUnion, type TLiteral } from "@sinclair/typebox";

export { Type, type TSchema, type Static };

const ajv = new Ajv({ useDefaults: true, allErrors: false, verbose: true, strict: true, allowUnionTypes: true });
// `why`: an annotation (the reason for a bound), read back by the error message
ajv.addKeyword({ keyword: "why", schemaType: "string" });

export interface Range {
  int?: boolean;
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Values must be strictly greater than this. */
  above?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
  /** Why the bound is there, added to the message. */
  why?: string;
}

/** A number (an integer with `int`) within `r`, with other options (description, default). */
export function num(r: Range = {}, o: NumberOptions = {}) {
  const opts: NumberOptions & { why?: string } = { ...o };
  if (r.min !== undefined) opts.minimum = r.min;
  if (r.above !== undefined) opts.exclusiveMinimum = r.above;
  if (r.max !== undefined) opts.maximum = r.max;
  if (r.why !== undefined) opts.why = r.why;
  return r.int ? Type.Integer(opts) : Type.Number(opts);
}

/** One of these strings (`"a", "b" or "c"` in messages). */
export function choice<const T extends readonly string[]>(values: T, o: { description?: string; default?: T[number] } = {}): TUnion<TLiteral<T[number]>[]> {
  return Type.Union(values.map((v) => Type.Literal(v)), o) as TUnion<TLiteral<T[number]>[]>;
}

/** `T` with the keys `K` (those the schema fills with defaults) no longer optional. */
export type Filled<T, K extends keyof T> = Flat<Omit<T, K> & { [P in K]-?: Exclude<T[P], undefined> }>;
type Flat<T> = { [K in keyof T]: T[K] };

/** A ratio in [0, 1]. */
export const RATIO: Range = { min: 0, max: 1 };
/** A loss weight. */
export const WEIGHT: Range = { min: 0, max: 1e4 };
/** A count: an integer >= 0. */
export const COUNT: Range = { int: true, min: 0 };

const validators = new WeakMap<TSchema, ValidateFunction>();

/** The compiled validator of a schema (compiled once). */
function compiled(schema: TSchema): ValidateFunction {
  let v = validators.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    validators.set(schema, v);
  }
  return v;
}

export interface CheckOptions {
  /** The words of an unknown-key message (default "unknown key"; e.g. "unknown key for vqa"). */
  unknownKey?: string;
}

/**
 * Checks `value` against `schema` (the schema's defaults filled in, in place) and returns it typed;
 * throws `<where><key path>: <what was expected>, got <value>` at the first error.
 */
export function check<T extends TSchema>(schema: T, value: unknown, where: string, o: CheckOptions = {}): Static<T> {
  const v = compiled(schema);
  if (!v(value)) throw new Error(schemaError(v.errors ?? [], where, o));
  return value as Static<T>;
}

/** `/data/sources/0/name` → `.data.sources[0].name`. */
function keyPath(pointer: string): string {
  return pointer.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~")).map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("");
}

function schemaError(errors: ErrorObject[], where: string, o: CheckOptions): string {
  // with allErrors off, validation stops at the first failing keyword; a union (anyOf) reports its
  // branches' errors first and itself last, so the last error is the one about the value as a whole
  const e = errors[errors.length - 1];
  if (!e) return `${where}: invalid`;
  const at = `${where}${keyPath(e.instancePath)}`;
  if (e.keyword === "additionalProperties") {
    const allowed = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
    return `${at}.${e.params.additionalProperty}: ${o.unknownKey ?? "unknown key"} (allowed: ${allowed.join(", ")})`;
  }
  if (e.keyword === "required") return `${at}.${e.params.missingProperty}: required`;
  const s = e.parentSchema as Record<string, unknown>;
  const why = typeof s?.why === "string" ? ` (${s.why})` : "";
  return `${at}: expected ${describe(s)}${why}, got ${JSON.stringify(e.data)}`;
}

const list = (xs: string[]) => (xs.length <= 1 ? xs.join("") : `${xs.slice(0, -1).join(", ")} or ${xs[xs.length - 1]}`);

/** What a schema accepts, in words ("an integer >= 1 and <= 1024", `"fp32", "bf16" or "fp16"`, "a list of strings"). */
export function describe(s: Record<string, unknown> | undefined): string {
  if (!s) return "a valid value";
  if (typeof s.title === "string") return s.title;
  if ("const" in s) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return list(s.enum.map((x) => JSON.stringify(x)));
  if (Array.isArray(s.anyOf) || Array.isArray(s.oneOf)) {
    const branches = (s.anyOf ?? s.oneOf) as Record<string, unknown>[];
    if (branches.every((b) => "const" in b)) return list(branches.map((b) => JSON.stringify(b.const)));
    return list(branches.map(describe));
  }
  switch (s.type) {
    case "integer": case "number": {
      const lo = s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : s.minimum !== undefined ? `>= ${s.minimum}` : "";
      const hi = s.maximum !== undefined ? `<= ${s.maximum}` : "";
      return `${s.type === "integer" ? "an integer" : "a number"}${lo || hi ? ` ${[lo, hi].filter(Boolean).join(" and ")}` : ""}`;
    }
    case "string": return s.pattern !== undefined ? `a string matching /${s.pattern}/` : s.minLength ? "a non-empty string" : "a string";
    case "boolean": return "a boolean";
    case "null": return "null";
    case "array": {
      const items = s.items as Record<string, unknown> | undefined;
      const of = items?.type === "string" ? " of strings" : items?.type === "number" || items?.type === "integer" ? " of numbers" : items?.type === "object" ? " of objects" : "";
      return `${s.minItems ? "a non-empty list" : "a list"}${of}`;
    }
    case "object": return "an object";
    default: return "a valid value";
  }
}
