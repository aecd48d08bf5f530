// The service examples of deploy/systemd (issue 13 item 7) pass `systemd-analyze verify`: keys
// that exist, values it parses, a command that runs (the built `postern` stands in for
// /usr/bin/postern). Skipped where systemd-analyze is not installed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { REPO_ROOT } from './procs.js';

const UNITS = ['postern-relay.service', 'postern-gateway.service'];
const found = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const missing = found.error !== undefined || found.status !== 0;

describe('deploy/systemd units', () => {
  it('pass systemd-analyze verify', { skip: missing ? 'systemd-analyze is not installed' : false }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-units-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    for (const u of UNITS) {
      const text = readFileSync(join(REPO_ROOT, 'deploy/systemd', u), 'utf8');
      assert.match(text, /^ExecStart=\/usr\/bin\/postern /m);
      writeFileSync(join(dir, u), text.replace('/usr/bin/postern', join(REPO_ROOT, 'packages/postern/bin/postern.js')));
    }
    const r = spawnSync('systemd-analyze', ['verify', ...UNITS.map((u) => join(dir, u))], { encoding: 'utf8' });
    const said = `${r.stdout}${r.stderr}`;
    assert.equal(r.status, 0, said);
    // Unknown keys and values it cannot parse are only warnings: none is allowed either.
    assert.doesNotMatch(said, /postern-(relay|gateway)\.service/, said);
  });
});
