// GET /health: liveness and what is served.
import type { FastifyInstance } from "fastify";
import { healthReply, type HealthReply } from "../api.ts";
import type { RouteContext } from "./context.ts";

export function healthRoutes(app: FastifyInstance, c: RouteContext): void {
  app.get("/health", {
    schema: { summary: "Liveness and what is served", response: { 200: healthReply } },
  }, async (): Promise<HealthReply> => ({
    status: "ok",
    uptime: (Date.now() - c.started) / 1000,
    checkpoints: [...c.engines.values()].map((e) => ({
      name: e.served.name, kind: e.served.info.kind, task: e.served.info.task ?? "", model: e.model.config.name, imageSize: e.imageSize, dim: e.dim, layers: e.model.numLayers,
      itc: e.hasItc, itm: e.hasItm, vqa: e.hasVqa, vqaAnswers: e.served.labels?.length ?? 0,
    })),
    index: c.index ? { model: c.indexEngine!.served.name, dim: c.index.dim, dtype: c.index.dtype, images: c.index.part("image")?.count ?? 0, texts: c.index.part("text")?.count ?? 0, bytes: c.index.bytes } : null,
    runs: c.runs !== null,
  }));
}
