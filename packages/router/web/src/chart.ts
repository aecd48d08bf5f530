/**
 * A small line chart on a canvas: a fixed window of points per series, redrawn whole on each
 * tick (300 points x 2 series is nothing to draw). No library: the dashboard works offline.
 */
export class LineChart {
  readonly #canvas: HTMLCanvasElement;
  readonly #colors: string[];
  readonly #series: number[][];
  readonly #capacity: number;

  constructor(canvas: HTMLCanvasElement, colors: string[], capacity = 300) {
    this.#canvas = canvas;
    this.#colors = colors;
    this.#series = colors.map(() => []);
    this.#capacity = capacity;
  }

  push(values: number[]): void {
    values.forEach((v, i) => {
      const s = this.#series[i]!;
      s.push(Number.isFinite(v) ? v : 0);
      if (s.length > this.#capacity) s.shift();
    });
  }

  draw(): void {
    const c = this.#canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 400;
    const h = c.clientHeight || 120;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext('2d');
    if (g === null) return;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    let max = 0;
    for (const s of this.#series) for (const v of s) if (v > max) max = v;
    const top = niceCeil(max);
    const left = 44;
    const bottom = h - 4;
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7385';
    g.strokeStyle = '#e3e6ec';
    g.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = Math.round(bottom - f * (bottom - 8)) + 0.5;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(w, y);
      g.stroke();
      g.fillText(short(top * f), 2, y + 4);
    }
    const step = (w - left) / Math.max(1, this.#capacity - 1);
    this.#series.forEach((s, i) => {
      g.strokeStyle = this.#colors[i]!;
      g.lineWidth = 1.5;
      g.beginPath();
      const x0 = w - (s.length - 1) * step;
      s.forEach((v, j) => {
        const x = x0 + j * step;
        const y = bottom - (top === 0 ? 0 : (v / top) * (bottom - 8));
        if (j === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    });
  }
}

function niceCeil(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function short(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return v >= 10 || v === 0 ? String(Math.round(v)) : v.toFixed(1);
}
