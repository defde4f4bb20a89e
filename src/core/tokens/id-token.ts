import { createHash } from 'node:crypto';
import { compactVerify, decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import type { User } from '../../storage/repositories/users.ts';
import type { KeyStore } from './keys.ts';

export interface IdTokenInput {
  user: User;
  clientId: string;
  scopes: readonly string[];
  authTime: number;
  /** The OpenID Connect session the token is issued through (Back-Channel Logout 1.0 §2.1); none for a session without one. */
  sid?: string | null | undefined;
  nonce?: string | null | undefined;
  /** Adds `at_hash` (OpenID Connect Core §3.1.3.6, §3.2.2.10). */
  accessToken?: string | undefined;
  /** Puts the profile and email claims in the token itself: for `response_type=id_token`, where no access token reaches userinfo. */
  includeUserClaims?: boolean;
}

/** What an ID token sent back to this server as a hint (`id_token_hint`) says. */
export interface IdTokenHint {
  /** The user it was issued for (`sub`). */
  subject: string;
  /** The clients it was issued to (`aud`). */
  audience: string[];
  /** When the session it was issued in signed in (`auth_time`); undefined when it has none. */
  authTime: number | undefined;
  /** The session it was issued in (`sid`); undefined when it has none. */
  sid: string | undefined;
}

/**
 * The `typ` of the ID tokens this server signs. Its Back-Channel Logout Tokens are signed with the
 * same key and say `logout+jwt` (Back-Channel Logout 1.0 §2.4); a hint must say this.
 */
const ID_TOKEN_TYP = 'JWT';

/** ID tokens, signed with the ID-token key (RS256 by default: what every relying party must accept). */
export function idTokenIssuer(keys: KeyStore, options: { issuer: string; ttlSeconds: number }) {
  return {
    /**
     * An ID token this server issued, sent back as `id_token_hint` (OpenID Connect Core §3.1.2.1,
     * RP-Initiated Logout §2); undefined when it is not one. An expired ID token is still a fine
     * hint: only the signature, by a published ID-token key, its type and the issuer are checked.
     * The ID-token key also signs Logout Tokens, which name a user, a client and a session as an ID
     * token does: taken for a hint, one posted to a client (or leaked by it) would sign its user out
     * of the current session without asking. Access tokens are signed with another key.
     */
    async readHint(hint: string): Promise<IdTokenHint | undefined> {
      if (hint.length > 8192) return undefined;
      try {
        const { kid, typ } = decodeProtectedHeader(hint);
        if (typ !== ID_TOKEN_TYP) return undefined;
        const key = kid ? keys.publicKey(kid) : undefined;
        if (!key || key.use !== 'id') return undefined;
        await compactVerify(hint, key.key, { algorithms: [key.alg] });
        const { iss, sub, aud, auth_time: authTime, sid } = decodeJwt(hint);
        if (iss !== options.issuer || typeof sub !== 'string') return undefined;
        return {
          subject: sub,
          audience: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [],
          authTime: typeof authTime === 'number' ? authTime : undefined,
          sid: typeof sid === 'string' ? sid : undefined,
        };
      } catch {
        return undefined;
      }
    },

    async issue(input: IdTokenInput, now: number): Promise<string> {
      const { kid, alg, key } = keys.signingKey('id');
      const claims: Record<string, unknown> = { auth_time: input.authTime, azp: input.clientId };
      if (input.sid) claims.sid = input.sid;
      if (input.nonce) claims.nonce = input.nonce;
      if (input.accessToken) claims.at_hash = halfHash(input.accessToken, alg);
      if (input.includeUserClaims) Object.assign(claims, userClaims(input.user, input.scopes));
      return new SignJWT(claims)
        .setProtectedHeader({ alg, kid, typ: ID_TOKEN_TYP })
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
