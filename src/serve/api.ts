// The JSON API's request and response shapes, each written once: as a JSON schema (which Fastify
// validates and which makes the OpenAPI document at /openapi.json), with its TypeScript type derived
// from the schema by `FromSchema`. The route modules in ./routes/ take both from here.
import { MAX_IMAGE_B64, MAX_TEXT } from "./limits.ts";

/** The TypeScript type of a JSON schema written `as const` (the subset these schemas use). */
export type FromSchema<S> = S extends { readonly nullable: true } ? SchemaBase<S> | null : SchemaBase<S>;
type SchemaBase<S> =
  S extends { readonly enum: readonly (infer E)[] } ? E
  : S extends { readonly type: "string" } ? string
  : S extends { readonly type: "integer" | "number" } ? number
  : S extends { readonly type: "boolean" } ? boolean
  : S extends { readonly type: "array"; readonly items: infer I } ? FromSchema<I>[]
  : S extends { readonly type: "object"; readonly properties: infer P }
    ? SchemaObject<P, S extends { readonly required: readonly (infer R)[] } ? R : never>
  : unknown;
type SchemaObject<P, R> = Flat<
  { -readonly [K in keyof P as K extends R ? K : never]: FromSchema<P[K]> } &
  { -readonly [K in keyof P as K extends R ? never : K]?: FromSchema<P[K]> }
>;
type Flat<T> = { [K in keyof T]: T[K] };

// ---------------------------------------------------------------- shared fields

const checkpointField = { type: "string", pattern: "^[A-Za-z0-9._-]{1,128}$", description: "name of a served checkpoint (GET /health lists them); default: the first" } as const;
const imageField = { type: "string", minLength: 1, maxLength: MAX_IMAGE_B64, description: "a PNG, JPEG or WebP image, base64 or a data: URL" } as const;
const textField = { type: "string", minLength: 1, maxLength: MAX_TEXT } as const;
const errorSchema = { type: "object", properties: { statusCode: { type: "integer" }, error: { type: "string" } } } as const;
/** The error responses of a route that takes a body. */
export const errors = { 400: errorSchema, 404: errorSchema, 409: errorSchema, 413: errorSchema, 415: errorSchema } as const;
const vector = { type: "array", items: { type: "number" } } as const;

// ---------------------------------------------------------------- GET /health

export const healthReply = {
  type: "object",
  properties: {
    status: { type: "string" },
    uptime: { type: "number" },
    checkpoints: {
      type: "array",
      items: {
        type: "object",
        properties: {
          name: { type: "string" }, kind: { type: "string" }, task: { type: "string" }, model: { type: "string" },
          imageSize: { type: "integer" }, dim: { type: "integer" }, layers: { type: "integer" }, itc: { type: "boolean" }, itm: { type: "boolean" }, vqa: { type: "boolean" }, vqaAnswers: { type: "integer" },
        },
      },
    },
    index: { type: "object", nullable: true, properties: { model: { type: "string" }, dim: { type: "integer" }, dtype: { type: "string" }, images: { type: "integer" }, texts: { type: "integer" }, bytes: { type: "integer" } } },
    runs: { type: "boolean" },
  },
} as const;
export type HealthReply = FromSchema<typeof healthReply>;

// ---------------------------------------------------------------- POST /embed

export const embedBody = {
  type: "object", additionalProperties: false,
  properties: { texts: { type: "array", maxItems: 64, items: textField }, images: { type: "array", maxItems: 16, items: imageField }, checkpoint: checkpointField },
} as const;
export type EmbedBody = FromSchema<typeof embedBody>;
export const embedReply = { type: "object", properties: { checkpoint: { type: "string" }, dim: { type: "integer" }, texts: { type: "array", items: vector }, images: { type: "array", items: vector } } } as const;
export type EmbedReply = FromSchema<typeof embedReply>;

// ---------------------------------------------------------------- POST /search, GET /api/index/images

export const searchBody = {
  type: "object", additionalProperties: false,
  properties: {
    text: textField, image: imageField,
    k: { type: "integer", minimum: 1, maximum: 100, default: 10 },
    target: { type: "string", enum: ["images", "captions"], description: "default: images for a text, captions for an image" },
  },
} as const;
export type SearchBody = FromSchema<typeof searchBody>;
export const searchReply = {
  type: "object",
  properties: {
    query: { type: "string" }, target: { type: "string" }, indexed: { type: "integer" }, ms: { type: "number" },
    results: { type: "array", items: { type: "object", properties: { rank: { type: "integer" }, id: { type: "string" }, score: { type: "number" }, url: { type: "string" }, text: { type: "string" }, image: { type: "string" } } } },
  },
} as const;
export type SearchReply = FromSchema<typeof searchReply>;

export const indexImagesQuery = { type: "object", additionalProperties: false, properties: { offset: { type: "integer", minimum: 0, default: 0 }, limit: { type: "integer", minimum: 1, maximum: 200, default: 24 } } } as const;
export type IndexImagesQuery = FromSchema<typeof indexImagesQuery>;
export const indexImagesReply = { type: "object", properties: { total: { type: "integer" }, images: { type: "array", items: { type: "object", properties: { id: { type: "string" }, url: { type: "string" } } } } } } as const;
export type IndexImagesReply = FromSchema<typeof indexImagesReply>;

// ---------------------------------------------------------------- POST /vqa

export const vqaBody = {
  type: "object", additionalProperties: false, required: ["image", "question"],
  properties: { image: imageField, question: textField, k: { type: "integer", minimum: 1, maximum: 50, default: 5 }, checkpoint: checkpointField },
} as const;
export type VqaBody = FromSchema<typeof vqaBody>;
export const vqaReply = { type: "object", properties: { checkpoint: { type: "string" }, question: { type: "string" }, answers: { type: "array", items: { type: "object", properties: { answer: { type: "string" }, score: { type: "number" } } } } } } as const;
export type VqaReply = FromSchema<typeof vqaReply>;

// ---------------------------------------------------------------- POST /itm, POST /attention

export const itmBody = {
  type: "object", additionalProperties: false, required: ["image"],
  properties: { image: imageField, text: textField, texts: { type: "array", minItems: 1, maxItems: 32, items: textField }, checkpoint: checkpointField },
} as const;
export type ItmBody = FromSchema<typeof itmBody>;
export const itmReply = { type: "object", properties: { checkpoint: { type: "string" }, scores: { type: "array", items: { type: "object", properties: { text: { type: "string" }, match: { type: "number" }, logit: { type: "number" } } } } } } as const;
export type ItmReply = FromSchema<typeof itmReply>;

export const attentionBody = {
  type: "object", additionalProperties: false, required: ["image", "text"],
  properties: { image: imageField, text: textField, layers: { type: "integer", minimum: 1, maximum: 64, default: 1 }, checkpoint: checkpointField },
} as const;
export type AttentionBody = FromSchema<typeof attentionBody>;
export const attentionReply = {
  type: "object",
  properties: {
    checkpoint: { type: "string" }, tokens: { type: "array", items: { type: "string" } }, grid: { type: "integer" }, layers: { type: "integer" },
    maps: { type: "array", items: vector }, imageShare: vector, match: { type: "number", nullable: true },
  },
} as const;
export type AttentionReply = FromSchema<typeof attentionReply>;

// ---------------------------------------------------------------- GET /api/runs, GET /api/runs/metrics

export const runsReply = { type: "object", properties: { runs: { type: "array", items: { type: "object", properties: { name: { type: "string" }, method: { type: "string", nullable: true }, kind: { type: "string", nullable: true }, steps: { type: "integer" }, stages: { type: "array", items: { type: "string" } } } } } } } as const;
export type RunsReply = FromSchema<typeof runsReply>;
export const runMetricsQuery = { type: "object", additionalProperties: false, required: ["run"], properties: { run: { type: "string", minLength: 1, maxLength: 300 } } } as const;
export type RunMetricsQuery = FromSchema<typeof runMetricsQuery>;
