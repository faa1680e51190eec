// What stands between a request and the machine: the image folder a request may read (after
// resolving symlinks), the decoded-pixel budget (per request and across requests in flight), the
// optional bearer token and the Host names a non-loopback bind answers to.
import { realpathSync, statSync } from "node:fs";
import { extname, join, sep } from "node:path";
import { timingSafeEqual, createHash } from "node:crypto";
import { RequestError } from "./model.ts";

export const IMAGE_TYPES: Record<string, string> = { ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif", ".bmp": "image/bmp" };

/** `path` with symlinks resolved; throws naming `what` when it does not exist. */
export function realDir(path: string, what: string): string {
  try {
    const real = realpathSync(path);
    if (!statSync(real).isDirectory()) throw new Error("not a folder");
    return real;
  } catch (e) {
    throw new Error(`${what} ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : (e as Error).message}`);
  }
}

/** True when `inner` (a real path) is `outer` or inside it. */
export const isInside = (inner: string, outer: string) => inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);

/**
 * The real path of image `rel` under the real folder `root`, or a 404: the file must exist, be a
 * regular file with an image extension, and stay inside `root` once every symlink is resolved.
 */
export function confinedImage(root: string, rel: string): { file: string; type: string } {
  const type = IMAGE_TYPES[extname(rel).toLowerCase()];
  const notFound = () => new RequestError(404, `no image ${JSON.stringify(rel.slice(0, 200))} in the served image folder`);
  if (!type) throw notFound();
  let file: string;
  try {
    file = realpathSync(join(root, rel));
    if (!statSync(file).isFile()) throw notFound();
  } catch {
    throw notFound();
  }
  if (!isInside(file, root) || !IMAGE_TYPES[extname(file).toLowerCase()]) throw notFound();
  return { file, type };
}

/**
 * Decoded pixels in flight. A request reserves the pixels of all its images (from their headers,
 * before decoding) and releases them when it is done; one over `perRequest` is a 413, one that
 * does not fit next to the others in flight a 503 with Retry-After (the client tries again).
 */
export class PixelBudget {
  private used = 0;
  constructor(readonly perRequest: number, readonly total: number) {}

  get inFlight(): number {
    return this.used;
  }

  /** Reserve `pixels` for the duration of `work`. */
  async with<T>(pixels: number, what: string, work: () => Promise<T>): Promise<T> {
    if (pixels > this.perRequest) throw new RequestError(413, `${what}: ${pixels} pixels in one request, more than the ${this.perRequest} accepted`);
    if (this.used + pixels > this.total) throw new RequestError(503, `busy: ${this.used} image pixels are being decoded by other requests (at most ${this.total} at once); try again shortly`, { "retry-after": "1" });
    this.used += pixels;
    try {
      return await work();
    } finally {
      this.used -= pixels;
    }
  }
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/** The token a request carries: `Authorization: Bearer T`, or the web app's `vlp_token` cookie. */
function presented(headers: Record<string, string | string[] | undefined>): string | null {
  const auth = headers.authorization;
  if (typeof auth === "string" && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, "").trim();
  const cookie = typeof headers.cookie === "string" ? headers.cookie : "";
  const m = /(?:^|;\s*)vlp_token=([^;]*)/.exec(cookie);
  return m ? decodeURIComponent(m[1]) : null;
}

/** Throws 401 unless the request carries `token` (compared in constant time). */
export function checkToken(token: string, headers: Record<string, string | string[] | undefined>): void {
  const got = presented(headers);
  if (got === null) throw new RequestError(401, "this server needs a token: send `Authorization: Bearer <token>` (the web app: open /#token=<token>)", { "www-authenticate": "Bearer" });
  if (!timingSafeEqual(digest(got), digest(token))) throw new RequestError(401, "wrong token", { "www-authenticate": "Bearer" });
}

/** Throws 421 unless the Host header's name (without the port) is allowed. */
export function checkHost(allowed: Set<string>, host: string | undefined): void {
  const name = (host ?? "").replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (!allowed.has(name)) throw new RequestError(421, `Host ${JSON.stringify((host ?? "").slice(0, 100))} is not served here (allowed: ${[...allowed].join(", ")}; vlp serve --allow-host adds names)`);
}

export const isLoopback = (host: string) => host === "localhost" || /^127\./.test(host) || host === "::1";
