// The training-run dashboard: GET /api/runs and GET /api/runs/metrics.
import type { FastifyInstance } from "fastify";
import { RequestError } from "../model.ts";
import { runMetricsQuery, runsReply, type RunMetricsQuery, type RunsReply } from "../api.ts";
import type { RouteContext } from "./context.ts";

export function runsRoutes(app: FastifyInstance, c: RouteContext): void {
  const { runs } = c;
  app.get("/api/runs", {
    schema: {
      summary: "Training runs found under the runs folder",
      response: { 200: runsReply },
    },
  }, async (): Promise<RunsReply> => ({ runs: runs ? runs.list() : [] }));

  app.get<{ Querystring: RunMetricsQuery }>("/api/runs/metrics", {
    schema: {
      summary: "One run's metrics.jsonl rows (downsampled past 2,000 points per source), stages and sources",
      querystring: runMetricsQuery,
    },
  }, async (req) => {
    if (!runs) throw new RequestError(404, "no runs folder is served (start `vlp serve` with --runs <dir>)");
    const m = runs.metrics(req.query.run);
    if (!m) throw new RequestError(404, `unknown run ${JSON.stringify(req.query.run)} (GET /api/runs lists them)`);
    return m;
  });
}
