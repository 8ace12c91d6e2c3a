/**
 * A loss plot as a self-contained SVG (no dependencies): the training loss of every step as a polyline and the
 * validation loss as dots, on linear axes with a few labelled ticks.
 */

export interface LossPlotData {
  /** Training loss per step: [step, loss]. */
  readonly train: readonly (readonly [number, number])[];
  /** Validation loss: [step, loss]. */
  readonly eval: readonly (readonly [number, number])[];
  readonly title?: string;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Roughly `n` round tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, n: number): number[] {
  const span = hi - lo || 1;
  const raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lossSvg(d: LossPlotData): string {
  const W = 640, H = 400, L = 60, R = 20, T = 36, B = 44;
  const pts = [...d.train, ...d.eval].filter(([, y]) => Number.isFinite(y));
  const xs = pts.map(([x]) => x), ys = pts.map(([, y]) => y);
  const x0 = Math.min(0, ...xs), x1 = Math.max(1, ...xs);
  let y0 = ys.length ? Math.min(...ys) : 0, y1 = ys.length ? Math.max(...ys) : 1;
  if (y1 - y0 < 1e-9) (y0 -= 0.5), (y1 += 0.5);
  const pad = (y1 - y0) * 0.05;
  y0 = Math.max(0, y0 - pad);
  y1 += pad;
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const f = (v: number) => v.toFixed(1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(d.title ?? "loss")}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  ];
  for (const v of ticks(x0, x1, 6)) {
    parts.push(`<line x1="${f(sx(v))}" y1="${H - B}" x2="${f(sx(v))}" y2="${H - B + 4}" stroke="black"/>`);
    parts.push(`<text x="${f(sx(v))}" y="${H - B + 16}" text-anchor="middle">${v}</text>`);
  }
  for (const v of ticks(y0, y1, 6)) {
    parts.push(`<line x1="${L - 4}" y1="${f(sy(v))}" x2="${W - R}" y2="${f(sy(v))}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 6}" y="${f(sy(v) + 4)}" text-anchor="end">${v}</text>`);
  }
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">step</text>`);
  const line = d.train.filter(([, y]) => Number.isFinite(y)).map(([x, y]) => `${f(sx(x))},${f(sy(y))}`).join(" ");
  if (line) parts.push(`<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${line}"/>`);
  for (const [x, y] of d.eval) if (Number.isFinite(y)) parts.push(`<circle cx="${f(sx(x))}" cy="${f(sy(y))}" r="3.5" fill="#d62728"/>`);
  parts.push(`<line x1="${W - R - 150}" y1="${T + 8}" x2="${W - R - 126}" y2="${T + 8}" stroke="#1f77b4" stroke-width="2"/>`);
  parts.push(`<text x="${W - R - 120}" y="${T + 12}">train loss</text>`);
  parts.push(`<circle cx="${W - R - 138}" cy="${T + 26}" r="3.5" fill="#d62728"/>`);
  parts.push(`<text x="${W - R - 120}" y="${T + 30}">validation loss</text>`);
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

export interface ScatterPoint {
  readonly x: number;
  readonly y: number;
  /** Half-height of an error bar (0: none). */
  readonly err: number;
  readonly label: string;
}

/** Points with error bars and labels on a log2 x axis (KV numbers per token) and a linear y axis. */
export function scatterSvg(points: readonly ScatterPoint[], title: string, xLabel: string, yLabel: string): string {
  const W = 640, H = 400, L = 64, R = 24, T = 36, B = 48;
  const lx = points.map((p) => Math.log2(p.x));
  const x0 = Math.floor(Math.min(...lx)) - 0.5, x1 = Math.ceil(Math.max(...lx)) + 0.5;
  let y0 = Math.min(...points.map((p) => p.y - p.err)), y1 = Math.max(...points.map((p) => p.y + p.err));
  const pad = Math.max((y1 - y0) * 0.15, 0.01);
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => L + ((Math.log2(x) - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const f = (v: number) => v.toFixed(1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  ];
  for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) {
    const v = 2 ** e;
    parts.push(`<line x1="${f(sx(v))}" y1="${H - B}" x2="${f(sx(v))}" y2="${H - B + 4}" stroke="black"/>`);
    parts.push(`<text x="${f(sx(v))}" y="${H - B + 16}" text-anchor="middle">${v}</text>`);
  }
  for (const v of ticks(y0, y1, 6)) {
    parts.push(`<line x1="${L - 4}" y1="${f(sy(v))}" x2="${W - R}" y2="${f(sy(v))}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 6}" y="${f(sy(v) + 4)}" text-anchor="end">${v}</text>`);
  }
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(`<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${esc(yLabel)}</text>`);
  points.forEach((p, i) => {
    const cx = f(sx(p.x)), cy = f(sy(p.y));
    if (p.err > 0) parts.push(`<line x1="${cx}" y1="${f(sy(p.y - p.err))}" x2="${cx}" y2="${f(sy(p.y + p.err))}" stroke="#555"/>`);
    parts.push(`<circle cx="${cx}" cy="${cy}" r="4" fill="${i % 2 ? "#d62728" : "#1f77b4"}"/>`);
    parts.push(`<text x="${f(sx(p.x) + 7)}" y="${f(sy(p.y) - 6 - (i % 2) * 10)}">${esc(p.label)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
