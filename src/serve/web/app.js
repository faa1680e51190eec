// The vlpkit web app: plain browser JavaScript talking to the JSON API of `vlp serve`.
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
};

let health = null;

// \`vlp serve --token T\`: open /#token=T once; the token is kept in a same-site cookie that the API
// calls and the images carry, and removed from the address bar
{
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    document.cookie = `vlp_token=${m[1]}; path=/; SameSite=Strict`;
    history.replaceState(null, "", location.pathname + location.search);
  }
}

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, init);
  const j = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(j.error ?? `HTTP ${r.status}`);
  return j;
}

function showError(target, e) {
  target.textContent = e.message;
  target.classList.add("error");
}
function info(target, text) {
  target.textContent = text;
  target.classList.remove("error");
}

// ---- tabs ---------------------------------------------------------------------------------------

function route() {
  const h = location.hash.slice(1) || "search";
  const [tab, arg] = h.startsWith("run=") ? ["run", decodeURIComponent(h.slice(4))] : [h, null];
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.id === `tab-${tab}`));
  document.querySelectorAll("nav a[data-tab]").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab || (tab === "run" && a.dataset.tab === "runs")));
  if (tab === "runs") loadRuns();
  if (tab === "run") loadRun(arg);
}
window.addEventListener("hashchange", route);

// ---- images: drop zones and the shared "current image" -------------------------------------------

const readAsDataUrl = (blob) => new Promise((res, rej) => {
  const fr = new FileReader();
  fr.onload = () => res(fr.result);
  fr.onerror = () => rej(fr.error);
  fr.readAsDataURL(blob);
});

const zones = {};
function dropZone(id, onImage) {
  const zone = $(`#${id}`);
  const img = $("img", zone);
  const state = { dataUrl: null, label: "" };
  const set = async (blob, label) => {
    state.dataUrl = await readAsDataUrl(blob);
    state.label = label;
    img.src = state.dataUrl;
    zone.classList.add("has");
    zone.title = label;
    onImage?.(state);
  };
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) set(f, f.name);
  });
  $("input[type=file]", zone).addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) set(f, f.name);
  });
  zone.addEventListener("click", (e) => {
    if (zone.classList.contains("has") && e.target === img) $("input[type=file]", zone).click();
  });
  zones[id] = { state, set };
  return state;
}

async function useIndexedImage(url, id, tab) {
  const blob = await (await fetch(url)).blob();
  const zone = { ask: "ask-drop", attention: "att-drop", captions: "captions-drop" }[tab];
  await zones[zone].set(blob, id);
  location.hash = tab;
}

// ---- search: text -> images -----------------------------------------------------------------------

function card(r, extra) {
  const c = $("#card").content.firstElementChild.cloneNode(true);
  $("img", c).src = r.url;
  $("img", c).alt = r.id;
  $(".rank", c).textContent = `#${r.rank}`;
  $(".id", c).textContent = r.id;
  $(".score", c).textContent = extra;
  c.dataset.id = r.id;
  c.querySelectorAll("button[data-act]").forEach((b) => b.addEventListener("click", () => useIndexedImage(r.url, r.id, b.dataset.act)));
  return c;
}

$("#search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#search-results");
  const note = $("#search-info");
  const text = $("#search-text").value.trim();
  const k = Number($("#search-k").value);
  out.replaceChildren();
  out.removeAttribute("data-done");
  info(note, "searching…");
  try {
    const r = await api("/search", { text, k });
    let results = r.results;
    let how = `cosine similarity of the ITC embeddings; ${r.indexed.toLocaleString()} images searched in ${r.ms.toFixed(1)} ms`;
    if ($("#search-rerank").checked && health?.checkpoints[0]?.itm) {
      const scored = [];
      for (const x of results) {
        const b64 = await readAsDataUrl(await (await fetch(x.url)).blob());
        const m = await api("/itm", { image: b64, text });
        scored.push({ ...x, itm: m.scores[0].match });
      }
      scored.sort((a, b) => b.itm - a.itm);
      results = scored.map((x, i) => ({ ...x, rank: i + 1 }));
      how += "; re-ranked by the ITM match probability";
    }
    info(note, how);
    for (const x of results) out.append(card(x, x.itm === undefined ? `score ${x.score.toFixed(3)}` : `ITM ${x.itm.toFixed(3)} · cos ${x.score.toFixed(3)}`));
    out.dataset.done = "1";
  } catch (err) {
    showError(note, err);
  }
});

// ---- captions: image -> captions ----------------------------------------------------------------

dropZone("captions-drop", async (state) => {
  const out = $("#captions-results");
  const note = $("#captions-info");
  out.replaceChildren();
  out.removeAttribute("data-done");
  info(note, "searching…");
  try {
    const r = await api("/search", { image: state.dataUrl, k: 10, target: "captions" });
    info(note, `${r.indexed.toLocaleString()} captions searched in ${r.ms.toFixed(1)} ms (cosine similarity of the ITC embeddings)`);
    const max = Math.max(...r.results.map((x) => x.score), 1e-6);
    for (const x of r.results) {
      out.append(el("li", {}, el("span", { class: "bar", style: `width:${Math.max(2, 80 * x.score / max)}px` }), ` ${x.score.toFixed(3)} `, el("b", { text: x.text }), el("span", { class: "note", text: ` — ${x.image}` })));
    }
    out.dataset.done = "1";
  } catch (err) {
    showError(note, err);
  }
});

// ---- ask: VQA ---------------------------------------------------------------------------------------

const askImage = dropZone("ask-drop");
$("#ask-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#ask-answers");
  const note = $("#ask-info");
  out.replaceChildren();
  out.removeAttribute("data-done");
  if (!askImage.dataUrl) return showError(note, new Error("drop an image first"));
  info(note, "thinking…");
  try {
    const r = await api("/vqa", { image: askImage.dataUrl, question: $("#ask-question").value.trim(), k: 5 });
    info(note, `answers of ${r.checkpoint} (sigmoid score of each answer class)`);
    for (const a of r.answers) {
      out.append(el("tr", {}, el("td", {}, el("b", { text: a.answer })), el("td", {}, el("span", { class: "bar", style: `width:${Math.max(2, 200 * a.score)}px` })), el("td", { text: a.score.toFixed(3) })));
    }
    out.dataset.done = "1";
  } catch (err) {
    showError(note, err);
  }
});

// ---- attention heatmap ----------------------------------------------------------------------------

// a perceptual colour map (turbo-like), t in [0, 1]
const STOPS = [[48, 18, 59], [40, 140, 230], [120, 250, 90], [250, 180, 40], [122, 4, 3]];
function colour(t) {
  const x = Math.min(0.9999, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.floor(x);
  const f = x - i;
  return STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
}

const attImage = dropZone("att-drop");
let attResult = null;

function drawHeatmap(tokenIndex) {
  const canvas = $("#att-canvas");
  const ctx = canvas.getContext("2d");
  const img = $("#att-drop img");
  const W = canvas.width;
  const H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(img, 0, 0, W, H);
  const { grid, maps } = attResult;
  const m = maps[tokenIndex];
  const max = Math.max(...m);
  const min = Math.min(...m);
  const small = document.createElement("canvas");
  small.width = grid;
  small.height = grid;
  const sctx = small.getContext("2d");
  const data = sctx.createImageData(grid, grid);
  m.forEach((v, p) => {
    const t = max > min ? (v - min) / (max - min) : 0.5;
    const [r, g, b] = colour(t);
    data.data.set([r, g, b, Math.round(40 + 150 * t)], p * 4);
  });
  sctx.putImageData(data, 0, 0);
  ctx.drawImage(small, 0, 0, W, H);
  canvas.dataset.token = attResult.tokens[tokenIndex];
  canvas.dataset.rendered = String(Number(canvas.dataset.rendered ?? 0) + 1);
  document.querySelectorAll("#att-tokens button").forEach((b, i) => b.classList.toggle("sel", i === tokenIndex));
  info($("#att-info"), `“${attResult.tokens[tokenIndex]}”: ${(100 * attResult.imageShare[tokenIndex]).toFixed(1)}% of its attention goes to the image; patch weights ${min.toFixed(3)}–${max.toFixed(3)} (last ${attResult.layers} layer(s), heads averaged)` + (attResult.match === null ? "" : `; ITM match ${attResult.match.toFixed(3)}`));
}

$("#att-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const note = $("#att-info");
  const toks = $("#att-tokens");
  toks.replaceChildren();
  if (!attImage.dataUrl) return showError(note, new Error("drop an image first"));
  info(note, "computing…");
  try {
    attResult = await api("/attention", { image: attImage.dataUrl, text: $("#att-text").value.trim(), layers: Number($("#att-layers").value || 1) });
    attResult.tokens.forEach((t, i) => toks.append(el("button", { type: "button", text: t, "data-index": String(i), onclick: () => drawHeatmap(i) })));
    // first word piece after [CLS] by default
    drawHeatmap(attResult.tokens.length > 2 ? 1 : 0);
  } catch (err) {
    showError(note, err);
  }
});

// ---- training runs ----------------------------------------------------------------------------------

async function loadRuns() {
  const t = $("#runs-list");
  try {
    const { runs } = await api("/api/runs");
    t.replaceChildren(el("tr", {}, ...["run", "method", "steps", "stages"].map((h) => el("th", { text: h }))));
    if (runs.length === 0) t.append(el("tr", {}, el("td", { text: health?.runs ? "no runs with a metrics.jsonl under the runs folder" : "no runs folder served (vlp serve --runs <dir>)", colspan: "4" })));
    for (const r of runs) {
      t.append(el("tr", {}, el("td", {}, el("a", { href: `#run=${encodeURIComponent(r.name)}`, text: r.name })), el("td", { text: `${r.method ?? ""} ${r.kind ?? ""}` }), el("td", { text: String(r.steps) }), el("td", { text: r.stages.join(" → ") })));
    }
  } catch (err) {
    t.replaceChildren(el("tr", {}, el("td", { class: "error", text: err.message })));
  }
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];

// The held-out keys of a training metric: val_<metric>, and val_<source>_<metric> of stages with several
// sources (MSP joint) unless <source>_<metric> is a metric of its own (VLMo's text_mlm_loss is not mlm_loss's)
function valKeysOf(key, sources, metrics) {
  return [`val_${key}`, ...sources.filter((s) => !metrics.includes(`${s}_${key}`)).map((s) => `val_${s}_${key}`)];
}

function chart(key, rows, stages, sourceColour, sources, metrics) {
  const W = 460, H = 220, L = 48, R = 12, T = 22, B = 28;
  // held-out rows log `val_<metric>` (or `val_<source>_<metric>`): drawn as circles on the metric's chart
  const valKeys = valKeysOf(key, sources, metrics);
  const value = (r) => (r.source === "val" ? valKeys.map((k) => r[k]).find((v) => typeof v === "number") : r[key]);
  const pts = rows.filter((r) => typeof value(r) === "number" && Number.isFinite(value(r))).map((r) => ({ ...r, [key]: value(r) }));
  if (pts.length === 0) return null;
  const steps = rows.map((r) => r.step);
  const x0 = Math.min(...steps), x1 = Math.max(...steps, x0 + 1);
  let y0 = Math.min(...pts.map((r) => r[key])), y1 = Math.max(...pts.map((r) => r[key]));
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, "data-metric": key });
  s.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#ccd" }));
  for (const v of [y0 + pad, (y0 + y1) / 2, y1 - pad]) {
    const t = svg("text", { x: L - 4, y: sy(v) + 3, "font-size": 10, "text-anchor": "end", fill: "#555" });
    t.textContent = Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : v.toPrecision(3);
    s.append(t);
  }
  for (const v of [x0, x1]) {
    const t = svg("text", { x: sx(v), y: H - 10, "font-size": 10, "text-anchor": "middle", fill: "#555" });
    t.textContent = String(v);
    s.append(t);
  }
  // stage boundaries (MSP stages, VLMo stages): dashed lines with the stage name
  stages.forEach((st, i) => {
    if (i > 0) s.append(svg("line", { class: "stage-mark", x1: sx(st.start), x2: sx(st.start), y1: T, y2: H - B, stroke: "#888", "stroke-dasharray": "4,3" }));
    const t = svg("text", { class: "stage-label", x: sx(st.start) + 3, y: T - 6, "font-size": 10, fill: "#444" });
    t.textContent = st.name;
    s.append(t);
  });
  // one colour per source / mode (SemVLP: single and two-stream steps); held-out rows as circles
  const order = new Map(rows.filter((r) => r.source !== "val").map((r, i) => [r.step, i]));
  const bySource = new Map();
  for (const r of pts) {
    const k = r.source === "val" ? "val" : r.source;
    if (!bySource.has(k)) bySource.set(k, []);
    bySource.get(k).push(r);
  }
  for (const [src, rs] of bySource) {
    const colour = sourceColour(src);
    if (src === "val") {
      for (const r of rs) s.append(svg("circle", { class: "val-point", cx: sx(r.step), cy: sy(r[key]), r: 3.5, fill: "#fff", stroke: colour, "stroke-width": 2 }));
      continue;
    }
    // lines through the runs of consecutive training rows of this source (a stage, or a stretch of
    // one mode); sources that alternate step by step (SemVLP's single/two modes) are drawn as dots
    const sorted = rs.sort((a, b) => a.step - b.step);
    const segments = [];
    for (const r of sorted) {
      const last = segments[segments.length - 1];
      if (last && order.get(r.step) === order.get(last[last.length - 1].step) + 1) last.push(r);
      else segments.push([r]);
    }
    if (sorted.length / segments.length < 4) {
      for (const r of sorted) s.append(svg("circle", { class: "series-point", "data-source": src, cx: sx(r.step), cy: sy(r[key]), r: 1.6, fill: colour }));
    } else {
      for (const seg of segments) {
        const d = seg.map((r, i) => `${i ? "L" : "M"}${sx(r.step).toFixed(1)},${sy(r[key]).toFixed(1)}`).join("");
        s.append(svg("path", { class: "series", "data-source": src, d, fill: "none", stroke: colour, "stroke-width": 1.4 }));
      }
    }
  }
  const box = el("div", { class: "chart" }, el("h3", { text: key }));
  box.append(s);
  return box;
}

async function loadRun(name) {
  const charts = $("#run-charts");
  const note = $("#run-info");
  charts.replaceChildren();
  charts.removeAttribute("data-done");
  $("#run-title").textContent = name;
  try {
    const m = await api(`/api/runs/metrics?run=${encodeURIComponent(name)}`);
    const colourOf = new Map(m.sources.map((s, i) => [s, COLORS[i % COLORS.length]]));
    colourOf.set("val", "#000");
    const legend = $("#run-legend");
    legend.replaceChildren(...[...colourOf].map(([s, c]) => el("span", {}, el("i", { style: `background:${c}` }), s === "val" ? "held-out (val)" : s)));
    info(note, `${m.method ?? ""} · ${m.totalRows} log lines · stages ${m.stages.map((s) => `${s.name} (steps ${s.start}–${s.end})`).join(", ")}`);
    // loss and the losses first, then the rest
    // val_<metric> goes on <metric>'s chart when the run logs both
    const merged = (k) => m.metrics.some((b) => !b.startsWith("val_") && valKeysOf(b, m.sources, m.metrics).includes(k));
    const keys = m.metrics.filter((k) => !merged(k))
      .sort((a, b) => (a === "loss" ? -1 : b === "loss" ? 1 : (/loss/.test(b) - /loss/.test(a)) || a.localeCompare(b)));
    for (const k of keys) {
      const c = chart(k, m.rows, m.stages, (s) => colourOf.get(s) ?? "#999", m.sources, m.metrics);
      if (c) charts.append(c);
    }
    charts.dataset.done = "1";
  } catch (err) {
    showError(note, err);
  }
}

// ---- start --------------------------------------------------------------------------------------------

async function start() {
  const st = $("#status");
  try {
    health = await api("/health");
    const c = health.checkpoints;
    const idx = health.index ? `index: ${health.index.images.toLocaleString()} images, ${health.index.texts.toLocaleString()} captions` : "no index";
    st.textContent = `${c.map((x) => `${x.name} (${x.model}${x.vqa ? `, VQA ${x.vqaAnswers} answers` : ""})`).join(", ")} · ${idx}`;
    const layers = $("#att-layers");
    const n = c[0]?.layers ?? 1;
    for (let i = 1; i <= n; i++) layers.append(el("option", { text: String(i) }));
  } catch (err) {
    st.textContent = `server not reachable: ${err.message}`;
    st.classList.add("bad");
  }
  document.body.dataset.ready = "1";
}

route();
start();
