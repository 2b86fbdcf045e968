import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors/errors.ts';

/**
 * An agent's identity, as Syncthing's devices have one: a TLS key pair made
 * on first start and kept in the state directory (mode 0600), whose id is
 * the SHA-256 of the certificate. Peers pin each other by id: no CA, nothing
 * to renew (the certificate is valid for a century), and a stolen name or
 * address is worth nothing without the key.
 */
export interface Identity {
  /** 64 lowercase hex characters: SHA-256 of the certificate's DER. */
  readonly id: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export const identityDir = (stateDir: string): string => path.join(stateDir, 'identity');

/** The id of a certificate (PEM or DER). */
export function certificateId(cert: string | Buffer): string {
  return new crypto.X509Certificate(cert).fingerprint256.replaceAll(':', '').toLowerCase();
}

/** Loads the identity, making it first if the state directory has none. */
export async function loadOrCreateIdentity(stateDir: string): Promise<Identity> {
  const dir = identityDir(stateDir);
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (fs.existsSync(certFile) || fs.existsSync(keyFile)) return readIdentity(certFile, keyFile);
  const made = await generate();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // The key first, created 0600 and exclusively: two agents starting at once cannot interleave.
  fs.writeFileSync(keyFile, made.keyPem, { mode: 0o600, flag: 'wx' });
  fs.writeFileSync(certFile, made.certPem, { mode: 0o600, flag: 'wx' });
  return made;
}

function readIdentity(certFile: string, keyFile: string): Identity {
  let certPem: string;
  let keyPem: string;
  try {
    certPem = fs.readFileSync(certFile, 'utf8');
    keyPem = fs.readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw new UsageError(`the agent's identity in ${path.dirname(certFile)} is incomplete (${(err as NodeJS.ErrnoException).code}); restore it from a backup, or remove the directory to make a new one (peers must then pin the new id)`);
  }
  const cert = new crypto.X509Certificate(certPem);
  if (!cert.checkPrivateKey(crypto.createPrivateKey(keyPem))) {
    throw new UsageError(`the agent's identity in ${path.dirname(certFile)} is inconsistent: key.pem does not belong to cert.pem`);
  }
  return { id: certificateId(certPem), certPem, keyPem };
}

/** A self-signed ECDSA P-256 certificate. The X.509 encoder is loaded only here: once per host, ever. */
async function generate(): Promise<Identity> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  // The library's types name the DOM's Crypto; Node's webcrypto is that object.
  x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[1]);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await crypto.webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.randomBytes(16).toString('hex'),
    name: 'CN=lifeboat',
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 100 * 365 * 86_400_000),
    signingAlgorithm: algorithm,
    keys: keys as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'],
    extensions: [],
  });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey as crypto.webcrypto.CryptoKey));
  const keyPem = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
  const certPem = cert.toString('pem');
  return { id: certificateId(certPem), certPem, keyPem };
}
