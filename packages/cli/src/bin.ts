#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import * as chatCmd from './commands/chat.js';
import { completion } from './commands/completion.js';
import { config, help as configHelp, registerCheckers } from './commands/config.js';
import * as demoCmd from './commands/demo.js';
import * as gatewayCmd from './commands/gateway.js';
import * as hubCmd from './commands/hub.js';
import * as keyCmd from './commands/key.js';
import * as listenCmd from './commands/listen.js';
import * as relayCmd from './commands/relay.js';
import * as sendCmd from './commands/send.js';
import * as setCmd from './commands/set.js';
import * as tokenCmd from './commands/token.js';
import * as watchCmd from './commands/watch.js';
import { registerCommands, str, suggest, type OptionTable } from './options.js';
import { out, printError } from './output.js';
import { routerOptions } from './router-flags.js';
import { UsageError } from './usage-error.js';

/** packages/cli/package.json, two levels above dist/src/bin.js: one version, kept by npm. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

interface Command {
  run: (argv: string[]) => Promise<number>;
  help: string;
  summary: string;
  options: OptionTable;
}

const commands: Record<string, Command> = {
  relay: { run: relayCmd.relay, help: relayCmd.help, options: relayCmd.options, summary: 'run a relay: a router on the internet that gateways dial out to' },
  gateway: { run: gatewayCmd.gateway, help: gatewayCmd.help, options: gatewayCmd.options, summary: 'run a gateway: a router inside the firewall, tunnelled to a relay' },
  hub: { run: hubCmd.hub, help: hubCmd.help, options: hubCmd.options, summary: 'run a hub: a server of a domain where agents are homed, linked to its gateways' },
  token: { run: tokenCmd.token, help: tokenCmd.help, options: tokenCmd.options, summary: 'print a credential: a token for a gateway or an agent, or a grant' },
  key: { run: keyCmd.key, help: keyCmd.help, options: keyCmd.options, summary: 'make or show Ed25519 keys (operators, domain owners, routers)' },
  listen: { run: listenCmd.listen, help: listenCmd.help, options: listenCmd.options, summary: 'connect as an agent and print the messages it receives' },
  send: { run: sendCmd.send, help: sendCmd.help, options: sendCmd.options, summary: 'connect as an agent and send messages' },
  chat: { run: chatCmd.chat, help: chatCmd.help, options: chatCmd.options, summary: 'one session as a name: print what arrives, send what is typed' },
  watch: { run: watchCmd.watch, help: watchCmd.help, options: watchCmd.options, summary: 'print the presence and properties of addresses, and every change' },
  set: { run: setCmd.set, help: setCmd.help, options: setCmd.options, summary: 'publish properties of a name (status, capabilities, a key)' },
  demo: { run: demoCmd.demo, help: demoCmd.help, options: demoCmd.options, summary: 'relay, gateway and agents in one process, messages crossing both ways' },
};

registerCommands(Object.fromEntries(Object.entries(commands).map(([n, c]) => [n, c.options])));
registerCheckers({
  relay: (p) => void routerOptions('relay', p, str(p, 'domain') ?? 'relay', ''),
  gateway: (p) => void routerOptions('gateway', p, str(p, 'domain') ?? 'example', ''),
  hub: (p) => void routerOptions('hub', p, str(p, 'domain') ?? 'example', ''),
});

const tools: Record<string, { summary: string; help: string }> = {
  config: { summary: 'check a config file and print the settings a command would run with', help: configHelp },
  completion: { summary: 'print a completion script: postern completion bash|zsh|fish', help: 'Usage: postern completion bash|zsh|fish' },
  help: { summary: "print a command's help: postern help COMMAND", help: 'Usage: postern help [COMMAND]' },
};

const usage = `Usage: postern <command> [options]

Postern carries messages to and from programs behind firewalls and NAT with no inbound port:
gateways inside dial out to relays outside, and routers meet the two sides.

Commands:
${[...Object.entries(commands), ...Object.entries(tools)].map(([name, c]) => `  ${name.padEnd(11)}${c.summary}`).join('\n')}

Options of every command may also come from $POSTERN_<OPTION> variables and a --config FILE
(TOML); see docs/CONFIG.md. Run 'postern help <command>' for its options.
postern --version (-V) prints the version: ${VERSION}.`;

function unknownCommand(cmd: string): UsageError {
  const s = suggest(cmd, [...Object.keys(commands), ...Object.keys(tools)]);
  return new UsageError(`unknown command "${cmd}"${s === undefined ? ` (commands: ${Object.keys(commands).join(', ')})` : `: did you mean ${s}?`}`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const sub = cmd === 'help' ? rest[0] : undefined;
    if (sub === undefined) {
      out(usage);
      return cmd === undefined ? 2 : 0;
    }
    const h = commands[sub]?.help ?? tools[sub]?.help;
    if (h === undefined) throw unknownCommand(sub);
    if (sub === 'completion') return completion(['--help'], []);
    out(h);
    return 0;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    out(`postern ${VERSION}`);
    return 0;
  }
  if (cmd === 'config') return config(rest);
  if (cmd === 'completion') return completion(rest, Object.entries(commands).map(([name, c]) => ({ name, summary: c.summary, table: c.options })));
  const entry = commands[cmd];
  if (entry === undefined) throw unknownCommand(cmd);
  return entry.run(rest);
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
