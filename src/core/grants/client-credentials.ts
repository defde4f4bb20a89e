import type { GrantHandler } from '../token-endpoint.ts';
import { bearerResponse } from './services.ts';

/**
 * RFC 6749 §4.4. The client acts on its own behalf: `sub` is the client, no refresh token (§4.4.3),
 * and scope policy keeps user-only scopes out. Writes nothing in the database: the client comes
 * from the registry's cache. Identical requests within `tokens.clientCredentialsReuseSeconds` get
 * the same token, unless it was revoked meanwhile; telling costs one read of the revocation store
 * a second per reused token, not one per request (see ClientTokenReuse).
 */
export const clientCredentialsGrant: GrantHandler<{ scopes: string[]; scopeRequested: boolean }> = {
  grantType: 'client_credentials',
  parameters: [],
  // §4.4: "The client credentials grant type MUST only be used by confidential clients."
  allowsPublicClients: false,

  async validate({ client, params, services }) {
    const requested = services.scopes.parse(params.scope);
    return { scopes: services.scopes.resolve({ requested, client, userPresent: false }), scopeRequested: requested !== undefined };
  },

  async issue({ client, now, services }, { scopes, scopeRequested }) {
    const { accessTokens, clientTokenReuse } = services;
    const key = `${client.id} ${scopes.join(' ')}`;
    const kid = accessTokens.activeKid();
    const reused = clientTokenReuse.enabled ? clientTokenReuse.find(key, client, kid, now) : undefined;
    // A promise only when the revocation store must be asked (at most once a second per token).
    let accessToken = reused instanceof Promise ? await reused : reused;
    if (!accessToken) {
      accessToken = await accessTokens.issue({ sub: client.id, clientId: client.id, scopes }, now);
      if (clientTokenReuse.enabled) clientTokenReuse.remember(key, client, kid, accessToken, now);
      // Audited when signed; a token handed again within the reuse window is the same token.
      services.audit.record({ at: now, kind: 'token.issued', outcome: 'success', clientId: client.id, userId: null, data: { grant: 'client_credentials', scopes, jti: accessToken.jti } });
    }
    return bearerResponse(accessToken, scopes, scopeRequested);
  },
};
