import { jwtVerify, type JWTPayload } from 'jose';
import type { KeyStore } from './keys.ts';

export interface VerifiedAccessToken {
  payload: JWTPayload & { client_id?: unknown; scope?: unknown; grant_id?: unknown; api_key_id?: unknown; derived_from?: unknown };
  jti: string;
  /**
   * The `jti`s of the access tokens it was derived from (`derived_from`: the token a project token
   * was minted with, the subject and actor tokens of an exchange, and what those derived from).
   */
  derivedFrom: string[];
  /** The grant it was issued under or derived from (`grant_id`), if any. */
  grantId: string | undefined;
  /**
   * The API keys it was derived from (`api_key_id`, one id or, for a token delegated from another
   * client's token that names one besides the actor's, several): a project token minted with a key,
   * an exchange with a key as subject or actor token.
   */
  apiKeyIds: string[];
  scopes: string[];
}

/**
 * RFC 9068 §2.2: claims every access token carries ("iss", "exp", "aud", "sub", "client_id", "iat",
 * "jti"); jose checks the presence of these and the types of the registered ones. Without them a
 * token would stand for its client (no `sub`), never expire (no `exp`), escape the check against a
 * client registered again under its id (no `iat`) or revocation (no `jti`).
 */
const REQUIRED_CLAIMS = ['exp', 'sub', 'client_id', 'iat', 'jti'];

/**
 * Verifies an access token this server issued: signature by a published access-token key (so a
 * token of a withdrawn key fails), `typ: at+jwt`, issuer, audience, expiry and the claims every
 * access token carries (REQUIRED_CLAIMS; `sub`, `client_id` and `jti` non-empty strings). Revocation is the
 * caller's to check, since it needs the database. `expiredForAtMost` accepts a token that expired
 * no longer ago than that many seconds: only revocation asks for it (see revoke).
 */
export async function verifyAccessToken(
  keys: KeyStore,
  options: { issuer: string; audience: string; expiredForAtMost?: number },
  token: string,
  now: number,
): Promise<VerifiedAccessToken | undefined> {
  if (token.length > 8192) return undefined;
  try {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const key = header.kid ? await keys.findPublicKey(header.kid, now) : undefined;
        if (!key || key.use !== 'access' || key.alg !== header.alg) throw new Error('unknown key');
        return key.key;
      },
      { issuer: options.issuer, audience: options.audience, typ: 'at+jwt', currentDate: new Date(now * 1000), clockTolerance: options.expiredForAtMost ?? 0, requiredClaims: REQUIRED_CLAIMS },
    );
    const { sub, client_id: clientId, jti } = payload;
    if (!isNonEmptyString(sub) || !isNonEmptyString(clientId) || !isNonEmptyString(jti)) return undefined;
    return {
      payload,
      jti,
      derivedFrom: Array.isArray(payload.derived_from) ? payload.derived_from.filter((jti): jti is string => typeof jti === 'string') : [],
      grantId: typeof payload.grant_id === 'string' ? payload.grant_id : undefined,
      apiKeyIds: typeof payload.api_key_id === 'string' ? [payload.api_key_id] : Array.isArray(payload.api_key_id) ? payload.api_key_id.filter((id): id is string => typeof id === 'string') : [],
      scopes: typeof payload.scope === 'string' && payload.scope ? payload.scope.split(' ') : [],
    };
  } catch {
    return undefined;
  }
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}
