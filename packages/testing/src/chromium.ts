import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

/** Flags every test launches the system's Chromium with (headless, no sandbox as root, no background traffic). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/** Chromium from the system: found, or installed as root on Debian (as the lab installs its tools). */
export function findChromium(): { path: string } | { missing: string } {
  const candidates = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
  const found = (): string | undefined =>
    candidates.find((p) => {
      try {
        accessSync(p, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  let path = found();
  if (path !== undefined) return { path };
  if (process.platform !== 'linux') return { missing: `browser tests skipped: they use Debian's chromium (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { missing: 'browser tests skipped: chromium is not installed (Debian package chromium), and only root installs it' };
  const apt = ['/usr/bin/apt-get', '/bin/apt-get'].find((p) => spawnSync(p, ['--version']).status === 0);
  if (apt === undefined) return { missing: 'browser tests skipped: chromium is not installed and apt-get is not available to install it' };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): number | null =>
    spawnSync(apt, ['install', '-y', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=120', 'chromium'], { env, timeout: 300_000, stdio: 'ignore' }).status;
  if (install() !== 0) {
    // Stale or missing package lists (a fresh container): refresh once, try again.
    spawnSync(apt, ['update', '-o', 'DPkg::Lock::Timeout=60'], { env, timeout: 120_000, stdio: 'ignore' });
    install();
  }
  path = found();
  return path !== undefined ? { path } : { missing: 'browser tests skipped: apt-get install chromium failed' };
}

