import type { Grant } from './grants.ts';

export interface AuthorizationCode {
  digest: string;
  clientId: string;
  userId: string;
  redirectUri: string;
  scopes: string[];
  codeChallenge: string | null;
  codeChallengeMethod: string | null;
  nonce: string | null;
  authTime: number;
  /** The OpenID Connect session (`sid`) the code was issued in; absent for a code stored before sessions had one. */
  sid?: string;
  /** The authorization request named the redirect URI, so the exchange must repeat it (RFC 6749 §4.1.3). */
  redirectUriExplicit: boolean;
  grantId: string | null;
  /** The access token issued from this code: revoked if the code is presented again. */
  accessTokenJti: string | null;
  accessTokenExpiresAt: number | null;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
}

export interface AuthorizationCodeRepository {
  insert(code: AuthorizationCode): Promise<void>;
  find(digest: string): Promise<AuthorizationCode | undefined>;
  /**
   * Redeems the code, atomically: marks it consumed with the grant made from it and the access token
   * about to be issued, and stores that grant — one conditional update, so exactly one concurrent
   * caller gets the code back. A code consumed before is reported as `reused` with the grant and the
   * access token of its first use, both already stored, so a replay can revoke them (RFC 6749 §4.1.2).
   * A code whose user is disabled or deleted at that moment is left as it is and reported `not_found`.
   * Nothing is stored unless the outcome is `consumed`.
   */
  consume(digest: string, exchange: CodeExchange, now: number): Promise<{ outcome: 'consumed'; code: AuthorizationCode } | { outcome: 'reused'; code: AuthorizationCode } | { outcome: 'not_found' }>;
}

/** What the redemption of a code makes: the grant, and the `jti` and expiry of the access token to be signed. */
export interface CodeExchange {
  grant: Grant;
  accessTokenJti: string;
  accessTokenExpiresAt: number;
}
