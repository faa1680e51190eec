// The search index: POST /search (exact top-k), GET /api/index/images (indexed images, for picking
// an example) and /images/* (the indexed image files, when the operator allowed their folder).
import { createReadStream } from "node:fs";
import type { FastifyInstance } from "fastify";
import { tensor, tidy } from "../../engine/index.ts";
import { RequestError } from "../model.ts";
import { confinedImage } from "../guard.ts";
import {
  errors, indexImagesQuery, indexImagesReply, searchBody, searchReply,
  type IndexImagesQuery, type IndexImagesReply, type SearchBody, type SearchReply,
} from "../api.ts";
import { imageUrl, type RouteContext } from "./context.ts";

/** `imageRoot`: the index's image folder, resolved and allowed (null: /images/ is not served). */
export function searchRoutes(app: FastifyInstance, c: RouteContext, imageRoot: string | null): void {
  const { index, indexEngine } = c;
  app.post<{ Body: SearchBody }>("/search", {
    schema: {
      summary: "Exact top-k search over the index: a text finds images, an image finds captions (or images with target)",
      body: searchBody,
      response: { 200: searchReply, ...errors },
    },
  }, async (req): Promise<SearchReply> => {
    const b = req.body;
    if ((b.text === undefined) === (b.image === undefined)) throw new RequestError(400, "body: give exactly one of text and image");
    if (!index || !indexEngine) throw new RequestError(409, "no index is loaded: start `vlp serve` with --index <dir> (build one with `vlp index build`)");
    const target = b.target ?? (b.text !== undefined ? "images" : "captions");
    const part = index.part(target === "images" ? "image" : "text");
    if (!part || part.count === 0) throw new RequestError(409, `the index has no ${target}${target === "captions" ? " (build it from a dataset's captions: `vlp index build --images <karpathy json or world>`)" : ""}`);
    const t0 = performance.now();
    const q = b.text !== undefined ? indexEngine.embedTexts([b.text])[0] : indexEngine.embedImages([await c.image(indexEngine, b.image!, "body.image")])[0];
    const hits = tidy(() => part.search(tensor(q, { shape: [1, q.length] }), b.k ?? 10)[0]);
    const results = hits.map((h, r) => {
      if (target === "images") return { rank: r + 1, id: h.id, score: h.score, url: imageUrl(h.id) };
      const img = h.id.replace(/#\d+$/, "");
      return { rank: r + 1, id: h.id, score: h.score, text: h.text ?? "", image: img, url: imageUrl(img) };
    });
    return { query: b.text !== undefined ? "text" : "image", target, indexed: part.count, ms: performance.now() - t0, results };
  });

  app.get<{ Querystring: IndexImagesQuery }>("/api/index/images", {
    // query strings arrive as text and the schemas do not coerce: decimal integers become numbers here
    preValidation: async (req) => {
      const q = req.query as Record<string, unknown>;
      for (const k of ["offset", "limit"]) if (typeof q[k] === "string" && /^\d{1,9}$/.test(q[k] as string)) q[k] = Number(q[k]);
    },
    schema: {
      summary: "Indexed images, in index order (for picking an example)",
      querystring: indexImagesQuery,
      response: { 200: indexImagesReply, ...errors },
    },
  }, async (req): Promise<IndexImagesReply> => {
    const part = index?.part("image");
    if (!part) return { total: 0, images: [] };
    const off = req.query.offset ?? 0;
    const ids = part.ids.slice(off, off + (req.query.limit ?? 24));
    return { total: part.count, images: ids.map((id) => ({ id, url: imageUrl(id) })) };
  });

  // indexed images, read-only, each resolved through its symlinks and kept inside the image folder
  if (imageRoot) {
    const root = imageRoot;
    app.get<{ Params: { "*": string } }>("/images/*", { schema: { hide: true } }, async (req, reply) => {
      const { file, type } = confinedImage(root, req.params["*"]);
      return reply.type(type).header("cache-control", "max-age=3600").send(createReadStream(file));
    });
  }
}
