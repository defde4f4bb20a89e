import { jwtVerify, type JWTPayload } from 'jose';
import type { KeyStore } from './keys.ts';

export interface VerifiedAccessToken {
  payload: JWTPayload & { client_id?: unknown; scope?: unknown; grant_id?: unknown; api_key_id?: unknown; derived_from?: unknown };
  jti: string | undefined;
  /**
   * The `jti`s of the access tokens it was derived from (`derived_from`: the token a project token
   * was minted with, the subject and actor tokens of an exchange, and what those derived from).
   */
  derivedFrom: string[];
  /** The grant it was issued under or derived from (`grant_id`), if any. */
  grantId: string | undefined;
  /** The API key it was derived from (`api_key_id`: a project token minted with a key), if any. */
  apiKeyId: string | undefined;
  scopes: string[];
}

/**
 * Verifies an access token this server issued: signature by a published access-token key (so a
 * token of a withdrawn key fails), `typ: at+jwt`, issuer, audience and expiry. Revocation is the
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
      { issuer: options.issuer, audience: options.audience, typ: 'at+jwt', currentDate: new Date(now * 1000), clockTolerance: options.expiredForAtMost ?? 0 },
    );
    return {
      payload,
      jti: typeof payload.jti === 'string' ? payload.jti : undefined,
      derivedFrom: Array.isArray(payload.derived_from) ? payload.derived_from.filter((jti): jti is string => typeof jti === 'string') : [],
      grantId: typeof payload.grant_id === 'string' ? payload.grant_id : undefined,
      apiKeyId: typeof payload.api_key_id === 'string' ? payload.api_key_id : undefined,
      scopes: typeof payload.scope === 'string' && payload.scope ? payload.scope.split(' ') : [],
    };
  } catch {
    return undefined;
  }
}
