// The encoders of a checkpoint: POST /embed (dual-encoder embeddings), POST /itm (match scores),
// POST /attention (fusion-encoder attention maps).
import type { FastifyInstance } from "fastify";
import { RequestError } from "../model.ts";
import {
  attentionBody, attentionReply, embedBody, embedReply, errors, itmBody, itmReply,
  type AttentionBody, type AttentionReply, type EmbedBody, type EmbedReply, type ItmBody, type ItmReply,
} from "../api.ts";
import type { RouteContext } from "./context.ts";

export function embedRoutes(app: FastifyInstance, c: RouteContext): void {
  app.post<{ Body: EmbedBody }>("/embed", {
    schema: {
      summary: "Normalised embeddings from the dual encoder (ITC heads)",
      body: embedBody,
      response: { 200: embedReply, ...errors },
    },
  }, async (req): Promise<EmbedReply> => {
    const b = req.body;
    if (!b.texts?.length && !b.images?.length) throw new RequestError(400, "body: give texts and/or images");
    const e = c.pick(b.checkpoint);
    const imgs = await c.images(e, (b.images ?? []).map((s, i) => [s, `body.images[${i}]`]));
    return { checkpoint: e.served.name, dim: e.dim, texts: e.embedTexts(b.texts ?? []).map((v) => Array.from(v)), images: e.embedImages(imgs).map((v) => Array.from(v)) };
  });

  app.post<{ Body: ItmBody }>("/itm", {
    schema: {
      summary: "Image-text match probability from the fusion encoder's ITM head (for re-ranking candidates)",
      body: itmBody,
      response: { 200: itmReply, ...errors },
    },
  }, async (req): Promise<ItmReply> => {
    const b = req.body;
    if ((b.text === undefined) === (b.texts === undefined)) throw new RequestError(400, "body: give exactly one of text and texts");
    const texts = b.texts ?? [b.text!];
    const e = c.pick(b.checkpoint);
    const px = await c.image(e, b.image, "body.image");
    const s = e.itm(px, texts);
    return { checkpoint: e.served.name, scores: texts.map((t, i) => ({ text: t, ...s[i] })) };
  });

  app.post<{ Body: AttentionBody }>("/attention", {
    schema: {
      summary: "Fusion-encoder attention from each text token to the image patches (heads and the last `layers` layers averaged)",
      body: attentionBody,
      response: { 200: attentionReply, ...errors },
    },
  }, async (req): Promise<AttentionReply> => {
    const b = req.body;
    const e = c.pick(b.checkpoint);
    const px = await c.image(e, b.image, "body.image");
    const a = e.attention(px, b.text, b.layers ?? 1);
    return { checkpoint: e.served.name, ...a, match: e.hasItm ? e.itm(px, [b.text])[0].match : null };
  });
}
