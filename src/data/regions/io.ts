// Positioned reads and whole-buffer writes shared by the TSV reader and the `.regions` store.
import fs from "node:fs";
import { writingTo } from "../../engine/serialize/atomic.ts";

/** Reads all of `buf` from `position`; a short file is an error naming `what` and the byte. */
export function readFully(fd: number, buf: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) throw new Error(`${what}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** Writes all of `buf`; a filesystem error (a full disk) names `path`. */
export function writeFully(fd: number, buf: Uint8Array, path: string): void {
  let done = 0;
  writingTo(path, () => {
    while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done);
  });
}
