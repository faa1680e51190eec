/**
 * Crash-safe file replacement: write a temp file next to the target, fsync
 * it, rename it over the target, fsync the directory. A reader sees either
 * the old file or the complete new one, never a torn write; if writing fails
 * the temp file is removed and the old file is left untouched.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  openSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

export type AtomicWriter = (fd: number) => void;

export interface AtomicWriteOptions {
  /** File mode for a new file (default 0o666 minus umask; an existing target keeps its mode). */
  mode?: number;
}

/** Largest single write() we issue; the kernel caps one write at ~2 GiB anyway. */
const WRITE_CHUNK = 1 << 30;

/** Writes all of `bytes` to `fd` at the current position, looping over short writes. */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) {
    const len = Math.min(WRITE_CHUNK, bytes.byteLength - off);
    const n = writeSync(fd, bytes, off, len);
    if (n <= 0) throw new Error(`write returned ${n}`);
    off += n;
  }
}

function errCode(e: unknown): string | undefined {
  return typeof e === "object" && e !== null ? (e as NodeJS.ErrnoException).code : undefined;
}

/**
 * A filesystem error as one that names `path`: Node's says "ENOSPC: no space left on device,
 * write" without saying which file, so a full disk during a long run named nothing. Other errors
 * (and those that already name the path) pass unchanged; the code is kept.
 */
export function namedFsError(path: string, e: unknown): unknown {
  const code = errCode(e);
  if (code === undefined || (e as Error).message.includes(path)) return e;
  const why = code === "ENOSPC" ? "no space left on the device (ENOSPC)" : (e as Error).message;
  return Object.assign(new Error(`${path}: cannot write: ${why}`, { cause: e }), { code });
}

/** `fn()`, with a filesystem error naming `path`. */
export function writingTo<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw namedFsError(path, e);
  }
}

/** The file we really replace: follow a symlink so the link itself survives. */
function resolveTarget(path: string): string {
  try {
    return realpathSync(path);
  } catch (e) {
    if (errCode(e) === "ENOENT") return resolve(path);
    throw e;
  }
}

function fsyncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, "r");
  } catch (e) {
    // Some platforms (Windows) cannot open a directory; nothing more we can do there.
    if (["EISDIR", "EPERM", "EACCES", "ENOTSUP"].includes(errCode(e) ?? "")) return;
    throw e;
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    // File systems that do not support fsync on directories report EINVAL/ENOTSUP.
    if (!["EINVAL", "ENOTSUP", "EBADF", "EPERM"].includes(errCode(e) ?? "")) throw e;
  } finally {
    closeSync(fd);
  }
}

/**
 * Atomically replaces `path` with `data`, or with whatever `data(fd)` writes
 * to the temp file descriptor (sequential writes, e.g. via writeAllSync).
 */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array | AtomicWriter,
  options: AtomicWriteOptions = {},
): void {
  const target = resolveTarget(path);
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);

  let existingMode: number | undefined;
  try {
    existingMode = statSync(target).mode & 0o7777;
  } catch (e) {
    if (errCode(e) !== "ENOENT") throw e;
  }

  let fd: number;
  try {
    fd = openSync(tmp, "wx", options.mode ?? 0o666);
  } catch (e) {
    throw new Error(`${path}: cannot create temp file ${tmp}: ${(e as Error).message}`, { cause: e });
  }
  let fdOpen = true;
  try {
    // An explicit mode goes through open() (so the umask applies, as for fs.writeFileSync);
    // otherwise a replaced file keeps its permissions.
    if (existingMode !== undefined && options.mode === undefined) fchmodSync(fd, existingMode);
    if (typeof data === "function") data(fd);
    else writeAllSync(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
    fsyncSync(fd);
    closeSync(fd);
    fdOpen = false;
    renameSync(tmp, target);
  } catch (e) {
    if (fdOpen) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the original error is the one worth reporting
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may not exist any more (e.g. rename half-succeeded); ignore
    }
    throw namedFsError(path, e);
  }
  writingTo(path, () => fsyncDirectory(dir));
}

export interface JsonAtomicOptions extends AtomicWriteOptions {
  /** JSON.stringify indentation (default 2; 0 for compact). */
  indent?: number;
}

/** Atomically writes `value` as JSON (with a trailing newline). */
export function writeJsonAtomic(path: string, value: unknown, options: JsonAtomicOptions = {}): void {
  const text = JSON.stringify(value, null, options.indent ?? 2);
  if (text === undefined) throw new Error(`${path}: value is not JSON-serializable (${typeof value})`);
  writeFileAtomic(path, text + "\n", options);
}
