import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { KeyStore } from './keys.ts';

export interface AccessTokenClaims {
  /** The user, or the client itself when no user is present (RFC 9068 §2.2). */
  sub: string;
  clientId: string;
  scopes: readonly string[];
  /** Delegation (RFC 8693 §4.1), project binding and the like. */
  extra?: Record<string, unknown>;
  /** Set by a caller that records the token's id before it is signed; a random UUID otherwise. */
  jti?: string;
  /**
   * The grant the token was issued under (authorization code, password with a refresh token,
   * refresh), or derived from (project tokens, delegation). Gatehouse's own endpoints refuse the
   * token once that grant is revoked.
   */
  grantId?: string;
  /**
   * The `jti`s of the access tokens it derives from, and of those they derive from (see
   * Caller.lineage): revoking any of them (RFC 7009) ends it too.
   */
  derivedFrom?: readonly string[];
  /**
   * The API keys it derives from (see Caller.apiKeyIds), in `api_key_id`: revoking any of them ends
   * it too. One id as a string, as most such tokens carry; several (a token delegated from another
   * client's token that names one, with a key as actor token) as an array.
   */
  apiKeyIds?: readonly string[];
}

export interface IssuedAccessToken {
  token: string;
  jti: string;
  expiresIn: number;
  expiresAt: number;
}

export interface AccessTokenIssuer {
  issue(claims: AccessTokenClaims, now: number, ttlSeconds?: number): Promise<IssuedAccessToken>;
  /** The `kid` that signs right now. */
  activeKid(): string;
}

/**
 * JWT access tokens per RFC 9068: `typ: at+jwt`, signed with the active access-token key, so
 * resource servers verify them locally from the JWKS.
 */
export function accessTokenIssuer(keys: KeyStore, options: { issuer: string; audience: string; ttlSeconds: number }): AccessTokenIssuer {
  return {
    activeKid: () => keys.signingKey('access').kid,
    async issue(claims, now, ttlSeconds = options.ttlSeconds) {
      const { kid, alg, key } = keys.signingKey('access');
      const jti = claims.jti ?? randomUUID();
      const expiresAt = now + ttlSeconds;
      const token = await new SignJWT({
        ...claims.extra,
        ...(claims.grantId !== undefined ? { grant_id: claims.grantId } : {}),
        ...(claims.derivedFrom !== undefined && claims.derivedFrom.length > 0 ? { derived_from: [...claims.derivedFrom] } : {}),
        ...(claims.apiKeyIds !== undefined && claims.apiKeyIds.length > 0 ? { api_key_id: claims.apiKeyIds.length === 1 ? claims.apiKeyIds[0] : [...claims.apiKeyIds] } : {}),
        client_id: claims.clientId,
        scope: claims.scopes.join(' '),
      })
        .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
        .setIssuer(options.issuer)
        .setSubject(claims.sub)
        .setAudience(options.audience)
        .setIssuedAt(now)
        .setExpirationTime(expiresAt)
        .setJti(jti)
        .sign(key);
      return { token, jti, expiresIn: ttlSeconds, expiresAt };
    },
  };
}
