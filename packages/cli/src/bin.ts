#!/usr/bin/env node
import { chat, help as chatHelp } from './commands/chat.js';
import { demo, help as demoHelp } from './commands/demo.js';
import { gateway, help as gatewayHelp } from './commands/gateway.js';
import { hub, help as hubHelp } from './commands/hub.js';
import { key, help as keyHelp } from './commands/key.js';
import { listen, help as listenHelp } from './commands/listen.js';
import { relay, help as relayHelp } from './commands/relay.js';
import { send, help as sendHelp } from './commands/send.js';
import { set, help as setHelp } from './commands/set.js';
import { token, help as tokenHelp } from './commands/token.js';
import { watch, help as watchHelp } from './commands/watch.js';
import { out, printError } from './output.js';
import { UsageError } from './usage-error.js';

const VERSION = '0.1.0';

const commands: Record<string, [(argv: string[]) => Promise<number>, string, string]> = {
  relay: [relay, relayHelp, 'run a relay: a router on the internet that gateways dial out to'],
  gateway: [gateway, gatewayHelp, 'run a gateway: a router inside the firewall, tunnelled to a relay'],
  hub: [hub, hubHelp, 'run a hub: a server of a domain where agents are homed, linked to its gateways'],
  token: [token, tokenHelp, 'print a credential: a token for a gateway or an agent, or a grant'],
  key: [key, keyHelp, 'make or show Ed25519 keys (operators, domain owners, routers)'],
  listen: [listen, listenHelp, 'connect as an agent and print the messages it receives'],
  send: [send, sendHelp, 'connect as an agent and send messages'],
  chat: [chat, chatHelp, 'one session as a name: print what arrives, send what is typed'],
  watch: [watch, watchHelp, 'print the presence and properties of addresses, and every change'],
  set: [set, setHelp, 'publish properties of a name (status, capabilities, a key)'],
  demo: [demo, demoHelp, 'relay, gateway and agents in one process, messages crossing both ways'],
};

const usage = `Usage: postern <command> [options]

Postern carries messages to and from programs behind firewalls and NAT with no inbound port:
gateways inside dial out to relays outside, and routers meet the two sides.

Commands:
${Object.entries(commands)
  .map(([name, [, , summary]]) => `  ${name.padEnd(9)}${summary}`)
  .join('\n')}

Run 'postern <command> --help' for its options. Version ${VERSION}.`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const sub = cmd === 'help' ? rest[0] : undefined;
    const entry = sub === undefined ? undefined : commands[sub];
    out(entry === undefined ? usage : entry[1]);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === 'version') {
    out(VERSION);
    return 0;
  }
  const entry = commands[cmd];
  if (entry === undefined) throw new UsageError(`unknown command "${cmd}"; commands: ${Object.keys(commands).join(', ')}`);
  return entry[0](rest);
}

// A reader that went away (`postern listen | head -1`) is not a crash: the write's own callback
// fails too, and the command ends with one line (listen acknowledges only what was written).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exitCode = 1;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = printError(err);
  },
);
