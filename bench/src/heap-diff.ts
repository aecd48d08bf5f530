// `node --max-old-space-size=4096 bench/dist/heap-diff.js BEFORE AFTER [--per N] [--top K]`: what
// grew between two V8 heap snapshots (`.heapsnapshot`, e.g. written by `idle.js --heap DIR`), per
// connection. Two tables, both as the difference AFTER - BEFORE divided by `--per` (the
// connections opened in between):
//
// - by class: count and self size of the objects of each constructor (closures by function name
//   and source position, arrays and V8 internals by their kind);
// - by owner: every object's self size charged to its nearest dominator that is a named object
//   or a closure (plain `Object`s and `Array`s fold into their owner), so a class's line is what
//   it alone keeps alive: its retained size, less what other owners below it keep.
//
// Diagnostics for bench/RESULTS.md, not part of `npm run bench`.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    per: { type: 'string', default: '1' },
    top: { type: 'string', default: '30' },
    why: { type: 'string' },
  },
});
if (positionals.length !== 2) {
  console.error('Usage: node --max-old-space-size=4096 bench/dist/heap-diff.js BEFORE.heapsnapshot AFTER.heapsnapshot [--per N] [--top K]');
  process.exit(2);
}

interface Snapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
      location_fields?: string[];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
  locations?: number[];
}

interface Summary {
  /** class -> [count, self bytes] */
  byClass: Map<string, [number, number]>;
  /** owner class -> bytes kept */
  byOwner: Map<string, number>;
  /** `--why CLASS`: the objects of class CLASS by what holds them (dominator's owner and edge) -> [count, bytes they keep] */
  why: Map<string, [number, number]>;
  total: number;
}

function summarize(file: string): Summary {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const meta = s.snapshot.meta;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const fType = meta.node_fields.indexOf('type');
  const fName = meta.node_fields.indexOf('name');
  const fSize = meta.node_fields.indexOf('self_size');
  const fEdges = meta.node_fields.indexOf('edge_count');
  const eType = meta.edge_fields.indexOf('type');
  const eTo = meta.edge_fields.indexOf('to_node');
  const eName = meta.edge_fields.indexOf('name_or_index');
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const weak = edgeTypes.indexOf('weak');
  const named = new Set(['context', 'property', 'internal', 'shortcut', 'weak'].map((t) => edgeTypes.indexOf(t)));
  const { nodes, edges, strings } = s;
  const n = nodes.length / nf;

  // Closures: their source position (script id, line), from the snapshot's locations.
  const where = new Map<number, string>();
  if (s.locations !== undefined && meta.location_fields !== undefined) {
    const lf = meta.location_fields.length;
    const lObj = meta.location_fields.indexOf('object_index');
    const lLine = meta.location_fields.indexOf('line');
    const lScript = meta.location_fields.indexOf('script_id');
    for (let i = 0; i < s.locations.length; i += lf) where.set(s.locations[i + lObj]! / nf, `${s.locations[i + lScript]}:${s.locations[i + lLine]! + 1}`);
  }
  const cls: string[] = new Array<string>(n);
  const owns = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const type = nodeTypes[nodes[i * nf + fType]!]!;
    const name = strings[nodes[i * nf + fName]!]!;
    let c: string;
    switch (type) {
      case 'object':
        c = name;
        owns[i] = name === 'Object' || name === 'Array' ? 0 : 1;
        break;
      case 'closure':
        c = `closure ${name || '(anonymous)'}${where.has(i) ? ` @${where.get(i)}` : ''}`;
        owns[i] = 1;
        break;
      case 'string':
      case 'concatenated string':
      case 'sliced string':
        c = '(string)';
        break;
      case 'number':
      case 'code':
      case 'bigint':
      case 'symbol':
        c = `(${type})`;
        break;
      default:
        c = `(${type}) ${name.length > 60 ? `${name.slice(0, 60)}...` : name}`;
        owns[i] = type === 'native' ? 1 : 0;
    }
    cls[i] = c;
  }

  // Edges as CSR (strong ones only), and their reverse.
  const first = new Uint32Array(n + 1);
  for (let i = 0, e = 0; i < n; i++) {
    first[i] = e;
    e += nodes[i * nf + fEdges]! * ef;
    if (i === n - 1) first[n] = e;
  }
  // Depth-first postorder from the root (node 0), iteratively.
  const order = new Int32Array(n).fill(-1); // postorder number
  const post: number[] = [];
  const stack: number[] = [0];
  const cursor = new Uint32Array(n);
  const seen = new Uint8Array(n);
  seen[0] = 1;
  for (let i = 0; i < n; i++) cursor[i] = first[i]!;
  while (stack.length > 0) {
    const v = stack[stack.length - 1]!;
    let pushed = false;
    while (cursor[v]! < first[v + 1]!) {
      const e = cursor[v]!;
      cursor[v] = e + ef;
      if (edges[e + eType] === weak) continue;
      const w = edges[e + eTo]! / nf;
      if (seen[w] === 0) {
        seen[w] = 1;
        stack.push(w);
        pushed = true;
        break;
      }
    }
    if (!pushed) {
      stack.pop();
      order[v] = post.length;
      post.push(v);
    }
  }
  // Predecessors of reachable nodes.
  const predCount = new Uint32Array(n + 1);
  for (let v = 0; v < n; v++) {
    if (order[v] === -1) continue;
    for (let e = first[v]!; e < first[v + 1]!; e += ef) if (edges[e + eType] !== weak) predCount[edges[e + eTo]! / nf]!++;
  }
  const predFirst = new Uint32Array(n + 1);
  for (let v = 0; v < n; v++) predFirst[v + 1] = predFirst[v]! + predCount[v]!;
  const preds = new Uint32Array(predFirst[n]!);
  const fill = predFirst.slice(0, n);
  for (let v = 0; v < n; v++) {
    if (order[v] === -1) continue;
    for (let e = first[v]!; e < first[v + 1]!; e += ef) {
      if (edges[e + eType] === weak) continue;
      const w = edges[e + eTo]! / nf;
      preds[fill[w]!++] = v;
    }
  }
  // Immediate dominators (Cooper, Harvey, Kennedy), over postorder numbers.
  const m = post.length;
  const idom = new Int32Array(m).fill(-1);
  const root = order[0]!;
  idom[root] = root;
  let changed = true;
  while (changed) {
    changed = false;
    for (let k = m - 1; k >= 0; k--) {
      if (k === root) continue;
      const v = post[k]!;
      let nd = -1;
      for (let p = predFirst[v]!; p < predFirst[v + 1]!; p++) {
        let a = order[preds[p]!]!;
        if (a === -1 || idom[a] === -1) continue;
        if (nd === -1) {
          nd = a;
          continue;
        }
        let b = nd;
        while (a !== b) {
          while (a < b) a = idom[a]!;
          while (b < a) b = idom[b]!;
        }
        nd = a;
      }
      if (nd !== -1 && idom[k] !== nd) {
        idom[k] = nd;
        changed = true;
      }
    }
  }
  // Owners, from the root down (a dominator has a higher postorder number than what it dominates).
  const owner = new Int32Array(m);
  const byOwner = new Map<string, number>();
  const byClass = new Map<string, [number, number]>();
  let total = 0;
  for (let k = m - 1; k >= 0; k--) {
    const v = post[k]!;
    owner[k] = owns[v] === 1 || k === root ? v : owner[idom[k]!]!;
    const size = nodes[v * nf + fSize]!;
    total += size;
    const oc = k === root ? '(root)' : cls[owner[k]!]!;
    byOwner.set(oc, (byOwner.get(oc) ?? 0) + size);
    const c = byClass.get(cls[v]!);
    if (c === undefined) byClass.set(cls[v]!, [1, size]);
    else {
      c[0]++;
      c[1] += size;
    }
  }
  const why = new Map<string, [number, number]>();
  if (opt.why !== undefined) {
    const kept = new Float64Array(n);
    for (let k = 0; k < m; k++) kept[owner[k]!]! += nodes[post[k]! * nf + fSize]!;
    for (let k = 0; k < m; k++) {
      const v = post[k]!;
      if (k === root || cls[v] !== opt.why) continue;
      const parent = post[idom[k]!]!;
      let edge = '?';
      for (let e = first[parent]!; e < first[parent + 1]!; e += ef) {
        if (edges[e + eTo]! / nf !== v) continue;
        edge = named.has(edges[e + eType]!) ? String(strings[edges[e + eName]!]) : `[${edges[e + eName]}]`;
        break;
      }
      const key = `${cls[owner[idom[k]!]!]} -> ${cls[parent]}.${edge}`;
      const w = why.get(key);
      // An owner: what it keeps; anything else (a plain Object, an Array): its own size.
      const bytes = owner[k] === v ? kept[v]! : nodes[v * nf + fSize]!;
      if (w === undefined) why.set(key, [1, bytes]);
      else {
        w[0]++;
        w[1] += bytes;
      }
    }
  }
  return { byClass, byOwner, why, total };
}

const per = Number(opt.per);
const top = Number(opt.top);
const [a, b] = [summarize(positionals[0]!), summarize(positionals[1]!)];

const rows = (before: Map<string, number>, after: Map<string, number>): Array<[string, number]> =>
  [...new Set([...before.keys(), ...after.keys()])].map((k): [string, number] => [k, (after.get(k) ?? 0) - (before.get(k) ?? 0)]).sort((x, y) => y[1] - x[1]);

console.log(`reachable heap: ${a.total} -> ${b.total} bytes: ${((b.total - a.total) / per).toFixed(0)} bytes per connection (--per ${per})`);
console.log(`\nby class (count and self size per connection; top ${top}):`);
const count = (m: Map<string, [number, number]>, i: 0 | 1): Map<string, number> => new Map([...m].map(([k, v]) => [k, v[i]]));
const counts = rows(count(a.byClass, 0), count(b.byClass, 0));
const countOf = new Map(counts);
for (const [k, d] of rows(count(a.byClass, 1), count(b.byClass, 1)).slice(0, top)) {
  console.log(`  ${(d / per).toFixed(0).padStart(7)} B  ${((countOf.get(k) ?? 0) / per).toFixed(2).padStart(7)} x  ${k}`);
}
console.log(`\nby owner (bytes each owner keeps alive per connection; top ${top}):`);
for (const [k, d] of rows(a.byOwner, b.byOwner).slice(0, top)) console.log(`  ${(d / per).toFixed(0).padStart(7)} B  ${k}`);
if (opt.why !== undefined) {
  console.log(`\n${opt.why} by what holds it (owner -> dominator.edge): count and bytes kept per connection:`);
  const bytes = rows(new Map([...a.why].map(([k, v]) => [k, v[1]])), new Map([...b.why].map(([k, v]) => [k, v[1]])));
  const cnt = new Map(rows(new Map([...a.why].map(([k, v]) => [k, v[0]])), new Map([...b.why].map(([k, v]) => [k, v[0]]))));
  for (const [k, d] of bytes.slice(0, top)) console.log(`  ${(d / per).toFixed(0).padStart(7)} B  ${((cnt.get(k) ?? 0) / per).toFixed(2).padStart(7)} x  ${k}`);
}
