// The demo page's HTML and style, served by ./server.ts. Its code is ./page.ts (compiled to
// page.js, served as /page.js). The CSP has no 'unsafe-inline': no inline script, no style=""
// attribute, no inline handler; the page writes dynamic text with textContent only.

/** `{{RELAY_DASHBOARD}}` and `{{GATEWAY_DASHBOARD}}` are replaced by the admin listeners' URLs (escaped). */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Postern demo: a chat across a firewall</title>
<link rel="stylesheet" href="/style.css">
<script type="module" src="/page.js"></script>
</head>
<body>
<header>
  <h1>Postern demo</h1>
  <p id="status" class="status">connecting…</p>
</header>
<main>
  <section class="chat" aria-label="chat">
    <p class="explain">You are <strong id="me">…</strong>, an agent <em>outside</em>, connected to the
    relay from this browser tab. <strong>alice@acme</strong> is <em>inside</em> the firewall: her
    gateway dialed out to the relay and keeps one tunnel; nothing dials in. Open this page in
    another tab to chat between tabs.</p>
    <p class="presence">alice@acme is <span id="alice-state" class="state">…</span></p>
    <h2>Online here <span id="online-count" class="count"></span></h2>
    <ul id="online" class="online-list"></ul>
    <ol id="log" class="log" aria-live="polite"></ol>
    <form id="form" class="compose">
      <label for="to">to</label>
      <select id="to"><option value="alice">alice@acme</option><option value="all">all visitors</option></select>
      <input id="text" autocomplete="off" maxlength="500" placeholder="write a message" aria-label="message">
      <button id="send" type="submit" disabled>Send</button>
    </form>
  </section>
  <section class="dashboards" aria-label="dashboards">
    <figure>
      <figcaption>Relay, on the internet side: its dashboard</figcaption>
      <iframe id="relay-dashboard" title="the relay's dashboard" src="{{RELAY_DASHBOARD}}"></iframe>
    </figure>
    <figure>
      <figcaption>Gateway of acme, inside the firewall: its dashboard</figcaption>
      <iframe id="gateway-dashboard" title="the gateway's dashboard" src="{{GATEWAY_DASHBOARD}}"></iframe>
    </figure>
  </section>
</main>
</body>
</html>
`;

export const STYLE_CSS = `*, *::before, *::after { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body { font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f4f5f8; display: flex; flex-direction: column; }
header { display: flex; align-items: baseline; gap: 1rem; padding: .5rem 1rem; background: #1d2330; color: #fff; }
h1 { font-size: 1.1rem; margin: 0; }
h2 { font-size: .9rem; margin: .5rem 0 .25rem; }
.status { margin: 0; opacity: .85; }
.status.bad { color: #ffb4a8; }
main { flex: 1; min-height: 0; display: grid; grid-template-columns: minmax(320px, 420px) 1fr; gap: .75rem; padding: .75rem; }
.chat { display: flex; flex-direction: column; min-height: 0; background: #fff; border: 1px solid #d5d9e2; border-radius: 6px; padding: .75rem; }
.explain { margin: 0 0 .5rem; color: #3c4456; }
.presence { margin: 0; }
.state { font-weight: 600; }
.state.online { color: #16794a; }
.state.offline, .state.unreachable { color: #b3261e; }
.count { font-weight: normal; color: #68708a; }
.online-list { list-style: none; margin: 0 0 .5rem; padding: 0; display: flex; flex-wrap: wrap; gap: .25rem; }
.online-list li { background: #e8edf8; border-radius: 999px; padding: 0 .5rem; }
.online-list li.me { background: #d4f0e0; }
.log { flex: 1; min-height: 0; overflow-y: auto; list-style: none; margin: 0; padding: .5rem; border: 1px solid #e2e5ec; border-radius: 4px; background: #fafbfc; }
.log li { margin: 0 0 .35rem; overflow-wrap: anywhere; }
.log .from { font-weight: 600; margin-right: .4rem; }
.log li.mine .from { color: #16794a; }
.log li.alice .from { color: #7a3fb0; }
.log li.note { color: #68708a; font-style: italic; }
.compose { display: flex; gap: .35rem; margin-top: .5rem; align-items: center; }
.compose input { flex: 1; min-width: 0; padding: .35rem; }
.compose select, .compose button { padding: .3rem .5rem; }
.dashboards { display: grid; grid-template-rows: 1fr 1fr; gap: .75rem; min-height: 0; }
figure { margin: 0; display: flex; flex-direction: column; min-height: 0; background: #fff; border: 1px solid #d5d9e2; border-radius: 6px; overflow: hidden; }
figcaption { padding: .3rem .6rem; font-weight: 600; background: #e8edf8; }
iframe { flex: 1; width: 100%; min-height: 0; border: 0; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } .dashboards { grid-template-rows: 480px 480px; } }
`;
