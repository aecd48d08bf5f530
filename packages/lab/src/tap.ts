// A recording TCP proxy for the lab: it forwards each connection it accepts to one target and
// prints every chunk both ways, so a test can decode what crossed a link (wire.ts). With a
// certificate it terminates TLS and speaks TLS to the target, checking the target's certificate
// against the lab CA: it then sees the plaintext, as a TLS-inspecting box does (a relay's
// operator, who holds its key, can always see this much; the test shows what there is to see).
//
//   node tap.js LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT [CERT KEY TARGET_CA]
//
// Prints, one line each:
//   tap: listening on HOST:PORT, forwarding to HOST:PORT (tls|plain)
//   tap: open N from IP:PORT via IP:PORT      (N counts connections; via: the tap's own end towards the target)
//   tap: N > BASE64                           (a chunk from the client, towards the target)
//   tap: N < BASE64                           (a chunk from the target, towards the client)
//   tap: close N
//   tap: failed N: MESSAGE                    (the target could not be reached; the client is dropped)
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [listenHost, listenPort, targetHost, targetPort, certPath, keyPath, caPath] = process.argv.slice(2);
if (targetPort === undefined) throw new Error('usage: tap.js LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT [CERT KEY TARGET_CA]');
const secure = caPath !== undefined;
const ca = secure ? readFileSync(caPath, 'utf8') : undefined;

const log = (line: string): boolean => process.stdout.write(`tap: ${line}\n`);
let count = 0;

function handle(client: net.Socket): void {
  const n = ++count;
  client.pause();
  const from = `${client.remoteAddress ?? '?'}:${client.remotePort ?? '?'}`;
  const target = secure ? tls.connect({ host: targetHost, port: Number(targetPort), ca }) : net.connect({ host: targetHost, port: Number(targetPort) });
  let open = false;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    if (open) log(`close ${n}`);
    client.destroy();
    target.destroy();
  };
  target.once(secure ? 'secureConnect' : 'connect', () => {
    open = true;
    log(`open ${n} from ${from} via ${target.localAddress ?? '?'}:${target.localPort ?? '?'}`);
    client.on('data', (d: Buffer) => {
      log(`${n} > ${d.toString('base64')}`);
      target.write(d);
    });
    target.on('data', (d: Buffer) => {
      log(`${n} < ${d.toString('base64')}`);
      client.write(d);
    });
    client.on('end', () => target.end());
    target.on('end', () => client.end());
    client.resume();
  });
  target.on('error', (e: Error) => {
    if (!open) log(`failed ${n}: ${e.message}`);
    close();
  });
  client.on('error', close);
  client.on('close', close);
  target.on('close', close);
}

const server = secure ? tls.createServer({ cert: readFileSync(certPath!), key: readFileSync(keyPath!) }, handle) : net.createServer(handle);
// A client that fails the TLS handshake: one line, no crash.
server.on('tlsClientError', (e: Error) => log(`TLS handshake failed: ${e.message}`));
server.listen(Number(listenPort), listenHost, () => log(`listening on ${listenHost}:${listenPort}, forwarding to ${targetHost}:${targetPort} (${secure ? 'tls' : 'plain'})`));
