// The JSON API's request and response shapes, each written once as a TypeBox schema: the JSON
// schema Fastify validates (with its ajv) and which makes the OpenAPI document at /openapi.json, and
// through `Static<>` its TypeScript type. The route modules in ./routes/ take both from here.
import { Type, type Static, type TProperties, type TSchema } from "@sinclair/typebox";
import { MAX_IMAGE_B64, MAX_TEXT } from "./limits.ts";

// ---------------------------------------------------------------- shared fields

const checkpointField = Type.String({ pattern: "^[A-Za-z0-9._-]{1,128}$", description: "name of a served checkpoint (GET /health lists them); default: the first" });
const imageField = Type.String({ minLength: 1, maxLength: MAX_IMAGE_B64, description: "a PNG, JPEG or WebP image, base64 or a data: URL" });
const textField = Type.String({ minLength: 1, maxLength: MAX_TEXT });
const errorSchema = Type.Object({ statusCode: Type.Optional(Type.Integer()), error: Type.Optional(Type.String()) });
/** The error responses of a route that takes a body. */
export const errors = { 400: errorSchema, 404: errorSchema, 409: errorSchema, 413: errorSchema, 415: errorSchema };
const vector = Type.Array(Type.Number());
/** A reply's fields: all optional (a reply object leaves out what does not apply). */
const reply = <P extends TProperties>(props: P) => Type.Partial(Type.Object(props));
const body = { additionalProperties: false } as const;
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

// ---------------------------------------------------------------- GET /health

export const healthReply = reply({
  status: Type.String(),
  uptime: Type.Number(),
  checkpoints: Type.Array(reply({
    name: Type.String(), kind: Type.String(), task: Type.String(), model: Type.String(),
    imageSize: Type.Integer(), dim: Type.Integer(), layers: Type.Integer(), itc: Type.Boolean(), itm: Type.Boolean(), vqa: Type.Boolean(), vqaAnswers: Type.Integer(),
  })),
  index: nullable(reply({ model: Type.String(), dim: Type.Integer(), dtype: Type.String(), images: Type.Integer(), texts: Type.Integer(), bytes: Type.Integer() })),
  runs: Type.Boolean(),
});
export type HealthReply = Static<typeof healthReply>;

// ---------------------------------------------------------------- POST /embed

export const embedBody = Type.Object({
  texts: Type.Optional(Type.Array(textField, { maxItems: 64 })),
  images: Type.Optional(Type.Array(imageField, { maxItems: 16 })),
  checkpoint: Type.Optional(checkpointField),
}, body);
export type EmbedBody = Static<typeof embedBody>;
export const embedReply = reply({ checkpoint: Type.String(), dim: Type.Integer(), texts: Type.Array(vector), images: Type.Array(vector) });
export type EmbedReply = Static<typeof embedReply>;

// ---------------------------------------------------------------- POST /search, GET /api/index/images

export const searchBody = Type.Object({
  text: Type.Optional(textField),
  image: Type.Optional(imageField),
  k: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
  // an enum (not a union of constants): a bad value is one error that lists the allowed ones
  target: Type.Optional(Type.Unsafe<"images" | "captions">({ type: "string", enum: ["images", "captions"], description: "default: images for a text, captions for an image" })),
}, body);
export type SearchBody = Static<typeof searchBody>;
export const searchReply = reply({
  query: Type.String(), target: Type.String(), indexed: Type.Integer(), ms: Type.Number(),
  results: Type.Array(reply({ rank: Type.Integer(), id: Type.String(), score: Type.Number(), url: Type.String(), text: Type.String(), image: Type.String() })),
});
export type SearchReply = Static<typeof searchReply>;

export const indexImagesQuery = Type.Object({
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 24 })),
}, body);
export type IndexImagesQuery = Static<typeof indexImagesQuery>;
export const indexImagesReply = reply({ total: Type.Integer(), images: Type.Array(reply({ id: Type.String(), url: Type.String() })) });
export type IndexImagesReply = Static<typeof indexImagesReply>;

// ---------------------------------------------------------------- POST /vqa

export const vqaBody = Type.Object({
  image: imageField,
  question: textField,
  k: Type.Optional(Type.Integer({ minimum: 1, maximum: 50, default: 5 })),
  checkpoint: Type.Optional(checkpointField),
}, body);
export type VqaBody = Static<typeof vqaBody>;
export const vqaReply = reply({ checkpoint: Type.String(), question: Type.String(), answers: Type.Array(reply({ answer: Type.String(), score: Type.Number() })) });
export type VqaReply = Static<typeof vqaReply>;

// ---------------------------------------------------------------- POST /itm, POST /attention

export const itmBody = Type.Object({
  image: imageField,
  text: Type.Optional(textField),
  texts: Type.Optional(Type.Array(textField, { minItems: 1, maxItems: 32 })),
  checkpoint: Type.Optional(checkpointField),
}, body);
export type ItmBody = Static<typeof itmBody>;
export const itmReply = reply({ checkpoint: Type.String(), scores: Type.Array(reply({ text: Type.String(), match: Type.Number(), logit: Type.Number() })) });
export type ItmReply = Static<typeof itmReply>;

export const attentionBody = Type.Object({
  image: imageField,
  text: textField,
  layers: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, default: 1 })),
  checkpoint: Type.Optional(checkpointField),
}, body);
export type AttentionBody = Static<typeof attentionBody>;
export const attentionReply = reply({
  checkpoint: Type.String(), tokens: Type.Array(Type.String()), grid: Type.Integer(), layers: Type.Integer(),
  maps: Type.Array(vector), imageShare: vector, match: nullable(Type.Number()),
});
export type AttentionReply = Static<typeof attentionReply>;

// ---------------------------------------------------------------- GET /api/runs, GET /api/runs/metrics

export const runsReply = reply({
  runs: Type.Array(reply({ name: Type.String(), method: nullable(Type.String()), kind: nullable(Type.String()), steps: Type.Integer(), stages: Type.Array(Type.String()) })),
});
export type RunsReply = Static<typeof runsReply>;
export const runMetricsQuery = Type.Object({ run: Type.String({ minLength: 1, maxLength: 300 }) }, body);
export type RunMetricsQuery = Static<typeof runMetricsQuery>;
