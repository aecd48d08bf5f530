// Every dynamic value reaches the page as text (textContent), never as markup: names,
// addresses, reasons and message ids come from other parties.

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string | number, cls?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls !== undefined) e.className = cls;
  return e;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`the page has no #${id}`);
  return e as T;
}

/** Replaces a table body's rows; `empty` is shown in one cell when there are none. */
export function fillRows(table: string, rows: Array<Array<string | number | Node>>, empty: string): void {
  const body = byId<HTMLTableElement>(table).tBodies[0]!;
  const cols = byId<HTMLTableElement>(table).tHead?.rows[0]?.cells.length ?? 1;
  const out: HTMLTableRowElement[] = [];
  for (const r of rows) {
    const tr = el('tr');
    for (const c of r) {
      const td = el('td');
      if (c instanceof Node) td.append(c);
      else td.textContent = String(c);
      td.title = td.textContent ?? '';
      tr.append(td);
    }
    out.push(tr);
  }
  if (out.length === 0) {
    const td = el('td', empty, 'empty');
    td.colSpan = cols;
    const tr = el('tr');
    tr.append(td);
    out.push(tr);
  }
  body.replaceChildren(...out);
}

export function pill(text: string, cls: string): HTMLSpanElement {
  return el('span', text, `pill ${cls}`);
}

const n = new Intl.NumberFormat('en-US');
export const num = (v: number): string => n.format(v);

export function bytes(v: number): string {
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  if (v < 1024 ** 3) return `${(v / 1024 / 1024).toFixed(1)} MiB`;
  return `${(v / 1024 ** 3).toFixed(2)} GiB`;
}

/** A duration in ms as 850 ms, 12 s, 5 min, 3 h 20 min, 2 d 4 h. */
export function ago(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export const clock = (t: number): string => new Date(t).toLocaleTimeString('en-GB', { hour12: false }) + `.${String(t % 1000).padStart(3, '0')}`;
