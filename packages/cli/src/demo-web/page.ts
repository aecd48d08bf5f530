// The demo page's code, run in the visitor's browser (served as /page.js beside the client's
// bundle, /postern.min.js). The visitor is a guest agent on the relay: it asks the demo server for
// a token (POST /token), connects, lets alice watch its presence, says hello to alice and then
// chats with her and, directly through the relay, with the other visitors on alice's list.
// Every dynamic text goes in with textContent: names and messages are never markup.
import { connect, type Client, type ClientStatus, type Message } from './postern.min.js';

interface Grant {
  url: string;
  name: string;
  address: string;
  token: string;
  expiresAt: number;
  alice: string;
}

type RoomMessage = { t: 'hello' } | { t: 'say'; text: string; all?: boolean } | { t: 'roster'; online: string[] };

/** Log lines kept on the page. */
const MAX_LINES = 300;

function el<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`the page lacks #${id}`);
  return e as T;
}

const statusLine = el<HTMLParagraphElement>('status');
const logList = el<HTMLOListElement>('log');
const toSelect = el<HTMLSelectElement>('to');
const textInput = el<HTMLInputElement>('text');
const sendButton = el<HTMLButtonElement>('send');

function status(text: string, bad = false): void {
  statusLine.textContent = text;
  statusLine.classList.toggle('bad', bad);
}

/**
 * One line of the conversation; `kind`: mine, alice, note or other. Returns the line, whose
 * tooltip gets the message's id (for the dashboards' path view).
 */
function log(from: string, text: string, kind: 'mine' | 'alice' | 'note' | 'other', id?: string): HTMLLIElement {
  const li = document.createElement('li');
  li.className = kind;
  li.dataset['from'] = from;
  if (id !== undefined) tag(li, id);
  const who = document.createElement('span');
  who.className = 'from';
  who.textContent = from;
  const what = document.createElement('span');
  what.className = 'text';
  what.textContent = text;
  li.append(who, what);
  logList.append(li);
  while (logList.children.length > MAX_LINES) logList.firstElementChild?.remove();
  logList.scrollTop = logList.scrollHeight;
  return li;
}

function tag(li: HTMLLIElement, id: string): void {
  li.title = `message id ${id}: paste it in a dashboard's path view`;
}

function describe(s: ClientStatus): [string, boolean] {
  switch (s.type) {
    case 'connected':
      return [`connected to the relay as ${s.address}${s.resumed ? ' (session resumed)' : ''}`, false];
    case 'disconnected':
      return [`disconnected (${s.error.code})${s.willReconnect ? `, retrying in ${Math.round(s.retryInMs / 100) / 10} s` : ''}`, true];
    case 'reconnecting':
      return [`reconnecting (attempt ${s.attempt})…`, true];
    case 'closed':
      return [`closed${s.error === undefined ? '' : ` (${s.error.code}): reload the page for a new guest`}`, true];
  }
}

let online: string[] = [];

/** Redraws the list of who is online and the choice of recipients. */
function showOnline(me: string): void {
  const list = el<HTMLUListElement>('online');
  list.replaceChildren(
    ...online.map((a) => {
      const li = document.createElement('li');
      li.textContent = a === me ? `${a} (you)` : a;
      if (a === me) li.className = 'me';
      return li;
    }),
  );
  el('online-count').textContent = `(${online.length})`;
  const chosen = toSelect.value;
  const fixed = Array.from(toSelect.options).filter((o) => o.value === 'alice' || o.value === 'all');
  const others = online
    .filter((a) => a !== me)
    .map((a) => {
      const o = document.createElement('option');
      o.value = a;
      o.textContent = a;
      return o;
    });
  toSelect.replaceChildren(...fixed, ...others);
  toSelect.value = Array.from(toSelect.options).some((o) => o.value === chosen) ? chosen : 'alice';
}

async function watchAlice(client: Client, alice: string): Promise<void> {
  const state = el('alice-state');
  try {
    for await (const e of client.watch(alice)) {
      state.textContent = e.state;
      state.className = `state ${e.state}`;
    }
  } catch (err) {
    state.textContent = `not known (${(err as Error).message})`;
  }
}

function onMessage(m: Message, g: Grant): void {
  let msg: RoomMessage;
  try {
    msg = m.json<RoomMessage>();
  } catch {
    log(m.from, m.text(), m.from === g.alice ? 'alice' : 'other', m.id);
    return;
  }
  if (msg.t === 'roster' && m.from === g.alice && Array.isArray(msg.online)) {
    online = msg.online.filter((a): a is string => typeof a === 'string');
    showOnline(g.address);
  } else if (msg.t === 'say' && typeof msg.text === 'string') {
    if (m.from === g.alice) log(m.from, msg.text, 'alice', m.id);
    else log(msg.all === true ? `${m.from} (to all)` : m.from, msg.text, 'other', m.id);
  }
}

async function main(): Promise<void> {
  status('asking the demo server for a guest token…');
  const r = await fetch('/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  if (!r.ok) throw new Error(`no guest token: ${r.status} ${await r.text()}`);
  const g = (await r.json()) as Grant;
  status(`connecting to the relay ${g.url} as ${g.address}…`);
  const client = await connect({ url: g.url, name: g.name, token: g.token });
  let hello = false;
  client.onStatus((s) => {
    status(...describe(s));
    // Back after a break: alice may have seen this visitor go; it says hello again to be listed.
    if (s.type === 'connected' && hello) client.send(g.alice, JSON.stringify({ t: 'hello' } satisfies RoomMessage)).catch(() => undefined);
  });
  status(`connected to the relay as ${client.address}`);
  el('me').textContent = client.address;
  // Alice keeps the list of who is online by watching her visitors.
  await client.allowWatchers([g.alice]);
  void watchAlice(client, g.alice);
  await client.send(g.alice, JSON.stringify({ t: 'hello' } satisfies RoomMessage));
  hello = true;
  sendButton.disabled = false;
  el<HTMLFormElement>('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = textInput.value.trim();
    if (text === '') return;
    textInput.value = '';
    const to = toSelect.value;
    const targets = to === 'alice' ? [g.alice] : to === 'all' ? online.filter((a) => a !== g.address) : [to];
    if (targets.length === 0) return void log('(nobody)', 'no other visitor is online: open this page in another tab', 'note');
    const line = log(`you → ${to === 'all' ? 'all visitors' : targets[0]}`, text, 'mine');
    const body = JSON.stringify({ t: 'say', text, ...(to === 'all' ? { all: true } : {}) } satisfies RoomMessage);
    for (const t of targets) {
      client.send(t, body).then(
        (r) => targets.length === 1 && tag(line, r.id),
        (err: Error) => log('(not sent)', `to ${t}: ${err.message}`, 'note'),
      );
    }
  });
  for await (const m of client) onMessage(m, g);
}

main().catch((err: Error) => status(`error: ${err.message}`, true));
