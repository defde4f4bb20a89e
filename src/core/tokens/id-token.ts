import { createHash } from 'node:crypto';
import { SignJWT } from 'jose';
import type { User } from '../../storage/repositories.ts';
import type { KeyStore } from './keys.ts';

export interface IdTokenInput {
  user: User;
  clientId: string;
  scopes: readonly string[];
  authTime: number;
  nonce?: string | null | undefined;
  /** Adds `at_hash` (OpenID Connect Core §3.1.3.6, §3.2.2.10). */
  accessToken?: string | undefined;
  /** Adds `c_hash` (§3.3.2.11). */
  code?: string | undefined;
  /** Puts the profile and email claims in the token itself: for `response_type=id_token`, where no access token reaches userinfo. */
  includeUserClaims?: boolean;
}

/** ID tokens, signed with the ID-token key (RS256 by default: what every relying party must accept). */
export function idTokenIssuer(keys: KeyStore, options: { issuer: string; ttlSeconds: number }) {
  return {
    async issue(input: IdTokenInput, now: number): Promise<string> {
      const { kid, alg, key } = keys.signingKey('id');
      const claims: Record<string, unknown> = { auth_time: input.authTime, azp: input.clientId };
      if (input.nonce) claims.nonce = input.nonce;
      if (input.accessToken) claims.at_hash = halfHash(input.accessToken, alg);
      if (input.code) claims.c_hash = halfHash(input.code, alg);
      if (input.includeUserClaims) Object.assign(claims, userClaims(input.user, input.scopes));
      return new SignJWT(claims)
        .setProtectedHeader({ alg, kid, typ: 'JWT' })
        .setIssuer(options.issuer)
        .setSubject(input.user.id)
        .setAudience(input.clientId)
        .setIssuedAt(now)
        .setExpirationTime(now + options.ttlSeconds)
        .sign(key);
    },
  };
}

export type IdTokenIssuer = ReturnType<typeof idTokenIssuer>;

/** The claims each scope releases (OpenID Connect Core §5.4), for userinfo and ID tokens. */
export function userClaims(user: User, scopes: readonly string[]): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  if (scopes.includes('profile')) {
    claims.name = user.name || user.email;
    claims.preferred_username = user.email;
    claims.updated_at = user.updatedAt;
  }
  if (scopes.includes('email')) {
    claims.email = user.email;
    claims.email_verified = user.emailVerified;
  }
  return claims;
}

/**
 * §3.1.3.6: "the base64url encoding of the left-most half of the hash of the octets of the ASCII
 * representation of the access_token value, where the hash algorithm used is the hash algorithm
 * used in the alg Header Parameter of the ID Token's JOSE Header".
 */
function halfHash(value: string, alg: string): string {
  const digest = createHash(alg === 'EdDSA' ? 'sha512' : `sha${alg.slice(2)}`).update(value, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}
