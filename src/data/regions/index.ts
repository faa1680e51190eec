/**
 * Random access to detector region features without loading them into memory
 * (LXMERT's loader reads every TSV row into RAM in every worker: 200+ GB, lxmert #37/#49).
 *
 * Two sources share the `RegionSource` interface:
 *  - `TsvRegionReader`: an obj36 TSV plus a byte-offset index (`<tsv>.idx.json`);
 *    each `get` is one positioned read and one row parse.
 *  - `RegionStore`: the compact binary `vlp.regions` format (store.ts), written by
 *    `RegionStoreWriter` / `convertTsvToStore`; each `get` is two positioned reads,
 *    features stored as float32 or float16 (decoded to float32 on read).
 * `gridRegions` / `gridRegionFeatures` / `gridRegionsFromImage` give a detector-free
 * fallback for raw images (k×k cells, hand-made colour statistics as features).
 *
 * One file per concept: features.ts (the record and the source interface), tsv.ts (TSV index and
 * reader), float16.ts (the codec), store.ts (the `.regions` format, writer and reader), convert.ts
 * (TSV → store), grid.ts (grid regions), open.ts (`openRegions`).
 */
export * from "./features.ts";
export * from "./tsv.ts";
export * from "./float16.ts";
export * from "./store.ts";
export * from "./convert.ts";
export * from "./grid.ts";
export * from "./open.ts";
