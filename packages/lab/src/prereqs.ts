// What the lab needs from the machine, and getting it: root, Linux network namespaces, and the
// programs ip, ss, tc, iptables, openssl (for its CAs; and tinyproxy for the proxy LAN). As root on
// a Debian-like system a missing program is installed with apt-get, bounded in time. The answer
// is either the full paths of the programs or one message naming everything that is missing.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { sh } from './sh.js';

export type Tool = 'ip' | 'ss' | 'tc' | 'iptables' | 'openssl' | 'tinyproxy';

/** The Debian package that brings each program (tinyproxy-bin: the binary without a service). */
const PACKAGE: Record<Tool, string> = { ip: 'iproute2', ss: 'iproute2', tc: 'iproute2', iptables: 'iptables', openssl: 'openssl', tinyproxy: 'tinyproxy-bin' };

/** apt-get install may take this long (it waits up to half of it for another apt's lock). */
const INSTALL_MS = 180_000;
/** apt-get update, when the package lists are stale or absent. */
const UPDATE_MS = 120_000;

/** Full paths of the programs that were asked for. */
export type Tools = Readonly<Partial<Record<Tool, string>>>;

export type Prerequisites = { ok: true; tools: Tools; installed: string[] } | { ok: false; missing: string };

/** The full path of `name` on PATH or in the sbin directories (root's tools live there). */
export function findProgram(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    if (d === '') continue;
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function locate(wanted: readonly Tool[]): { found: Partial<Record<Tool, string>>; absent: Tool[] } {
  const found: Partial<Record<Tool, string>> = {};
  const absent: Tool[] = [];
  for (const t of wanted) {
    const p = findProgram(t);
    if (p === undefined) absent.push(t);
    else found[t] = p;
  }
  return { found, absent };
}

function lastLine(s: string): string {
  return s.trim().split('\n').filter((l) => l.trim() !== '').pop() ?? '(no output)';
}

/** Installs Debian packages; undefined on success, else why not. */
async function aptInstall(packages: readonly string[]): Promise<string | undefined> {
  const apt = findProgram('apt-get');
  if (apt === undefined) return 'apt-get is not available to install them';
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): ReturnType<typeof sh> =>
    sh(apt, ['install', '-y', '--no-install-recommends', '-o', `DPkg::Lock::Timeout=${INSTALL_MS / 2000}`, ...packages], {
      timeoutMs: INSTALL_MS,
      allowFail: true,
      env,
    });
  let r = await install();
  if (r.code === 0) return undefined;
  // Stale or missing package lists (a fresh container): refresh once, try again.
  const update = await sh(apt, ['update', '-o', `DPkg::Lock::Timeout=${UPDATE_MS / 2000}`], { timeoutMs: UPDATE_MS, allowFail: true, env });
  if (update.code !== 0) return `apt-get update failed (${update.code === null ? 'timed out' : `exit ${update.code}`}): ${lastLine(update.stderr || update.stdout)}`;
  r = await install();
  if (r.code === 0) return undefined;
  return `apt-get install ${packages.join(' ')} failed (${r.code === null ? 'timed out' : `exit ${r.code}`}): ${lastLine(r.stderr || r.stdout)}`;
}

/**
 * Checks (and as root installs) what the lab needs. `wanted` defaults to ip, ss, tc, iptables and openssl.
 * Never throws: anything in the way comes back as `missing`.
 */
export async function prerequisites(wanted: readonly Tool[] = ['ip', 'ss', 'tc', 'iptables', 'openssl']): Promise<Prerequisites> {
  const prefix = 'network lab unavailable: ';
  if (process.platform !== 'linux') return { ok: false, missing: `${prefix}needs Linux network namespaces (this is ${process.platform})` };
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) return { ok: false, missing: `${prefix}needs root to create network namespaces, veth links and iptables rules (running as uid ${uid})` };
  let { found, absent } = locate(wanted);
  const installed: string[] = [];
  if (absent.length > 0) {
    const packages = [...new Set(absent.map((t) => PACKAGE[t]))];
    const why = await aptInstall(packages);
    ({ found, absent } = locate(wanted));
    const names = absent.map((t) => `${t} (Debian package ${PACKAGE[t]})`).join(', ');
    if (absent.length > 0) return { ok: false, missing: `${prefix}missing ${names}; ${why ?? 'installed, yet still not found'}` };
    installed.push(...packages);
  }
  const tools: Tools = found;
  const ip = found.ip ?? 'ip';
  const iptables = found.iptables ?? 'iptables';
  // Root is not enough in a container without CAP_SYS_ADMIN / CAP_NET_ADMIN: try it.
  const probe = `pl-${process.pid}-probe`;
  const add = await sh(ip, ['netns', 'add', probe], { allowFail: true });
  if (add.code !== 0) return { ok: false, missing: `${prefix}\`ip netns add\` failed: ${lastLine(add.stderr)}` };
  const ipt = await sh(ip, ['netns', 'exec', probe, iptables, '-t', 'nat', '-S'], { allowFail: true });
  await sh(ip, ['netns', 'del', probe], { allowFail: true });
  if (ipt.code !== 0) return { ok: false, missing: `${prefix}iptables (nat table) does not work in a namespace: ${lastLine(ipt.stderr)}` };
  return { ok: true, tools, installed };
}
