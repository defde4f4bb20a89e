import { createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { JsonWebKeySet } from '../storage/repositories/clients.ts';
import { assertionAlgorithmsFor, CLIENT_ASSERTION_ALGORITHMS, rsaKeyRefusal } from './client-auth/assertion.ts';
import { ValidationError } from './validation.ts';

// Members that carry private or symmetric key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

const isPrivateJwk = (key: unknown): boolean => typeof key === 'object' && key !== null && PRIVATE_MEMBERS.some((member) => Object.hasOwn(key, member));

/** Whether a would-be JWK Set carries private or secret key material in any key (so it must not be shown again). */
export function holdsPrivateKeyMaterial(jwks: unknown): boolean {
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  return Array.isArray(keys) && keys.some(isPrivateJwk);
}

/**
 * A client's JWK Set for `private_key_jwt`: 1–10 public signing keys (RSA of 2048 to 4096 bits with
 * e = 65537, which bounds what verifying costs — see rsaKeyRefusal; EC on P-256, P-384 or P-521, OKP
 * on Ed25519), each one able to verify the client's assertions with an algorithm this server accepts
 * (assertionAlgorithmsFor): a key that never could is refused here, not found out at the token
 * endpoint. A private key pasted by mistake is refused, never stored.
 */
export function checkJwks(value: unknown): JsonWebKeySet | null {
  if (value === undefined || value === null) return null;
  const fail = (message: string) => new ValidationError('jwks', message);
  const keys = (value as { keys?: unknown }).keys;
  if (typeof value !== 'object' || Array.isArray(value) || !Array.isArray(keys)) throw fail('jwks must be a JWK Set: {"keys": [ … ]}');
  if (keys.length === 0 || keys.length > 10) throw fail('a JWK Set for client authentication holds 1 to 10 keys');
  // Before anything writes it out: JSON.stringify recurses, and a body of 64 KiB nests thousands of
  // levels deep, past the call stack (a RangeError, answered 500).
  if (nestedDeeperThan(value, MAX_JWKS_DEPTH)) throw fail(`the JWK Set is nested deeper than ${MAX_JWKS_DEPTH} levels, as no JWK Set is`);
  if (JSON.stringify(value).length > 32 * 1024) throw fail('the JWK Set is larger than 32 KiB');
  const kids = new Set<unknown>();
  keys.forEach((key: unknown, i) => {
    if (typeof key !== 'object' || key === null || Array.isArray(key)) throw fail(`key ${i + 1} is not a JWK`);
    const jwk = key as Record<string, unknown>;
    // Named by its kid too where it has a sensible one: that is how its owner knows it.
    const which = typeof jwk.kid === 'string' && jwk.kid !== '' && jwk.kid.length <= 200 ? `key ${i + 1} (kid "${jwk.kid}")` : `key ${i + 1}`;
    if (isPrivateJwk(jwk)) {
      throw fail(`${which} holds private or secret key material: register the public key only, and keep the private key with the client`);
    }
    if (!['RSA', 'EC', 'OKP'].includes(String(jwk.kty))) throw fail(`${which}: kty must be RSA, EC or OKP`);
    if (jwk.use !== undefined && jwk.use !== 'sig') throw fail(`${which}: use must be "sig"`);
    if (jwk.alg !== undefined && !(CLIENT_ASSERTION_ALGORITHMS as readonly unknown[]).includes(jwk.alg)) {
      throw fail(`${which}: alg must be one of ${CLIENT_ASSERTION_ALGORITHMS.join(', ')}`);
    }
    if (jwk.kid !== undefined) {
      if (typeof jwk.kid !== 'string' || jwk.kid === '' || jwk.kid.length > 200) throw fail(`${which}: kid must be a string of 1 to 200 characters`);
      if (kids.has(jwk.kid)) throw fail(`${which}: the kid "${jwk.kid}" is used twice`);
      kids.add(jwk.kid);
    }
    if (jwk.key_ops !== undefined) {
      const ops: unknown = jwk.key_ops;
      // RFC 7517 §4.3: an array of strings, none of them twice.
      if (!Array.isArray(ops) || !ops.every((op) => typeof op === 'string')) throw fail(`${which}: key_ops must be an array of strings, such as ["verify"]`);
      if (new Set(ops).size !== ops.length) throw fail(`${which}: key_ops lists an operation twice`);
      // The key verifies the client's assertions (RFC 7523 §2.2); a key whose key_ops leaves that out
      // is never used for it. And a public key does nothing else here: WebCrypto, which verifies,
      // refuses to load a public signing key declared for any other operation.
      if (!ops.includes('verify')) throw fail(`${which}: key_ops must include "verify", or the key can never verify the client's assertions`);
      const other = ops.find((op) => op !== 'verify');
      if (other !== undefined) throw fail(`${which}: key_ops may hold only "verify" (not "${other}"): a public key that authenticates a client only verifies`);
    }
    // The Web Cryptography API's JsonWebKey member: a key with any other value is never selected.
    if (jwk.ext !== undefined && typeof jwk.ext !== 'boolean') throw fail(`${which}: ext must be true or false`);
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch {
      throw fail(`${which} is not a valid public key`);
    }
    const outOfBounds = jwk.kty === 'RSA' ? rsaKeyRefusal(publicKey) : undefined;
    if (outOfBounds) throw fail(`${which}: ${outOfBounds}`);
    // jose picks a key for an assertion by its alg header, and only a key of the matching type and
    // curve — and of that alg, when the key names one (RFC 7517 §4.4) — is ever tried.
    const usable = assertionAlgorithmsFor(jwk);
    const kind = jwk.kty === 'RSA' ? 'an RSA key' : `an ${String(jwk.kty)} key on the curve ${JSON.stringify(jwk.crv)}`;
    if (usable.length === 0) throw fail(`${which}: ${kind} verifies none of the algorithms accepted for client assertions (${CLIENT_ASSERTION_ALGORITHMS.join(', ')})`);
    if (jwk.alg !== undefined && !(usable as readonly unknown[]).includes(jwk.alg)) {
      throw fail(`${which}: alg "${String(jwk.alg)}" does not fit ${kind}, which verifies ${usable.join(', ')}`);
    }
    if (jwk.x5c !== undefined) checkCertificateChain(jwk.x5c, publicKey, (message) => fail(`${which}: ${message}`));
  });
  return { keys: keys as Array<Record<string, unknown>> };
}

// RFC 4648 §4 base64, padded: the alphabet of x5c, where base64url's - and _ have no place.
/**
 * A JWK Set nests its keys (set, `keys`, key) and their arrays (`x5c`, `key_ops`, and an RSA private
 * key's `oth`, of objects): five levels, with room to spare.
 */
const MAX_JWKS_DEPTH = 8;

/** Whether `value` has arrays or objects nested more than `levels` deep; never recurses further. */
function nestedDeeperThan(value: unknown, levels: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (levels === 0) return true;
  return Object.values(value).some((member) => nestedDeeperThan(member, levels - 1));
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * RFC 7517 §4.7: x5c is a non-empty array of base64 (not base64url) DER certificates, and "the key
 * in the first certificate MUST match the public key represented by other members of the JWK".
 */
function checkCertificateChain(x5c: unknown, publicKey: KeyObject, fail: (message: string) => ValidationError): void {
  if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((value) => typeof value === 'string')) {
    throw fail('x5c must be an array of base64-encoded certificates (strings)');
  }
  x5c.forEach((value: string, i) => {
    const which = `certificate ${i + 1} of x5c`;
    if (value === '' || !BASE64.test(value)) throw fail(`${which} is not base64 (x5c uses base64 with + and /, not base64url, and no line breaks)`);
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(Buffer.from(value, 'base64'));
    } catch {
      throw fail(`${which} is not a DER-encoded X.509 certificate`);
    }
    if (i === 0 && !certificate.publicKey.equals(publicKey)) throw fail('the first certificate of x5c holds another key than the JWK');
  });
}
