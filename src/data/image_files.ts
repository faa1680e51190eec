// Image files in a folder, as the tools that take `--images DIR` find them.
import { lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";

export const IMAGE_EXTS = new Set([".png", ".jpg", ".jpeg", ".webp"]);

const inside = (real: string, root: string) => real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);

/** `fn()`, with a filesystem error naming `path` (a bare ENOENT names nothing). */
function named<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`${path}: ${err.code ?? ""} ${err.message.replace(/^[A-Z]+: /, "")}`.replace(/ +/g, " "));
  }
}

/**
 * All image files under a folder (sorted, up to `depth` levels of subfolders), as "/"-separated
 * paths under it. Symlinks are followed only while they stay inside the folder: a link out of it
 * (to /etc, say) or a dangling one is skipped, so the walk never leaves the folder it was given.
 */
export function listImages(root: string, depth = 4): string[] {
  const realRoot = named(root, () => realpathSync(root));
  const out: string[] = [];
  const walk = (dir: string, d: number) => {
    for (const e of named(dir, () => readdirSync(dir)).sort()) {
      if (e.startsWith(".")) continue;
      const p = join(dir, e);
      let s = named(p, () => lstatSync(p));
      if (s.isSymbolicLink()) {
        let real: string;
        try {
          real = realpathSync(p);
        } catch {
          continue; // dangling
        }
        if (!inside(real, realRoot)) continue;
        s = named(p, () => statSync(real));
      }
      if (s.isDirectory()) {
        if (d < depth) walk(p, d + 1);
      } else if (s.isFile() && IMAGE_EXTS.has(extname(e).toLowerCase())) {
        out.push(relative(root, p).split(sep).join("/"));
      }
    }
  };
  walk(root, 0);
  return out;
}
