// A throwaway certificate authority for TLS tests, made with the `openssl` command (Node can
// make keys but cannot sign X.509 certificates). Everything lives in one temporary directory.
import { execFileSync } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  /** PEM certificate and its PEM private key, as text and as files. */
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
  /** SHA-256 of the certificate's DER, `AB:CD:...` as openssl prints it. */
  fingerprint: string;
}

export interface TestPki {
  dir: string;
  /** The CA's PEM certificate, as text and as a file. */
  ca: string;
  caPath: string;
  /** A server certificate for `localhost`, 127.0.0.1 and ::1, signed by the CA. */
  server: TestCert;
  /** A server certificate, signed by the CA, for `elsewhere.invalid` only: fails host name checks on loopback. */
  otherName: TestCert;
  /** Removes the directory. */
  remove(): void;
}

/** Whether the `openssl` command runs here; tests needing it should say so when it does not. */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function leaf(dir: string, name: string, altNames: string): TestCert {
  writeFileSync(join(dir, `${name}.cnf`), `[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = ${name}\n`);
  writeFileSync(
    join(dir, `${name}.ext`),
    [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'extendedKeyUsage = serverAuth',
      `subjectAltName = ${altNames}`,
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'),
  );
  openssl(dir, ['req', '-new', '-config', `${name}.cnf`, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`]);
  openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`,
  ]);
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  const cert = readFileSync(certPath, 'utf8');
  return { cert, key: readFileSync(keyPath, 'utf8'), certPath, keyPath, fingerprint: new X509Certificate(cert).fingerprint256 };
}

/** Makes a CA and two server certificates in a new temporary directory (about 100 ms). */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'postern-pki-'));
  try {
    writeFileSync(
      join(dir, 'ca.cnf'),
      [
        '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', 'CN = Postern Test CA',
        '[v3_ca]', 'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign', 'subjectKeyIdentifier = hash', '',
      ].join('\n'),
    );
    openssl(dir, ['req', '-x509', '-new', '-config', 'ca.cnf', '-extensions', 'v3_ca', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2']);
    const caPath = join(dir, 'ca.crt');
    return {
      dir,
      ca: readFileSync(caPath, 'utf8'),
      caPath,
      server: leaf(dir, 'localhost', 'DNS:localhost,IP:127.0.0.1,IP:::1'),
      otherName: leaf(dir, 'elsewhere', 'DNS:elsewhere.invalid'),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`makeTestPki: openssl failed${stderr ? `: ${stderr}` : ''}`, { cause: err });
  }
}
