/** A small SVG line chart (no chart library: the page's bundle stays small). */

export interface Line {
  readonly label: string;
  readonly color: string;
  /** [x, y] in data units, x ascending. */
  readonly points: readonly (readonly [number, number])[];
  readonly dashed?: boolean;
  /** Text after the label at the line's end (e.g. its last value). */
  readonly value?: string;
}

export interface ChartSpec {
  readonly lines: readonly Line[];
  readonly xMax: number;
  readonly yMax: number;
  /** Logarithmic y axis (from the smallest positive y). */
  readonly logY?: boolean;
  readonly xTitle: string;
  readonly formatX: (x: number) => string;
  readonly formatY: (y: number) => string;
  /** Binary-friendly ticks (powers of two) on x. */
  readonly binaryX?: boolean;
  /** A vertical marker line. */
  readonly marker?: { readonly x: number; readonly label: string };
}

const NS = "http://www.w3.org/2000/svg";
const W = 720, H = 320, M = { left: 76, right: 210, top: 14, bottom: 42 };

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Round ticks from 0 to max (binary: in units of a power of 1024, as bytes and 32K-token contexts are read). */
export function linearTicks(max: number, binary = false, target = 5): number[] {
  if (!(max > 0)) return [0];
  let unit = 1;
  if (binary) while (max / unit >= 1024) unit *= 1024;
  const raw = max / unit / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  // bytes and binary token counts: power-of-two steps of the unit (at least one unit); else 1, 2, 5 x 10^k
  const candidates = binary ? [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] : [1, 2, 5, 10].map((m) => m * p);
  const step = (candidates.find((s) => s >= raw) ?? candidates[candidates.length - 1]) * unit;
  const out: number[] = [];
  for (let v = 0; v <= max * (1 + 1e-9); v += step) out.push(v);
  return out;
}

/** A round upper bound for an axis: the last tick at or above max. */
export function niceMax(max: number, binary = false): number {
  const t = linearTicks(max, binary);
  const last = t[t.length - 1];
  return last >= max ? last : last + (t[1] - t[0]);
}

export function renderChart(svg: SVGSVGElement, spec: ChartSpec): void {
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
  const xMax = Math.max(spec.xMax, 1);
  const positive = spec.lines.flatMap((l) => l.points.map((p) => p[1]).filter((y) => y > 0));
  const yMin = spec.logY ? Math.max(1, Math.min(...positive, spec.yMax) / 2) : 0;
  const yMax = Math.max(spec.yMax, yMin * 2, 1);
  const sx = (x: number) => M.left + (x / xMax) * pw;
  const sy = spec.logY
    ? (y: number) => M.top + ph - ((Math.log2(Math.max(y, yMin)) - Math.log2(yMin)) / (Math.log2(yMax) - Math.log2(yMin))) * ph
    : (y: number) => M.top + ph - (y / yMax) * ph;

  const grid = el("g", { class: "grid" });
  const yTicks = spec.logY ? logTicks(yMin, yMax) : linearTicks(yMax, true).filter((t) => t <= yMax);
  for (const t of yTicks) {
    const y = sy(t);
    grid.append(el("line", { x1: M.left, x2: M.left + pw, y1: y, y2: y }));
    grid.append(el("text", { x: M.left - 6, y: y + 4, "text-anchor": "end" }, spec.formatY(t)));
  }
  for (const t of linearTicks(xMax, spec.binaryX).filter((t) => t <= xMax)) {
    const x = sx(t);
    grid.append(el("line", { x1: x, x2: x, y1: M.top, y2: M.top + ph }));
    grid.append(el("text", { x, y: M.top + ph + 16, "text-anchor": "middle" }, spec.formatX(t)));
  }
  grid.append(el("text", { x: M.left + pw / 2, y: H - 6, "text-anchor": "middle", class: "title" }, spec.xTitle));
  svg.append(grid);
  svg.append(el("rect", { x: M.left, y: M.top, width: pw, height: ph, class: "frame" }));

  if (spec.marker && spec.marker.x > 0 && spec.marker.x <= xMax) {
    const x = sx(spec.marker.x);
    svg.append(el("line", { x1: x, x2: x, y1: M.top, y2: M.top + ph, class: "marker" }));
    svg.append(el("text", { x: x + 4, y: M.top + 12, class: "marker-label" }, spec.marker.label));
  }

  const ends: { y: number; line: Line }[] = [];
  for (const line of spec.lines) {
    if (!line.points.length) continue;
    const pts = spec.logY ? line.points.filter((p) => p[1] > 0) : line.points;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    svg.append(el("path", { d, stroke: line.color, class: line.dashed ? "line dashed" : "line", "data-label": line.label }));
    const last = pts[pts.length - 1];
    if (last) ends.push({ y: sy(last[1]), line });
  }
  // end labels, pushed apart so that equal lines (e.g. MLA and MQA of a small model) stay readable
  ends.sort((a, b) => a.y - b.y);
  for (let i = 1; i < ends.length; i++) ends[i].y = Math.max(ends[i].y, ends[i - 1].y + 15);
  const overflow = ends.length ? ends[ends.length - 1].y - (M.top + ph + 4) : 0;
  if (overflow > 0) for (const e of ends) e.y -= overflow;
  for (const e of ends) {
    svg.append(el("text", { x: M.left + pw + 8, y: e.y + 4, fill: e.line.color, class: "end-label" }, `${e.line.label}${e.line.value ? `  ${e.line.value}` : ""}`));
  }
}

/** Powers of two between lo and hi, about six of them. */
function logTicks(lo: number, hi: number): number[] {
  const a = Math.ceil(Math.log2(lo)), b = Math.floor(Math.log2(hi));
  const step = Math.max(1, Math.ceil((b - a) / 6));
  const out: number[] = [];
  for (let e = a; e <= b; e += step) out.push(2 ** e);
  return out;
}
