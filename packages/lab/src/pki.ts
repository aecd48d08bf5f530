// The lab's certificates, made with the `openssl` command (Node can make keys but cannot sign
// X.509 certificates). Unlike makeTestPki() of @postern/testing, which is fixed to loopback
// names, a lab CA issues certificates for whatever addresses the lab uses. Files live in a
// directory the caller owns (the lab's temporary directory) and go with it.
import { X509Certificate, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sh } from './sh.js';

export interface LabCert {
  /** PEM files: the certificate and its private key. */
  certPath: string;
  keyPath: string;
  /** SHA-256 of the certificate's DER, `AB:CD:...` (what --fingerprint takes). */
  fingerprint: string;
}

export interface LabCa {
  /** The CA's PEM certificate: what a client trusts with --ca. */
  readonly caPath: string;
  /** A server certificate signed by this CA for `altNames`, e.g. ['IP:10.77.0.2', 'DNS:relay.lab']. */
  issue(name: string, altNames: readonly string[]): Promise<LabCert>;
}

/** Certificates are valid for two days: long enough for any run, useless afterwards. */
const DAYS = '2';
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/**
 * Makes a CA called `commonName` in `dir`, its files named after `file` (`FILE.crt`, `FILE.key`).
 * `openssl` is the program's path. Throws (LabCommandError) with openssl's output when it fails.
 */
export async function makeLabCa(openssl: string, dir: string, file: string, commonName: string): Promise<LabCa> {
  const at = (name: string): string => join(dir, name);
  const run = (args: string[]): Promise<unknown> => sh(openssl, args, { timeoutMs: 15_000 });
  await writeFile(
    at(`${file}.cnf`),
    [
      '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', `CN = ${commonName}`,
      '[v3_ca]', 'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign', 'subjectKeyIdentifier = hash', '',
    ].join('\n'),
  );
  await run(['req', '-x509', '-new', '-config', at(`${file}.cnf`), '-extensions', 'v3_ca', ...EC, '-keyout', at(`${file}.key`), '-out', at(`${file}.crt`), '-days', DAYS]);
  const caPath = at(`${file}.crt`);
  return {
    caPath,
    async issue(name, altNames) {
      const base = `${file}-${name}`;
      await writeFile(at(`${base}.cnf`), `[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = ${name}\n`);
      await writeFile(
        at(`${base}.ext`),
        [
          'basicConstraints = critical,CA:FALSE',
          'keyUsage = critical,digitalSignature',
          'extendedKeyUsage = serverAuth',
          `subjectAltName = ${altNames.join(',')}`,
          'authorityKeyIdentifier = keyid',
          '',
        ].join('\n'),
      );
      await run(['req', '-new', '-config', at(`${base}.cnf`), ...EC, '-keyout', at(`${base}.key`), '-out', at(`${base}.csr`)]);
      await run([
        'x509', '-req', '-in', at(`${base}.csr`), '-CA', caPath, '-CAkey', at(`${file}.key`), '-set_serial', `0x${randomBytes(8).toString('hex')}`,
        '-days', DAYS, '-extfile', at(`${base}.ext`), '-out', at(`${base}.crt`),
      ]);
      const certPath = at(`${base}.crt`);
      return { certPath, keyPath: at(`${base}.key`), fingerprint: new X509Certificate(await readFile(certPath)).fingerprint256 };
    },
  };
}
