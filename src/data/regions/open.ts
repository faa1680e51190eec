// `openRegions`: region features by path (an obj36 TSV or a `.regions` store), or several read as one.
import type { RegionFeatures, RegionSource } from "./features.ts";
import { TsvRegionReader } from "./tsv.ts";
import { RegionStore } from "./store.ts";

/** Several region files read as one: each image from the first file that holds it. */
class RegionUnion implements RegionSource {
  private readonly owner = new Map<string, RegionSource>();
  constructor(private readonly paths: string[], private readonly parts: RegionSource[]) {
    for (const p of parts) for (const id of p.ids()) if (!this.owner.has(id)) this.owner.set(id, p);
  }

  ids(): string[] {
    return [...this.owner.keys()];
  }

  get(imgId: string): RegionFeatures {
    const p = this.owner.get(imgId);
    if (!p) throw new Error(`${this.paths.join(", ")}: no record for img_id ${JSON.stringify(imgId)}`);
    return p.get(imgId);
  }

  where(imgId: string): string {
    return this.owner.get(imgId)?.where(imgId) ?? `${this.paths.join(", ")}: no record (img_id ${imgId})`;
  }

  close(): void {
    for (const p of this.parts) p.close();
  }
}

/** Opens region features by file type: an obj36 TSV (indexed on first use) or a `.regions` store. */
async function openRegionFile(path: string): Promise<RegionSource> {
  return path.endsWith(".tsv") ? TsvRegionReader.open(path) : RegionStore.open(path);
}

/** An obj36 TSV or `.regions` store, or several read as one. */
export async function openRegions(path: string | string[]): Promise<RegionSource> {
  if (typeof path === "string") return openRegionFile(path);
  if (path.length === 1) return openRegionFile(path[0]);
  const parts: RegionSource[] = [];
  for (const p of path) parts.push(await openRegionFile(p));
  return new RegionUnion(path, parts);
}
