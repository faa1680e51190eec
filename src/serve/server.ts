// The HTTP server of `vlp serve` (Fastify): the JSON API over the served checkpoints and the
// index, the web app (static files of src/serve/web), indexed images and the training-run
// dashboard. This file holds what every request goes through (host and token checks, errors,
// the OpenAPI document) and registers the routes, one module per group in ./routes/ (health,
// embed: /embed /itm /attention, search: /search /api/index/images /images/*, vqa, runs). Bodies
// are validated by JSON schemas (./api.ts, which also gives their TypeScript types and makes the
// OpenAPI document at /openapi.json); every failure a client can cause is a 4xx with a message
// naming the field.
//
// File system reach from a request: the web folder (through @fastify/static, which refuses to leave
// its root), the index's image folder when the operator allowed it (--images: every file is
// resolved through its symlinks and must stay inside; paths with a ".." segment are refused before
// routing), and run names looked up in the list found by scanning the runs folder.
// Limits: decoded image pixels per request and across requests in flight (src/serve/guard.ts);
// optionally a bearer token and, on non-loopback binds, an allow-list of Host names.
import { existsSync, readdirSync } from "node:fs";
import sharp from "sharp";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance, type FastifyError } from "fastify";
import fastifyStatic from "@fastify/static";
import fastifySwagger from "@fastify/swagger";
import { Inference, RequestError, decodeForModel, imageBytesFromBase64, probeImage, type ServedModel } from "./model.ts";
import { PixelBudget, checkHost, checkToken, isInside, realDir } from "./guard.ts";
import type { VectorIndex } from "./vindex.ts";
import type { AutocastDType } from "../engine/dtype.ts";
import { RunsFolder } from "./runs.ts";
import { DEFAULT_BODY_LIMIT, DEFAULT_INFLIGHT_PIXELS, DEFAULT_REQUEST_PIXELS } from "./limits.ts";
import type { RouteContext } from "./routes/context.ts";
import { healthRoutes } from "./routes/health.ts";
import { embedRoutes } from "./routes/embed.ts";
import { searchRoutes } from "./routes/search.ts";
import { vqaRoutes } from "./routes/vqa.ts";
import { runsRoutes } from "./routes/runs.ts";

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

export { DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_PIXELS, DEFAULT_INFLIGHT_PIXELS } from "./limits.ts";
export { imageUrl } from "./routes/context.ts";
const WEB_DIR = fileURLToPath(new URL("./web/", import.meta.url));

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

  const ctx: RouteContext = { engines, first, index, indexEngine, runs, started, pick, vqaEngine, images, image };
  healthRoutes(app, ctx);
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  embedRoutes(app, ctx);
  searchRoutes(app, ctx, imageRoot);
  vqaRoutes(app, ctx);
  runsRoutes(app, ctx);
  await app.register(fastifyStatic, { root: WEB_DIR, prefix: "/", dotfiles: "deny", index: "index.html" });
  return app;
}
