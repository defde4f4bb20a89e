import { randomUUID } from 'node:crypto';
import type { User } from '../../storage/repositories/users.ts';
import { invalidGrant, invalidRequest, temporarilyUnavailable, tooManyRequests } from '../errors.ts';
import { accessTokenTtl, issueRefreshToken } from '../tokens/refresh.ts';
import type { GrantHandler } from '../token-endpoint.ts';
import type { OidcContext } from './oidc.ts';
import { bearerResponse } from './services.ts';

/**
 * RFC 6749 §4.3, for trusted first-party clients an operator gave the privilege (`password` in
 * the client's grant types). A wrong password, an unknown user and a disabled account get the same
 * answer in the same time, so the endpoint does not tell which emails are registered.
 */
export const passwordGrant: GrantHandler<{ user: User; scopes: string[]; scopeRequested: boolean; oidc: OidcContext | undefined }> = {
  grantType: 'password',
  parameters: ['username', 'password'],
  allowsPublicClients: false,

  async validate({ client, params, services, address, now }) {
    const { username, password } = params;
    if (!username) throw invalidRequest('username is required');
    if (!password) throw invalidRequest('password is required');
    const requested = services.scopes.parse(params.scope);
    const scopes = services.scopes.resolve({ requested, client, userPresent: true });

    const result = await services.login.login(username, password, address, now);
    if (result.outcome === 'throttled') throw tooManyRequests('too many failed sign-ins; try again later', result.retryAfterSeconds);
    if (result.outcome === 'busy') throw temporarilyUnavailable('the sign-in could not be checked right now; try again shortly', { 'retry-after': '1' });
    if (result.outcome === 'invalid') {
      services.audit.record({ at: now, kind: 'login.failed', outcome: 'failure', clientId: client.id, userId: result.userId, data: { grant: 'password', address } });
      throw invalidGrant('the username or password is wrong');
    }
    // With `openid`, an ID token joins the response, as it does on every later refresh.
    const oidc = scopes.includes('openid') ? { user: result.user, authTime: now, nonce: null } : undefined;
    return { user: result.user, scopes, scopeRequested: requested !== undefined, oidc };
  },

  /**
   * Every token of a user is issued under a grant, so that revoking the grant (an operator, the
   * refresh token's revocation) ends it at Gatehouse's endpoints. Without a refresh token, the grant
   * ends with its one access token, as the implicit flow's does.
   */
  async issue({ client, now, services }, { user, scopes, scopeRequested }) {
    const grantId = randomUUID();
    const lasting = client.grantTypes.includes('refresh_token');
    const ttl = accessTokenTtl({ createdAt: now, expiresAt: null }, now, services.config.tokens);
    // The grant is stored before anything is issued under it, and only while the user is enabled: a
    // user deleted or disabled while their password was checked (an operator, another instance) is
    // answered as an unknown user is, and nothing is issued for them.
    const stored = await services.storage.grants.create({ id: grantId, clientId: client.id, userId: user.id, kind: 'password', scopes, authTime: now, createdAt: now, expiresAt: lasting ? null : now + ttl, revokedAt: null });
    if (!stored) throw invalidGrant('the username or password is wrong');
    const accessToken = await services.accessTokens.issue({ sub: user.id, clientId: client.id, scopes, grantId }, now, ttl);
    const refreshToken = lasting ? await issueRefreshToken(services.storage, grantId, client.id, scopes, now, services.config.tokens.refreshTokenTtlSeconds) : undefined;
    services.audit.record({ at: now, kind: 'token.issued', outcome: 'success', clientId: client.id, userId: user.id, data: { grant: 'password', scopes } });
    return bearerResponse(accessToken, scopes, scopeRequested, refreshToken);
  },
};
