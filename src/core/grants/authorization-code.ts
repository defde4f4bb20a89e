import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Client } from '../../storage/repositories/clients.ts';
import type { AuthorizationCode } from '../../storage/repositories/codes.ts';
import type { User } from '../../storage/repositories/users.ts';
import { matchRedirectUri } from '../authorize/redirect-uri.ts';
import { invalidGrant, invalidRequest } from '../errors.ts';
import { digestOf, isWellFormed } from '../tokens/opaque.ts';
import { accessTokenTtl, issueRefreshToken } from '../tokens/refresh.ts';
import type { GrantHandler } from '../token-endpoint.ts';
import type { OidcContext } from './oidc.ts';
import { bearerResponse, type GrantServices } from './services.ts';

interface ValidatedCode {
  code: AuthorizationCode;
  user: User;
  oidc: OidcContext | undefined;
}

/**
 * RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6). A code is single use: presented again, it fails and
 * every token issued from its first use is revoked (§4.1.2: "the authorization server MUST deny
 * the request and SHOULD revoke (when possible) all tokens previously issued based on that
 * authorization code").
 */
export const authorizationCodeGrant: GrantHandler<ValidatedCode> = {
  grantType: 'authorization_code',
  parameters: ['code', 'redirect_uri', 'code_verifier'],
  allowsPublicClients: true,

  async validate({ client, params, now, services }) {
    const presented = params.code;
    if (!presented) throw invalidRequest('code is required');
    if (!isWellFormed(presented, 'ac')) throw invalidGrant('the authorization code is invalid');
    const code = await services.storage.codes.find(digestOf(presented));
    // §4.1.3: "ensure that the authorization code was issued to the authenticated confidential client".
    if (!code || code.clientId !== client.id) throw invalidGrant('the authorization code is invalid');
    if (code.consumedAt !== null) await refuseReplay(code, now, services);
    if (code.expiresAt <= now) throw invalidGrant('the authorization code has expired');

    // §4.1.3: redirect_uri is "REQUIRED, if the redirect_uri parameter was included in the authorization request ... and their values MUST be identical."
    if (params.redirect_uri !== undefined ? params.redirect_uri !== code.redirectUri : code.redirectUriExplicit) {
      throw invalidGrant('redirect_uri does not match the authorization request');
    }
    // The code went to code.redirectUri: if the client no longer has that URI (an operator removed it,
    // say because its domain was lost), whoever answers there now holds the code, and it is refused.
    if (!matchRedirectUri(client.redirectUris, code.redirectUri)) throw invalidGrant('the redirect URI the code was sent to is no longer registered for the client');
    checkPkce(code, params.code_verifier, client);
    // The scopes were settled at the authorization endpoint, under the client's scopes as they were
    // then: one taken from the client since (or from the catalogue) is not issued, as a refresh
    // refuses it (RFC 6749 §5.2 invalid_scope; Ory Fosite refuses such a code alike).
    services.scopes.resolve({ requested: code.scopes, client, userPresent: true });

    const user = await services.storage.users.findById(code.userId);
    if (!user || user.disabledAt !== null) throw invalidGrant('the authorization code is invalid');
    const oidc = code.scopes.includes('openid') ? { user, authTime: code.authTime, nonce: code.nonce, sid: code.sid } : undefined;
    return { code, user, oidc };
  },

  async issue({ client, now, services }, { code, user }) {
    const ttl = accessTokenTtl({ createdAt: now, expiresAt: null }, now, services.config.tokens);
    const accessTokenExpiresAt = now + ttl;
    const withRefresh = client.grantTypes.includes('refresh_token');
    // Without a refresh token, the grant ends with its one access token (and is swept after).
    const grant = {
      id: randomUUID(),
      clientId: client.id,
      userId: user.id,
      kind: 'authorization_code',
      scopes: code.scopes,
      authTime: code.authTime,
      ...(code.sid !== undefined && { sid: code.sid }),
      createdAt: now,
      expiresAt: withRefresh ? null : accessTokenExpiresAt,
      revokedAt: null,
    };
    // The access token's id is recorded with the code before the token is signed, so a replay that
    // comes at any moment after this can revoke it, as it can the grant.
    const accessTokenJti = randomUUID();
    const consumed = await services.storage.codes.consume(code.digest, { grant, accessTokenJti, accessTokenExpiresAt }, now);
    // Gone since it was read: its session ended or its consent was withdrawn meanwhile, which voids it.
    if (consumed.outcome === 'not_found') throw invalidGrant('the authorization code is invalid');
    // Lost a race for the same code to a concurrent request: that is a replay too.
    if (consumed.outcome === 'reused') return refuseReplay(consumed.code, now, services);

    const refreshToken = withRefresh
      ? await issueRefreshToken(services.storage, grant.id, client.id, code.scopes, now, services.config.tokens.refreshTokenTtlSeconds)
      : undefined;
    const accessToken = await services.accessTokens.issue({ sub: user.id, clientId: client.id, scopes: code.scopes, jti: accessTokenJti, grantId: grant.id }, now, ttl);
    services.audit.record({ at: now, kind: 'token.issued', outcome: 'success', clientId: client.id, userId: user.id, data: { grant: 'authorization_code', grant_id: grant.id, scopes: code.scopes } });
    // §5.1: the scope is echoed, since it was settled at the authorization endpoint.
    return bearerResponse(accessToken, code.scopes, true, refreshToken);
  },
};

/**
 * RFC 7636 §4.6, and RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt, and
 * "public clients MUST use PKCE". The authorization endpoint gives a public client no code without
 * a challenge; one issued while the client was confidential, and exchanged once an operator made it
 * public, would be redeemed with nothing but the code and the client's id.
 */
function checkPkce(code: AuthorizationCode, verifier: string | undefined, client: Client): void {
  if (code.codeChallenge === null) {
    if (verifier !== undefined) throw invalidGrant('code_verifier was sent but the authorization request had no code_challenge');
    if (client.type === 'public') throw invalidGrant('the authorization request had no code_challenge, which a public client must send');
    return;
  }
  if (verifier === undefined) throw invalidGrant('code_verifier is required');
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) throw invalidGrant('code_verifier is malformed');
  const computed = code.codeChallengeMethod === 'S256' ? createHash('sha256').update(verifier, 'ascii').digest('base64url') : verifier;
  const a = Buffer.from(computed);
  const b = Buffer.from(code.codeChallenge);
  if (a.length !== b.length || !timingSafeEqual(a, b)) throw invalidGrant('code_verifier does not match the code_challenge');
}

async function refuseReplay(code: AuthorizationCode, now: number, services: GrantServices): Promise<never> {
  if (code.grantId) await services.storage.grants.revoke(code.grantId, now);
  if (code.accessTokenJti && code.accessTokenExpiresAt) await services.storage.revocations.revokeJti(code.accessTokenJti, code.accessTokenExpiresAt);
  services.audit.record({ at: now, kind: 'authorization_code.reused', outcome: 'failure', clientId: code.clientId, userId: code.userId, data: { grant_id: code.grantId } });
  throw invalidGrant('the authorization code was used before; the tokens issued from it have been revoked');
}
