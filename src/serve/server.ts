// The HTTP server of `vlp serve` (Fastify): the JSON API over the served checkpoints and the
// index, the web app (static files of src/serve/web), indexed images and the training-run
// dashboard. Bodies are validated by JSON schemas (which also make the OpenAPI document at
// /openapi.json); every failure a client can cause is a 4xx with a message naming the field.
//
// File system reach from a request: the web folder (through @fastify/static, which refuses to leave
// its root), the index's image folder when the operator allowed it (--images: every file is
// resolved through its symlinks and must stay inside; paths with a ".." segment are refused before
// routing), and run names looked up in the list found by scanning the runs folder.
// Limits: decoded image pixels per request and across requests in flight (src/serve/guard.ts);
// optionally a bearer token and, on non-loopback binds, an allow-list of Host names.
import { createReadStream, existsSync, readdirSync } from "node:fs";
import sharp from "sharp";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance, type FastifyError } from "fastify";
import fastifyStatic from "@fastify/static";
import fastifySwagger from "@fastify/swagger";
import { Inference, RequestError, MAX_IMAGE_PIXELS, decodeForModel, imageBytesFromBase64, probeImage, type ServedModel } from "./model.ts";
import { PixelBudget, checkHost, checkToken, confinedImage, isInside, realDir } from "./guard.ts";
import type { VectorIndex } from "./vindex.ts";
import type { AutocastDType } from "../engine/dtype.ts";
import { tensor, tidy } from "../engine/index.ts";
import { RunsFolder } from "./runs.ts";

export interface ServeOptions {
  /** Served checkpoints; the first is the default for every route but /vqa. */
  models: ServedModel[];
  /** The index for /search, built with the encoders of `indexModel` (default: the first model). */
  index?: VectorIndex | null;
  indexModel?: string;
  /** Folder of training runs for the dashboard (null: no dashboard). */
  runsRoot?: string | null;
  /** Largest request body in bytes (default 16 MiB). */
  bodyLimit?: number;
  logger?: boolean;
  /**
   * The folder the operator allows images to be served from (`--images`): the index's image folder
   * must lie inside it. Absent or null: /images/ is not served.
   */
  imagesRoot?: string | null;
  /** Required on every request but the web app's own files: `Authorization: Bearer <token>` (or the web app's cookie). */
  token?: string | null;
  /** Host header names answered (lowercase, no port); null or absent: any (a loopback bind). */
  allowedHosts?: string[] | null;
  /** Decoded image pixels accepted in one request (default 2 x 4096 x 4096). */
  maxRequestPixels?: number;
  /** Decoded image pixels across all requests in flight (default 4 x 4096 x 4096); beyond it: 503 + Retry-After. */
  maxInflightPixels?: number;
  /** Autocast dtype of every forward pass (`--precision`); null or absent: float32. */
  precision?: AutocastDType | null;
}

export const DEFAULT_BODY_LIMIT = 16 * 1024 * 1024;
const WEB_DIR = fileURLToPath(new URL("./web/", import.meta.url));
/** Base64 of an image: 12M characters = 9 MB of image. */
const MAX_IMAGE_B64 = 12_000_000;
const MAX_TEXT = 1000;

const checkpointField = { type: "string", pattern: "^[A-Za-z0-9._-]{1,128}$", description: "name of a served checkpoint (GET /health lists them); default: the first" };
const imageField = { type: "string", minLength: 1, maxLength: MAX_IMAGE_B64, description: "a PNG, JPEG or WebP image, base64 or a data: URL" };
const textField = { type: "string", minLength: 1, maxLength: MAX_TEXT };
const errorSchema = { type: "object", properties: { statusCode: { type: "integer" }, error: { type: "string" } } };
const errors = { 400: errorSchema, 404: errorSchema, 409: errorSchema, 413: errorSchema, 415: errorSchema };
const vector = { type: "array", items: { type: "number" } };

/** Encode a relative id ("a/b c.png") as the URL of the served image. */
export const DEFAULT_REQUEST_PIXELS = 2 * MAX_IMAGE_PIXELS;
export const DEFAULT_INFLIGHT_PIXELS = 4 * MAX_IMAGE_PIXELS;

export const imageUrl = (id: string) => `/images/${id.split("/").map(encodeURIComponent).join("/")}`;

export async function buildServer(o: ServeOptions): Promise<FastifyInstance> {
  if (o.models.length === 0) throw new Error("buildServer: no model to serve");
  const engines = new Map(o.models.map((m) => [m.name, new Inference(m, o.precision ?? null)]));
  if (engines.size !== o.models.length) throw new Error(`buildServer: two served checkpoints have the same name (${o.models.map((m) => m.name).join(", ")})`);
  const first = engines.get(o.models[0].name)!;
  const index = o.index ?? null;
  const indexEngine = index ? engines.get(o.indexModel ?? o.models[0].name) : undefined;
  if (index && !indexEngine) throw new Error(`buildServer: index model ${o.indexModel} is not served`);
  if (index && indexEngine && indexEngine.dim !== index.dim) throw new Error(`buildServer: the index has ${index.dim}-d vectors, checkpoint ${indexEngine.served.name} makes ${indexEngine.dim}-d ones`);
  const runs = o.runsRoot ? new RunsFolder(o.runsRoot) : null;
  const started = Date.now();
  const budget = new PixelBudget(o.maxRequestPixels ?? DEFAULT_REQUEST_PIXELS, o.maxInflightPixels ?? DEFAULT_INFLIGHT_PIXELS);
  // libvips' operation cache would keep decoded images alive after their request
  sharp.cache(false);
  // the image folder: the index's, resolved, and inside what the operator allowed
  let imageRoot: string | null = null;
  if (o.imagesRoot && index?.manifest.imagesRoot && existsSync(index.manifest.imagesRoot)) {
    const allowed = realDir(o.imagesRoot, "--images");
    imageRoot = realDir(index.manifest.imagesRoot, "the index's image folder");
    if (!isInside(imageRoot, allowed)) throw new Error(`buildServer: the index's images are under ${imageRoot}, outside the folder allowed by --images ${allowed}: refused`);
  }
  const publicFiles = new Set(["/", ...readdirSync(WEB_DIR).map((f) => `/${f}`)]);
  const hosts = o.allowedHosts ? new Set(o.allowedHosts.map((h) => h.toLowerCase())) : null;

  const app = Fastify({
    logger: o.logger ?? false,
    bodyLimit: o.bodyLimit ?? DEFAULT_BODY_LIMIT,
    requestTimeout: 60_000,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    schemaErrorFormatter: (errs, dataVar) => {
      const e = errs[0];
      const where = `${dataVar}${e.instancePath.replace(/\//g, ".")}`;
      const extra = e.keyword === "additionalProperties" ? ` (${JSON.stringify((e.params as { additionalProperty: string }).additionalProperty)})`
        : e.keyword === "enum" ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(", ")})` : "";
      return new Error(`${where} ${e.message}${extra}`);
    },
  });
  // JSON only: text/plain bodies (Fastify's other default) are refused with 415
  app.removeContentTypeParser("text/plain");

  app.addHook("onRequest", async (req) => {
    const path = req.url.split("?")[0];
    if (hosts) checkHost(hosts, req.headers.host);
    // the web app's own files hold no data; everything else needs the token
    if (o.token && !publicFiles.has(path)) checkToken(o.token, req.headers);
    let decoded: string;
    try {
      decoded = decodeURIComponent(path);
    } catch {
      throw new RequestError(400, `malformed URL encoding in ${JSON.stringify(path.slice(0, 200))}`);
    }
    if (decoded.split(/[/\\]/).includes("..") || decoded.includes("\0")) throw new RequestError(400, `path ${JSON.stringify(path.slice(0, 200))} has a ".." segment: refused`);
  });

  app.setErrorHandler((err: FastifyError | RequestError, req, reply) => {
    let status = 500;
    let message = err.message;
    if (err instanceof RequestError) {
      status = err.status;
      reply.headers(err.headers);
    }
    else if ((err as FastifyError).validation) status = 400;
    else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! >= 400 && (err as FastifyError).statusCode! < 500) {
      status = (err as FastifyError).statusCode!;
      const code = (err as FastifyError).code;
      if (code === "FST_ERR_CTP_BODY_TOO_LARGE") message = `request body larger than the ${(o.bodyLimit ?? DEFAULT_BODY_LIMIT) / 1048576} MiB accepted`;
      if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") message = `unsupported content type ${JSON.stringify(req.headers["content-type"] ?? "")}: send application/json`;
      if (code === "FST_ERR_CTP_INVALID_JSON_BODY" || code === "FST_ERR_CTP_EMPTY_JSON_BODY") message = `body is not valid JSON (${err.message})`;
    } else {
      req.log.error(err);
      message = `internal error in ${req.method} ${req.routeOptions.url ?? req.url}: ${err.message}`;
    }
    reply.code(status).send({ statusCode: status, error: message });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ statusCode: 404, error: `no route ${req.method} ${req.url.split("?")[0].slice(0, 200)}` });
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: "3.0.3",
      info: { title: "vlpkit serve", version: "1", description: "Embeddings, search, VQA, image-text matching and attention maps of a VLMo checkpoint. Images travel as base64 (or data: URLs) inside JSON bodies." },
    },
  });

  const pick = (name: string | undefined): Inference => {
    if (name === undefined) return first;
    const e = engines.get(name);
    if (!e) throw new RequestError(404, `unknown checkpoint ${JSON.stringify(name)} (served: ${[...engines.keys()].join(", ")})`);
    return e;
  };
  const vqaEngine = (name: string | undefined): Inference => {
    if (name !== undefined) {
      const e = pick(name);
      if (!e.hasVqa) throw new RequestError(409, `checkpoint ${name} has no VQA head; ${vqaHint()}`);
      return e;
    }
    const e = [...engines.values()].find((x) => x.hasVqa);
    if (!e) throw new RequestError(409, `no served checkpoint has a VQA head; ${vqaHint()}`);
    return e;
  };
  const vqaHint = () => `fine-tune one with \`vlp finetune vqa --from ${first.served.dir} --recipe recipes/finetune/vqa-tiny.json --out <dir>\` and start \`vlp serve --checkpoint ${first.served.dir} --vqa <dir>\``;
  /** A request's images, decoded one at a time within the pixel budget (their sizes read from the headers first). */
  const images = async (e: Inference, list: [b64: string, field: string][]): Promise<Float32Array[]> => {
    const bytes = list.map(([b64, field]) => imageBytesFromBase64(b64, field));
    const heads = await Promise.all(bytes.map((b, i) => probeImage(b, list[i][1])));
    const pixels = heads.reduce((n, h) => n + h.width * h.height, 0);
    return budget.with(pixels, "body", async () => {
      const out: Float32Array[] = [];
      for (let i = 0; i < bytes.length; i++) out.push(await decodeForModel(bytes[i], e.imageSize, list[i][1]));
      return out;
    });
  };
  const image = async (e: Inference, b64: string, field: string) => (await images(e, [[b64, field]]))[0];

  app.get("/health", {
    schema: {
      summary: "Liveness and what is served",
      response: {
        200: {
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
        },
      },
    },
  }, async () => ({
    status: "ok",
    uptime: (Date.now() - started) / 1000,
    checkpoints: [...engines.values()].map((e) => ({
      name: e.served.name, kind: e.served.info.kind, task: e.served.info.task ?? "", model: e.model.config.name, imageSize: e.imageSize, dim: e.dim, layers: e.model.numLayers,
      itc: e.hasItc, itm: e.hasItm, vqa: e.hasVqa, vqaAnswers: e.served.labels?.length ?? 0,
    })),
    index: index ? { model: indexEngine!.served.name, dim: index.dim, dtype: index.dtype, images: index.part("image")?.count ?? 0, texts: index.part("text")?.count ?? 0, bytes: index.bytes } : null,
    runs: runs !== null,
  }));

  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  app.post<{ Body: { texts?: string[]; images?: string[]; checkpoint?: string } }>("/embed", {
    schema: {
      summary: "Normalised embeddings from the dual encoder (ITC heads)",
      body: {
        type: "object", additionalProperties: false,
        properties: { texts: { type: "array", maxItems: 64, items: textField }, images: { type: "array", maxItems: 16, items: imageField }, checkpoint: checkpointField },
      },
      response: { 200: { type: "object", properties: { checkpoint: { type: "string" }, dim: { type: "integer" }, texts: { type: "array", items: vector }, images: { type: "array", items: vector } } }, ...errors },
    },
  }, async (req) => {
    const b = req.body;
    if (!b.texts?.length && !b.images?.length) throw new RequestError(400, "body: give texts and/or images");
    const e = pick(b.checkpoint);
    const imgs = await images(e, (b.images ?? []).map((s, i) => [s, `body.images[${i}]`]));
    return { checkpoint: e.served.name, dim: e.dim, texts: e.embedTexts(b.texts ?? []).map((v) => Array.from(v)), images: e.embedImages(imgs).map((v) => Array.from(v)) };
  });

  app.post<{ Body: { text?: string; image?: string; k?: number; target?: "images" | "captions" } }>("/search", {
    schema: {
      summary: "Exact top-k search over the index: a text finds images, an image finds captions (or images with target)",
      body: {
        type: "object", additionalProperties: false,
        properties: {
          text: textField, image: imageField,
          k: { type: "integer", minimum: 1, maximum: 100, default: 10 },
          target: { type: "string", enum: ["images", "captions"], description: "default: images for a text, captions for an image" },
        },
      },
      response: {
        200: {
          type: "object",
          properties: {
            query: { type: "string" }, target: { type: "string" }, indexed: { type: "integer" }, ms: { type: "number" },
            results: { type: "array", items: { type: "object", properties: { rank: { type: "integer" }, id: { type: "string" }, score: { type: "number" }, url: { type: "string" }, text: { type: "string" }, image: { type: "string" } } } },
          },
        },
        ...errors,
      },
    },
  }, async (req) => {
    const b = req.body;
    if ((b.text === undefined) === (b.image === undefined)) throw new RequestError(400, "body: give exactly one of text and image");
    if (!index || !indexEngine) throw new RequestError(409, "no index is loaded: start `vlp serve` with --index <dir> (build one with `vlp index build`)");
    const target = b.target ?? (b.text !== undefined ? "images" : "captions");
    const part = index.part(target === "images" ? "image" : "text");
    if (!part || part.count === 0) throw new RequestError(409, `the index has no ${target}${target === "captions" ? " (build it from a dataset's captions: `vlp index build --images <karpathy json or world>`)" : ""}`);
    const t0 = performance.now();
    const q = b.text !== undefined ? indexEngine.embedTexts([b.text])[0] : indexEngine.embedImages([await image(indexEngine, b.image!, "body.image")])[0];
    const hits = tidy(() => part.search(tensor(q, { shape: [1, q.length] }), b.k ?? 10)[0]);
    const results = hits.map((h, r) => {
      if (target === "images") return { rank: r + 1, id: h.id, score: h.score, url: imageUrl(h.id) };
      const img = h.id.replace(/#\d+$/, "");
      return { rank: r + 1, id: h.id, score: h.score, text: h.text ?? "", image: img, url: imageUrl(img) };
    });
    return { query: b.text !== undefined ? "text" : "image", target, indexed: part.count, ms: performance.now() - t0, results };
  });

  app.post<{ Body: { image: string; question: string; k?: number; checkpoint?: string } }>("/vqa", {
    schema: {
      summary: "Answers to a question about an image (a VQA fine-tuned checkpoint), with sigmoid scores",
      body: {
        type: "object", additionalProperties: false, required: ["image", "question"],
        properties: { image: imageField, question: textField, k: { type: "integer", minimum: 1, maximum: 50, default: 5 }, checkpoint: checkpointField },
      },
      response: { 200: { type: "object", properties: { checkpoint: { type: "string" }, question: { type: "string" }, answers: { type: "array", items: { type: "object", properties: { answer: { type: "string" }, score: { type: "number" } } } } } }, ...errors },
    },
  }, async (req) => {
    const b = req.body;
    const e = vqaEngine(b.checkpoint);
    const px = await image(e, b.image, "body.image");
    return { checkpoint: e.served.name, question: b.question, answers: e.vqa(px, b.question, b.k ?? 5) };
  });

  app.post<{ Body: { image: string; text?: string; texts?: string[]; checkpoint?: string } }>("/itm", {
    schema: {
      summary: "Image-text match probability from the fusion encoder's ITM head (for re-ranking candidates)",
      body: {
        type: "object", additionalProperties: false, required: ["image"],
        properties: { image: imageField, text: textField, texts: { type: "array", minItems: 1, maxItems: 32, items: textField }, checkpoint: checkpointField },
      },
      response: { 200: { type: "object", properties: { checkpoint: { type: "string" }, scores: { type: "array", items: { type: "object", properties: { text: { type: "string" }, match: { type: "number" }, logit: { type: "number" } } } } } }, ...errors },
    },
  }, async (req) => {
    const b = req.body;
    if ((b.text === undefined) === (b.texts === undefined)) throw new RequestError(400, "body: give exactly one of text and texts");
    const texts = b.texts ?? [b.text!];
    const e = pick(b.checkpoint);
    const px = await image(e, b.image, "body.image");
    const s = e.itm(px, texts);
    return { checkpoint: e.served.name, scores: texts.map((t, i) => ({ text: t, ...s[i] })) };
  });

  app.post<{ Body: { image: string; text: string; layers?: number; checkpoint?: string } }>("/attention", {
    schema: {
      summary: "Fusion-encoder attention from each text token to the image patches (heads and the last `layers` layers averaged)",
      body: {
        type: "object", additionalProperties: false, required: ["image", "text"],
        properties: { image: imageField, text: textField, layers: { type: "integer", minimum: 1, maximum: 64, default: 1 }, checkpoint: checkpointField },
      },
      response: {
        200: {
          type: "object",
          properties: {
            checkpoint: { type: "string" }, tokens: { type: "array", items: { type: "string" } }, grid: { type: "integer" }, layers: { type: "integer" },
            maps: { type: "array", items: vector }, imageShare: vector, match: { type: "number", nullable: true },
          },
        },
        ...errors,
      },
    },
  }, async (req) => {
    const b = req.body;
    const e = pick(b.checkpoint);
    const px = await image(e, b.image, "body.image");
    const a = e.attention(px, b.text, b.layers ?? 1);
    return { checkpoint: e.served.name, ...a, match: e.hasItm ? e.itm(px, [b.text])[0].match : null };
  });

  app.get<{ Querystring: { offset?: number; limit?: number } }>("/api/index/images", {
    // query strings arrive as text and the schemas do not coerce: decimal integers become numbers here
    preValidation: async (req) => {
      const q = req.query as Record<string, unknown>;
      for (const k of ["offset", "limit"]) if (typeof q[k] === "string" && /^\d{1,9}$/.test(q[k] as string)) q[k] = Number(q[k]);
    },
    schema: {
      summary: "Indexed images, in index order (for picking an example)",
      querystring: { type: "object", additionalProperties: false, properties: { offset: { type: "integer", minimum: 0, default: 0 }, limit: { type: "integer", minimum: 1, maximum: 200, default: 24 } } },
      response: { 200: { type: "object", properties: { total: { type: "integer" }, images: { type: "array", items: { type: "object", properties: { id: { type: "string" }, url: { type: "string" } } } } } }, ...errors },
    },
  }, async (req) => {
    const part = index?.part("image");
    if (!part) return { total: 0, images: [] };
    const off = req.query.offset ?? 0;
    const ids = part.ids.slice(off, off + (req.query.limit ?? 24));
    return { total: part.count, images: ids.map((id) => ({ id, url: imageUrl(id) })) };
  });

  app.get("/api/runs", {
    schema: {
      summary: "Training runs found under the runs folder",
      response: { 200: { type: "object", properties: { runs: { type: "array", items: { type: "object", properties: { name: { type: "string" }, method: { type: "string", nullable: true }, kind: { type: "string", nullable: true }, steps: { type: "integer" }, stages: { type: "array", items: { type: "string" } } } } } } } },
    },
  }, async () => ({ runs: runs ? runs.list() : [] }));

  app.get<{ Querystring: { run: string } }>("/api/runs/metrics", {
    schema: {
      summary: "One run's metrics.jsonl rows (downsampled past 2,000 points per source), stages and sources",
      querystring: { type: "object", additionalProperties: false, required: ["run"], properties: { run: { type: "string", minLength: 1, maxLength: 300 } } },
    },
  }, async (req) => {
    if (!runs) throw new RequestError(404, "no runs folder is served (start `vlp serve` with --runs <dir>)");
    const m = runs.metrics(req.query.run);
    if (!m) throw new RequestError(404, `unknown run ${JSON.stringify(req.query.run)} (GET /api/runs lists them)`);
    return m;
  });

  // indexed images, read-only, each resolved through its symlinks and kept inside the image folder
  if (imageRoot) {
    const root = imageRoot;
    app.get<{ Params: { "*": string } }>("/images/*", { schema: { hide: true } }, async (req, reply) => {
      const { file, type } = confinedImage(root, req.params["*"]);
      return reply.type(type).header("cache-control", "max-age=3600").send(createReadStream(file));
    });
  }
  await app.register(fastifyStatic, { root: WEB_DIR, prefix: "/", dotfiles: "deny", index: "index.html" });
  return app;
}
