// POST /vqa: answers to a question about an image from a VQA fine-tuned checkpoint.
import type { FastifyInstance } from "fastify";
import { errors, vqaBody, vqaReply, type VqaBody, type VqaReply } from "../api.ts";
import type { RouteContext } from "./context.ts";

export function vqaRoutes(app: FastifyInstance, c: RouteContext): void {
  app.post<{ Body: VqaBody }>("/vqa", {
    schema: {
      summary: "Answers to a question about an image (a VQA fine-tuned checkpoint), with sigmoid scores",
      body: vqaBody,
      response: { 200: vqaReply, ...errors },
    },
  }, async (req): Promise<VqaReply> => {
    const b = req.body;
    const e = c.vqaEngine(b.checkpoint);
    const px = await c.image(e, b.image, "body.image");
    return { checkpoint: e.served.name, question: b.question, answers: e.vqa(px, b.question, b.k ?? 5) };
  });
}
