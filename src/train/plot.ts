// A run's loss and metric curves as one self-contained HTML page (inline SVG), read from its
// metrics.jsonl; stage boundaries (MSP) are drawn as vertical lines and each source/mode
// (SemVLP's single/two) gets its own colour.
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

interface Row { step: number; stage: string; source: string; [k: string]: number | string }

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

export function parseMetrics(jsonl: string): Row[] {
  return jsonl.split("\n").filter((l) => l.trim()).map((l, i) => {
    try {
      return JSON.parse(l) as Row;
    } catch {
      throw new Error(`metrics.jsonl: line ${i + 1} is not JSON`);
    }
  });
}

function chart(rows: Row[], key: string, stageStarts: [number, string][]): string {
  const pts = rows.filter((r) => typeof r[key] === "number" && Number.isFinite(r[key] as number));
  if (pts.length === 0) return "";
  const W = 560, H = 200, P = 36;
  const xs = rows.map((r) => r.step);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const ys = pts.map((r) => r[key] as number);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-12) { y0 -= 1; y1 += 1; }
  const sx = (x: number) => P + ((x - x0) / (x1 - x0)) * (W - 2 * P);
  const sy = (y: number) => H - P + ((y0 - y) / (y1 - y0)) * (H - 2 * P);
  const groups = new Map<string, Row[]>();
  for (const r of pts) groups.set(`${r.source}`, [...(groups.get(`${r.source}`) ?? []), r]);
  const lines = [...groups].map(([g, rs], i) => `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5" points="${rs.map((r) => `${sx(r.step).toFixed(1)},${sy(r[key] as number).toFixed(1)}`).join(" ")}"><title>${esc(g)}</title></polyline>`);
  const legend = [...groups.keys()].map((g, i) => `<text x="${W - P - 100}" y="${14 + 12 * i}" font-size="10" fill="${COLORS[i % COLORS.length]}">${esc(g)}</text>`);
  const marks = stageStarts.map(([s, name]) => `<line x1="${sx(s)}" x2="${sx(s)}" y1="${P / 2}" y2="${H - P}" stroke="#999" stroke-dasharray="3,3"/><text x="${sx(s) + 3}" y="${P / 2 + 8}" font-size="10" fill="#555">${esc(name)}</text>`);
  return `<figure data-metric="${esc(key)}"><figcaption>${esc(key)}</figcaption><svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">
<rect x="${P}" y="${P / 2}" width="${W - 2 * P}" height="${H - 1.5 * P}" fill="none" stroke="#ccc"/>
<text x="2" y="${sy(y1) + 4}" font-size="10">${y1.toPrecision(3)}</text><text x="2" y="${sy(y0)}" font-size="10">${y0.toPrecision(3)}</text>
<text x="${P}" y="${H - 8}" font-size="10">${x0}</text><text x="${W - P - 20}" y="${H - 8}" font-size="10">${x1}</text>
${marks.join("\n")}
${lines.join("\n")}
${legend.join("\n")}
</svg></figure>`;
}

export function renderRunPlot(jsonl: string, title: string): string {
  const rows = parseMetrics(jsonl);
  const stageStarts: [number, string][] = [];
  rows.forEach((r, i) => { if (i === 0 || rows[i - 1].stage !== r.stage) stageStarts.push([r.step, r.stage]); });
  const skip = new Set(["step", "stage", "stage_step", "source", "time"]);
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => !skip.has(k));
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:1em} figure{display:inline-block;margin:.5em} figcaption{font-weight:bold}</style></head>
<body><h1>${esc(title)}</h1><p>${rows.length} steps; stages: ${stageStarts.map(([s, n]) => `${esc(n)} (from step ${s})`).join(", ")}</p>
${keys.map((k) => chart(rows, k, stageStarts)).join("\n")}
</body></html>`;
}
