// Reads a V8 .cpuprofile (from `node --cpu-prof`) and lists the functions with the most self
// time. Used by `run.js --profile`; also runnable alone: `node bench/dist/cpuprofile.js FILE...`.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface HotSpot {
  function: string;
  /** Where: package-relative file and line (1-based), or a V8 pseudo-frame. */
  where: string;
  selfMs: number;
  selfPct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Self time outside `(idle)`: what the process actually spent on the CPU. */
  busyMs: number;
  top: HotSpot[];
}

function where(url: string, line: number): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const m = /\/(packages\/[^/]+\/|node_modules\/)(.*)$/.exec(path);
  const short = m === null ? path : `${m[1]}${m[2]}`;
  return `${short}:${line + 1}`;
}

export function summarizeProfile(file: string, topN = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i]!;
    // timeDeltas[i] is the time before sample i; the sample's own duration is the next delta.
    const d = deltas[i + 1] ?? 0;
    self.set(id, (self.get(id) ?? 0) + Math.max(0, d));
  }
  const agg = new Map<string, HotSpot>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    total += us;
    const fn = n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName;
    if (fn === '(idle)') idle += us;
    const w = where(n.callFrame.url, n.callFrame.lineNumber);
    const key = `${fn}|${w}`;
    const h = agg.get(key) ?? { function: fn, where: w, selfMs: 0, selfPct: 0 };
    h.selfMs += us / 1000;
    agg.set(key, h);
  }
  const busy = total - idle;
  const top = [...agg.values()]
    .filter((h) => h.function !== '(idle)')
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, topN)
    .map((h) => ({ ...h, selfMs: round(h.selfMs), selfPct: busy > 0 ? round((h.selfMs * 1000 * 100) / busy) : 0 }));
  return { file: basename(file), totalMs: round(total / 1000), busyMs: round(busy / 1000), top };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

export function formatProfile(s: ProfileSummary): string {
  const lines = [`${s.file}: ${s.busyMs} ms on CPU of ${s.totalMs} ms profiled (self time, % of busy)`];
  for (const h of s.top) lines.push(`  ${h.selfPct.toFixed(1).padStart(5)}%  ${h.selfMs.toFixed(1).padStart(8)} ms  ${h.function}  ${h.where}`);
  return lines.join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const f of process.argv.slice(2)) console.log(`${formatProfile(summarizeProfile(f))}\n`);
}
