import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { errors, jwtVerify, type CryptoKey, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import type { ClientRepository } from '../../storage/repositories/clients.ts';
import type { ClientEntry } from '../clients.ts';

/** RFC 7523 §2.2: the one `client_assertion_type` Gatehouse accepts. */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Asymmetric algorithms only: `none` and the HMAC family can never authenticate a client here. */
export const CLIENT_ASSERTION_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export type ClientAssertionAlgorithm = (typeof CLIENT_ASSERTION_ALGORITHMS)[number];

/**
 * The accepted algorithms a client's public key can verify, by its type and curve: RSA keys the RSA
 * families (RFC 7518 §3.3, §3.5); an EC key the one ECDSA algorithm of its curve (RFC 7518 §3.4:
 * ES256 is P-256 only, ES384 P-384, ES512 P-521); an OKP key only on Ed25519 (RFC 8037 §3.1; jose
 * verifies EdDSA with Ed25519 alone). None for anything else — X25519 and X448 agree on keys and
 * sign nothing, and secp256k1 (ES256K) is not accepted: such a key could never verify an assertion.
 */
export function assertionAlgorithmsFor(jwk: { kty?: unknown; crv?: unknown }): readonly ClientAssertionAlgorithm[] {
  switch (jwk.kty) {
    case 'RSA':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'EC':
      return jwk.crv === 'P-256' ? ['ES256'] : jwk.crv === 'P-384' ? ['ES384'] : jwk.crv === 'P-521' ? ['ES512'] : [];
    case 'OKP':
      return jwk.crv === 'Ed25519' ? ['EdDSA', 'Ed25519'] : [];
    default:
      return [];
  }
}

/**
 * The RSA keys client assertions are verified with: a modulus of 2048 to 4096 bits and the public
 * exponent 65537. Verifying is a modular exponentiation by e modulo n, run on the thread pool that
 * every token signature shares, and an assertion without `kid` is tried with each of up to 10 of the
 * client's keys. One verification (OpenSSL 3, Node 24) with e = 65537 costs 0.08 ms at 2048 bits,
 * 0.18 ms at 4096, 0.4 ms at 8192 and 1.1 ms at 16384; with a larger exponent it grows with e's
 * length: 2 ms at 2048 bits and 9 ms at 3072 with an exponent as long as the modulus, 12.6 ms at
 * 16384 bits with e = 2^64 − 1. Within these bounds an assertion costs at most about 2 ms, as much as
 * signing two RS256 ID tokens. 65537 is what key generators make (Go's crypto/rsa refuses any
 * exponent above 2^31 − 1), and Let's Encrypt and AWS KMS take no RSA key above 4096 bits either.
 */
const RSA_MODULUS_BITS = { min: 2048, max: 4096 };
const RSA_PUBLIC_EXPONENT = 65537n;

/** What the RSA bounds are, in a sentence a key's owner can act on (and in ASCII, as an error_description must be). */
export const RSA_KEY_BOUNDS = `RSA keys must have ${RSA_MODULUS_BITS.min} to ${RSA_MODULUS_BITS.max} bits and the public exponent ${RSA_PUBLIC_EXPONENT}`;

/** Why an RSA public key is not one client assertions are verified with, or undefined when it is. */
export function rsaKeyRefusal(publicKey: KeyObject): string | undefined {
  const { modulusLength = 0, publicExponent } = publicKey.asymmetricKeyDetails ?? {};
  if (modulusLength < RSA_MODULUS_BITS.min) return `RSA keys must have at least ${RSA_MODULUS_BITS.min} bits`;
  if (modulusLength > RSA_MODULUS_BITS.max) return `RSA keys may have at most ${RSA_MODULUS_BITS.max} bits (this one has ${modulusLength})`;
  if (publicExponent !== RSA_PUBLIC_EXPONENT) return `RSA keys must have the public exponent ${RSA_PUBLIC_EXPONENT} (e "AQAB"), as key generators make them`;
  return undefined;
}

/**
 * Whether client assertions may be verified with a stored key: not with an RSA key outside the
 * bounds of rsaKeyRefusal, which a client registered before they were set. The set was checked by
 * checkJwks when stored; a key that does not even parse is left to jose, which cannot use it either.
 */
export function isWithinBounds(jwk: Record<string, unknown>): boolean {
  if (jwk.kty !== 'RSA') return true;
  try {
    return rsaKeyRefusal(createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' })) === undefined;
  } catch {
    return true;
  }
}

/** An assertion may not be valid for longer than this, so that its `jti` need not be kept for long. */
const MAX_LIFETIME_SECONDS = 3600;
const CLOCK_TOLERANCE_SECONDS = 30;

/**
 * `private_key_jwt` (RFC 7523 §3, OpenID Connect Core §9): a JWT the client signed with one of its
 * registered keys, with `iss` and `sub` the client id, an `aud` naming this server — its issuer
 * identifier, its token endpoint, or the introspection or revocation endpoint it is sent to (as
 * client libraries that address the assertion to the endpoint they call do) — an `exp` at most an
 * hour away and a `jti` that is accepted once, on any instance.
 */
export class ClientAssertions {
  #repository: Pick<ClientRepository, 'recordAssertion'>;
  #audiences: string[];

  constructor(repository: Pick<ClientRepository, 'recordAssertion'>, issuer: string) {
    this.#repository = repository;
    const base = issuer.replace(/\/+$/, '');
    // Any of this server's endpoints that authenticate clients names this server: an assertion
    // cannot be used twice whichever it names, as its jti is accepted once.
    this.#audiences = [issuer, `${base}/token`, `${base}/access_token`, `${base}/introspect`, `${base}/revoke`];
  }

  /** Why the assertion does not authenticate the client, or undefined when it does (and its `jti` is now used). */
  async refusal({ client, assertionKeys, keysSetAside }: ClientEntry, assertion: string, now: number): Promise<string | undefined> {
    // Told, so that the client's developer knows to register a new key rather than look for a bug.
    const setAside = keysSetAside > 0 ? `${keysSetAside === 1 ? "one of the client's registered keys is" : `${keysSetAside} of the client's registered keys are`} no longer accepted: ${RSA_KEY_BOUNDS}` : undefined;
    if (!assertionKeys) return setAside ? `the client assertion cannot be verified: ${setAside}` : 'the client has no keys registered for private_key_jwt';
    let payload;
    try {
      payload = await verifyWithAny(assertion, assertionKeys, {
        issuer: client.id,
        subject: client.id,
        audience: this.#audiences,
        algorithms: [...CLIENT_ASSERTION_ALGORITHMS],
        requiredClaims: ['exp', 'jti'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate: new Date(now * 1000),
      });
    } catch (error) {
      const why = describe(error);
      return setAside && isKeyMismatch(error) ? `${why}; ${setAside}` : why;
    }
    const { exp, jti } = payload as { exp: number; jti: unknown };
    if (exp - now > MAX_LIFETIME_SECONDS) return `the client assertion must expire within ${MAX_LIFETIME_SECONDS} seconds`;
    // No jti is that long or holds a NUL (which PostgreSQL text cannot even hold): none is recorded.
    if (typeof jti !== 'string' || jti === '' || jti.length > 256 || jti.includes('\0')) return 'the client assertion needs a jti of 1 to 256 characters, none of them NUL';
    // RFC 7519 §2: a NumericDate may hold fractions of a second; the ledger keeps whole seconds.
    const recorded = await this.#repository.recordAssertion(client.id, jti, Math.ceil(exp) + CLOCK_TOLERANCE_SECONDS);
    if (recorded === 'replayed') return 'the client assertion was used before';
    // Deleted through another instance within this one's few seconds of caching it.
    if (recorded === 'no client') return 'client authentication failed';
    return undefined;
  }
}

/**
 * Verifies with the one registered key the header selects, or, where several could have signed it
 * — an assertion without `kid` while the client rotates between two keys of one type, or keys
 * registered without `kid` — with each of them in turn (at most 10), as node-oidc-provider and
 * Nimbus do: jose leaves that to its caller and otherwise refuses every such assertion. Only a bad
 * signature moves on to the next key; claims are checked once a key has verified the signature.
 */
async function verifyWithAny(assertion: string, keys: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(assertion, keys, options)).payload;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    for await (const key of error as errors.JWKSMultipleMatchingKeys & AsyncIterable<CryptoKey>) {
      try {
        return (await jwtVerify(assertion, key, options)).payload;
      } catch (attempt) {
        if (!(attempt instanceof errors.JWSSignatureVerificationFailed)) throw attempt;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

/** Whether no key the assertion could be verified with verified it: one set aside might have. */
const isKeyMismatch = (error: unknown): boolean =>
  error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWSSignatureVerificationFailed;

/** What was wrong, in words a developer can act on; nothing about the keys themselves. */
function describe(error: unknown): string {
  const { code, claim } = error as { code?: string; claim?: string };
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'the client assertion has expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return claim === 'aud'
        ? 'the client assertion must name this server in aud (its issuer identifier, or its token, introspection or revocation endpoint)'
        : `the client assertion's ${claim ?? 'claims'} claim is missing or wrong`;
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return `the client assertion must be signed with one of ${CLIENT_ASSERTION_ALGORITHMS.join(', ')}`;
    default:
      return "the client assertion could not be verified with the client's registered keys";
  }
}
