// Size limits of the HTTP API (request bodies, images, texts, decoded pixels).
import { MAX_IMAGE_PIXELS } from "./model.ts";

export const DEFAULT_BODY_LIMIT = 16 * 1024 * 1024;
/** Base64 of an image: 12M characters = 9 MB of image. */
export const MAX_IMAGE_B64 = 12_000_000;
export const MAX_TEXT = 1000;
export const DEFAULT_REQUEST_PIXELS = 2 * MAX_IMAGE_PIXELS;
export const DEFAULT_INFLIGHT_PIXELS = 4 * MAX_IMAGE_PIXELS;
