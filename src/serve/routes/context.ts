// What every route module gets from the server: the served checkpoints, the index, the runs folder,
// and the helpers that pick a checkpoint and decode a request's images within the pixel budget.
import type { Inference } from "../model.ts";
import type { VectorIndex } from "../vindex.ts";
import type { RunsFolder } from "../runs.ts";

export interface RouteContext {
  /** Served checkpoints by name, in the order given. */
  engines: Map<string, Inference>;
  /** The default checkpoint (the first served). */
  first: Inference;
  index: VectorIndex | null;
  /** The checkpoint whose encoders built the index (set when `index` is). */
  indexEngine: Inference | undefined;
  runs: RunsFolder | null;
  /** Date.now() when the server was built. */
  started: number;
  /** A checkpoint by name (404 if not served); undefined: the first. */
  pick(name: string | undefined): Inference;
  /** A checkpoint with a VQA head: the named one (409 without one) or the first that has one. */
  vqaEngine(name: string | undefined): Inference;
  /** A request's images, decoded one at a time within the pixel budget (their sizes read from the headers first). */
  images(e: Inference, list: [b64: string, field: string][]): Promise<Float32Array[]>;
  image(e: Inference, b64: string, field: string): Promise<Float32Array>;
}

/** Encode a relative id ("a/b c.png") as the URL of the served image. */
export const imageUrl = (id: string) => `/images/${id.split("/").map(encodeURIComponent).join("/")}`;
