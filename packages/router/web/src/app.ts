// The router dashboard: one EventSource for live figures and link changes, the JSON API for
// tables (only the visible page of agents and queues is ever asked for or drawn).
import { ApiError, get, post, type AgentsPage, type LinkView, type Overview, type QueuesPage, type Reports, type Routes, type SendResult, type Tick, type Trace } from './api.js';
import { LineChart } from './chart.js';
import { ago, byId, bytes, clock, el, fillRows, num, pill } from './dom.js';

const PAGE = 50;
const REFRESH_MS = 2000;
let skew = 0; // server clock minus ours, so "since" ages are the router's
const now = (): number => Date.now() + skew;

const state = { q: '', offset: 0, matched: 0 };

const charts = {
  msgs: new LineChart(byId<HTMLCanvasElement>('chart-msgs'), ['#2563eb', '#16a34a']),
  acks: new LineChart(byId<HTMLCanvasElement>('chart-acks'), ['#2563eb', '#c62828']),
  commit: new LineChart(byId<HTMLCanvasElement>('chart-commit'), ['#2563eb', '#16a34a']),
};

function pushTick(t: Tick): void {
  charts.msgs.push([t.in, t.out]);
  charts.acks.push([t.acked, t.nacked]);
  charts.commit.push([t.commitP50Ms, t.commitP99Ms]);
}

function drawCharts(): void {
  for (const c of Object.values(charts)) c.draw();
}

function card(k: string, v: string, id: string): HTMLElement {
  const d = el('div', undefined, 'card');
  d.dataset['card'] = id;
  d.append(el('div', v, 'v'), el('div', k, 'k'));
  return d;
}

function showOverview(o: Overview): void {
  skew = o.now - Date.now();
  byId('id-name').textContent = o.name;
  byId('id-role').textContent = o.role;
  const store = byId('id-store');
  store.textContent = o.store.ok ? 'store ok' : `store failing${o.store.reason === undefined ? '' : `: ${o.store.reason}`}`;
  store.className = `pill ${o.store.ok ? 'ok' : 'bad'}`;
  byId('id-detail').textContent = `domain ${o.domain} · node ${o.node.slice(0, 12)}… · v${o.version} · up ${ago(o.now - o.startedAt)}`;
  byId('id-detail').title = o.node;
  byId('logout').hidden = !o.login;
  document.title = `${o.name} · Postern ${o.role}`;
  const held = Object.values(o.held).reduce((a, h) => ({ messages: a.messages + h.messages, bytes: a.bytes + h.bytes }), { messages: 0, bytes: 0 });
  byId('cards').replaceChildren(
    card('agents', num(o.counts.agents), 'agents'),
    card('router links', num(o.counts.uplinks + o.counts.downlinks + o.counts.peers + o.counts.hubs), 'links'),
    card('held messages', num(held.messages), 'held'),
    card('held bytes', bytes(held.bytes), 'held-bytes'),
    card('messages in', num(o.totals['msgsIn'] ?? 0), 'in'),
    card('delivered', num(o.totals['delivered'] ?? 0), 'delivered'),
    card('forwarded', num(o.totals['forwarded'] ?? 0), 'forwarded'),
    card('nacked', num(o.totals['nacked'] ?? 0), 'nacked'),
  );
}

function showLinks(links: LinkView[]): void {
  fillRows(
    'links',
    links.map((l) => [
      l.kind,
      l.url ?? l.node,
      l.domains.join(', '),
      pill(l.state, l.state),
      l.transport === null ? '' : pill(l.transport === 'ws' ? 'WebSocket' : 'long-poll', l.transport),
      `${ago(now() - l.since)} ago`,
      l.rttMs === null ? '–' : `${l.rttMs} ms`,
      num(Math.round(l.inPerSec)),
      num(Math.round(l.outPerSec)),
      num(l.pending),
    ]),
    'no router links',
  );
}

async function refreshAgents(): Promise<void> {
  const p = await get<AgentsPage>('/api/agents', { q: state.q, offset: state.offset, limit: PAGE });
  state.matched = p.matched;
  if (p.offset >= p.matched && p.matched > 0) {
    state.offset = Math.max(0, Math.floor((p.matched - 1) / PAGE) * PAGE);
    return refreshAgents();
  }
  fillRows(
    'agents',
    p.agents.map((a) => [a.address, a.id, a.transport ?? 'in-process', a.remote, `${ago(now() - a.since)} ago`, num(a.queued), bytes(a.queuedBytes)]),
    state.q === '' ? 'no agents connected' : 'no agent matches',
  );
  const last = Math.min(p.offset + p.agents.length, p.matched);
  byId('agents-range').textContent = p.matched === 0 ? '0 of 0' : `${num(p.offset + 1)}-${num(last)} of ${num(p.matched)}`;
  byId('agents-count').textContent = state.q === '' ? `${num(p.total)} connected` : `${num(p.matched)} of ${num(p.total)} match`;
  byId<HTMLButtonElement>('agents-prev').disabled = p.offset === 0;
  byId<HTMLButtonElement>('agents-next').disabled = last >= p.matched;
}

async function refreshQueues(): Promise<void> {
  const q = await get<QueuesPage>('/api/queues', { offset: 0, limit: 20 });
  fillRows(
    'queues',
    q.queues.map((x) => [x.kind, x.dest, num(x.messages), bytes(x.bytes), x.oldestAt === null ? '' : ago(now() - x.oldestAt)]),
    'nothing held',
  );
  byId('queues-count').textContent = q.total > q.queues.length ? `top ${q.queues.length} of ${num(q.total)}` : '';
}

async function refreshRoutes(): Promise<void> {
  const r = await get<Routes>('/api/routes');
  const rows: Array<Array<string | number>> = [];
  for (const d of r.routes) d.via.forEach((v, i) => rows.push([i === 0 ? d.domain : '', `${v.kind} ${v.node.slice(0, 12)}…`, v.metric, v.path.join(' → ')]));
  fillRows('routes', rows, 'no routes learned (a default route up an uplink is not listed)');
}

async function refreshReports(): Promise<void> {
  const r = await get<Reports>('/api/undeliverable', { limit: 20 });
  fillRows(
    'reports',
    r.reports.map((x) => [clock(x.at), traceLink(x.id), x.from, x.to, x.code, x.reason]),
    'none',
  );
}

function traceLink(id: string): HTMLElement {
  const a = el('a', id, 'trace');
  a.addEventListener('click', () => {
    byId<HTMLInputElement>('trace-id').value = id;
    void showTrace(id);
  });
  return a;
}

let refreshing = false;
async function refreshAll(): Promise<void> {
  if (refreshing) return;
  refreshing = true;
  try {
    const [o] = await Promise.all([get<Overview>('/api/overview'), refreshAgents(), refreshQueues(), refreshRoutes(), refreshReports()]);
    showOverview(o);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) console.warn('dashboard refresh failed', err);
  } finally {
    refreshing = false;
  }
}

async function showTrace(id: string): Promise<void> {
  const out = byId('trace-result');
  out.replaceChildren(el('span', 'asking the routers…', 'muted'));
  try {
    const t = await get<Trace>('/api/trace', { id });
    if (t.hops.every((h) => h.events.length === 0 && h.reachable)) {
      out.replaceChildren(el('span', `no router this dashboard can see holds a trace of ${id}`, 'muted'));
      return;
    }
    const parts: HTMLElement[] = [];
    for (const h of t.hops) {
      const d = el('div', undefined, 'hop');
      d.dataset['router'] = h.router.domain;
      d.append(el('h3', h.reachable ? `${h.router.name} (${h.router.domain}${h.router.node === '' ? '' : `, ${h.router.node.slice(0, 12)}…`})` : `${h.router.name}: not reachable${h.error === undefined ? '' : ` (${h.error})`}`));
      if (h.events.length > 0) {
        const table = el('table');
        const body = el('tbody');
        for (const e of h.events) {
          const tr = el('tr');
          const link = e.link === undefined ? '' : `${e.link.kind} ${e.link.agent ?? e.link.node?.slice(0, 12) ?? ''}`;
          tr.append(el('td', clock(e.at)), el('td', e.event), el('td', link), el('td', e.detail ?? ''));
          body.append(tr);
        }
        table.append(body);
        d.append(table);
      }
      parts.push(d);
    }
    out.replaceChildren(...parts);
  } catch (err) {
    out.replaceChildren(el('span', (err as Error).message, 'error'));
  }
}

function wire(): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  byId<HTMLInputElement>('agents-q').addEventListener('input', (ev) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = (ev.target as HTMLInputElement).value.trim();
      state.offset = 0;
      void refreshAgents();
    }, 200);
  });
  byId('agents-prev').addEventListener('click', () => {
    state.offset = Math.max(0, state.offset - PAGE);
    void refreshAgents();
  });
  byId('agents-next').addEventListener('click', () => {
    if (state.offset + PAGE < state.matched) state.offset += PAGE;
    void refreshAgents();
  });
  byId<HTMLFormElement>('send').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const out = byId('send-result');
    const to = byId<HTMLInputElement>('send-to').value.trim();
    out.replaceChildren(el('span', `sending to ${to}…`, 'muted'));
    post<SendResult>('/api/send', { to, text: byId<HTMLInputElement>('send-text').value }).then(
      (r) => {
        const ok = r.receipt?.code === 'OK';
        const line = el('div');
        line.dataset['code'] = r.receipt?.code ?? 'none';
        line.append(
          pill(r.receipt === null ? 'no receipt yet' : r.receipt.code, ok ? 'ok' : r.receipt === null ? '' : 'bad'),
          el('span', ` ${r.from} → ${r.to}${r.receipt === null ? '' : ` in ${r.receipt.ms} ms`}${r.acceptedMs === null ? '' : ` (router took it in ${r.acceptedMs} ms)`} · id `),
          traceLink(r.id),
        );
        out.replaceChildren(line);
        void refreshReports();
      },
      (err: unknown) => out.replaceChildren(el('span', `${err instanceof ApiError ? `${err.code}: ` : ''}${(err as Error).message}`, 'error')),
    );
  });
  byId<HTMLFormElement>('trace').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void showTrace(byId<HTMLInputElement>('trace-id').value.trim());
  });
}

async function start(): Promise<void> {
  wire();
  try {
    const h = await get<{ ticks: Tick[] }>('/api/history');
    for (const t of h.ticks) pushTick(t);
    drawCharts();
  } catch {
    // A 401 sends the page to the login; other failures leave the charts to the stream.
  }
  await refreshAll();
  const live = byId('live');
  const es = new EventSource('/api/stream');
  es.addEventListener('open', () => {
    live.textContent = 'live';
    live.className = 'pill up';
  });
  es.addEventListener('error', () => {
    live.textContent = 'reconnecting';
    live.className = 'pill down';
  });
  es.addEventListener('tick', (ev) => {
    const t = JSON.parse((ev as MessageEvent<string>).data) as Tick;
    pushTick(t);
    drawCharts();
    document.body.dataset['tick'] = String(t.t);
  });
  es.addEventListener('links', (ev) => {
    const body = JSON.parse((ev as MessageEvent<string>).data) as { links: LinkView[] };
    showLinks(body.links);
  });
  setInterval(() => {
    if (document.visibilityState === 'visible') {
      void refreshAll();
      void get<{ links: LinkView[] }>('/api/links').then((b) => showLinks(b.links), () => undefined);
    }
  }, REFRESH_MS);
  window.addEventListener('resize', drawCharts);
  document.body.dataset['ready'] = '1';
}

void start();
