import type { Client } from '../../storage/repositories/clients.ts';
import type { Grant } from '../../storage/repositories/grants.ts';
import type { RefreshToken } from '../../storage/repositories/refresh-tokens.ts';
import { invalidGrant, invalidRequest } from '../errors.ts';
import { createOpaqueToken, digestOf, isWellFormed } from '../tokens/opaque.ts';
import { accessTokenTtl, newRefreshToken, refreshTokenExpiry, refreshTokenRefusal } from '../tokens/refresh.ts';
import type { GrantContext, GrantHandler } from '../token-endpoint.ts';
import type { OidcContext } from './oidc.ts';
import { bearerResponse, type GrantServices } from './services.ts';

interface ValidatedRefresh {
  digest: string;
  grant: Grant;
  scopes: string[];
  scopeRequested: boolean;
  oidc: OidcContext | undefined;
}

/**
 * RFC 6749 §6 with rotation (RFC 9700 §4.14.2): every use consumes the presented token and hands out
 * its successor. A consumed token presented again means it leaked — the whole grant is revoked, so
 * the successor stops working too — unless it comes within the configured grace window, which
 * absorbs a client's concurrent retries.
 */
export const refreshTokenGrant: GrantHandler<ValidatedRefresh> = {
  grantType: 'refresh_token',
  parameters: ['refresh_token'],
  allowsPublicClients: true,

  async validate({ client, params, now, services }) {
    const presented = params.refresh_token;
    if (!presented) throw invalidRequest('refresh_token is required');
    if (!isWellFormed(presented, 'rt')) throw invalidGrant('the refresh token is invalid');
    const digest = digestOf(presented);
    const found = await services.storage.refreshTokens.find(digest);
    // §6: the token must have been "issued to the authenticated client"; another client learns nothing.
    if (!found || found.token.clientId !== client.id) throw invalidGrant('the refresh token is invalid');
    const { token, grant, user } = found;
    if (token.consumedAt !== null && !withinGrace(token, now, services)) await refuseReplay(token, grant, client, now, services);
    const refusal = refreshTokenRefusal(found, now, services.config.tokens.refreshTokenMaxLifetimeSeconds);
    if (refusal) throw invalidGrant(refusal);

    const requested = services.scopes.parse(params.scope);
    // §6: the requested scope "MUST NOT include any scope not originally granted by the resource owner".
    const scopes = services.scopes.resolve({ requested: requested ?? token.scopes, client, userPresent: grant.userId !== null, ceiling: token.scopes });
    // OpenID Connect Core §12.2: a refresh of an OpenID grant returns a fresh ID token.
    const oidc = user && scopes.includes('openid') ? { user, authTime: grant.authTime ?? grant.createdAt, nonce: null, sid: grant.sid } : undefined;
    return { digest, grant, scopes, scopeRequested: requested !== undefined, oidc };
  },

  async issue(context: GrantContext, { digest, grant, scopes, scopeRequested }) {
    const { client, now, services } = context;
    // Capped at the grant's end from the grant `find` read already: no further round trip.
    const expiresAt = refreshTokenExpiry(grant, now, services.config.tokens);
    let successor = createOpaqueToken('rt');
    // The signature is computed while the database rotates: a refused rotation throws it away unseen.
    const [result, accessToken] = await Promise.all([
      services.storage.refreshTokens.rotate(digest, { digest: digestOf(successor), expiresAt }, now),
      // Positive: refreshTokenRefusal has refused a grant at or past its end.
      services.accessTokens.issue({ sub: grant.userId ?? client.id, clientId: client.id, scopes, grantId: grant.id }, now, accessTokenTtl(grant, now, services.config.tokens)),
    ]);
    if (result.outcome === 'not_found') throw invalidGrant('the refresh token is invalid');
    if (result.outcome === 'revoked') throw invalidGrant('the refresh token has been revoked');
    if (result.outcome === 'reused') {
      // Lost the race for this token to a concurrent request.
      if (!withinGrace(result.previous, now, services)) await refuseReplay(result.previous, result.grant, client, now, services);
      // The grant as it is now, read after the rotation failed: one revoked since `validate` read it
      // gets no sibling, as a rotation gets no successor (RFC 7009 §2.1, RFC 9700 §4.14.2).
      if (result.grant.revokedAt !== null) throw invalidGrant('the refresh token has been revoked');
      const sibling = newRefreshToken(grant.id, client.id, result.previous.scopes, now, expiresAt - now);
      await services.storage.refreshTokens.insert(sibling.record);
      successor = sibling.value;
    }

    services.audit.record({ at: now, kind: 'token.issued', outcome: 'success', clientId: client.id, userId: grant.userId, data: { grant: 'refresh_token', grant_id: grant.id, scopes } });
    return bearerResponse(accessToken, scopes, scopeRequested, successor);
  },
};

function withinGrace(token: RefreshToken, now: number, services: GrantServices): boolean {
  const grace = services.config.tokens.refreshTokenReuseGraceSeconds;
  return grace > 0 && token.consumedAt !== null && now - token.consumedAt <= grace;
}

async function refuseReplay(token: RefreshToken, grant: Grant, client: Client, now: number, services: GrantServices): Promise<never> {
  await services.storage.grants.revoke(grant.id, now);
  services.audit.record({ at: now, kind: 'refresh_token.reused', outcome: 'failure', clientId: client.id, userId: grant.userId, data: { grant_id: grant.id, consumed_at: token.consumedAt } });
  throw invalidGrant('the refresh token was used before; the grant has been revoked');
}
