// Image files in a folder, as the tools that take `--images DIR` find them.
import { readdirSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";

export const IMAGE_EXTS = new Set([".png", ".jpg", ".jpeg", ".webp"]);

/** All image files under a folder (sorted, up to `depth` levels of subfolders), as "/"-separated paths under it. */
export function listImages(root: string, depth = 4): string[] {
  const out: string[] = [];
  const walk = (dir: string, d: number) => {
    for (const e of readdirSync(dir).sort()) {
      if (e.startsWith(".")) continue;
      const p = join(dir, e);
      const s = statSync(p);
      if (s.isDirectory()) {
        if (d < depth) walk(p, d + 1);
      } else if (IMAGE_EXTS.has(extname(e).toLowerCase())) {
        out.push(relative(root, p).split(sep).join("/"));
      }
    }
  };
  walk(root, 0);
  return out;
}
