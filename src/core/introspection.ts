import type { Client } from '../storage/repositories/clients.ts';
import type { ApiKeyService } from './api-keys.ts';
import { accessTokenHolders } from './callers.ts';
import type { GrantServices } from './grants/services.ts';
import type { KeyStore } from './tokens/keys.ts';
import { heldScopes } from './scopes.ts';
import { digestOf, kindOf } from './tokens/opaque.ts';
import { grantEnd, refreshTokenEnd, refreshTokenRefusal } from './tokens/refresh.ts';
import { verifyAccessToken } from './tokens/verify.ts';

export interface IntrospectionServices extends GrantServices {
  keys: KeyStore;
  apiKeys: ApiKeyService;
}

export type IntrospectionResponse = { active: false } | ({ active: true } & Record<string, unknown>);

const INACTIVE: IntrospectionResponse = { active: false };

/**
 * The admin scope that reads every client's tokens: "Inspect and revoke grants and tokens" in the
 * admin API. An admin client holding another admin scope only sees its own, as a token with
 * `admin:clients` may register a back office holding that scope alone (the admin API asks
 * `admin:tokens` of whoever registers a resource server, which reads them all).
 */
const INSPECTS_TOKENS = 'admin:tokens';

/**
 * RFC 7662. Access tokens (JWTs, inactive once expired, revoked, signed by a withdrawn key, or
 * held by a deleted client or a deleted or disabled user; with the scopes their client still holds,
 * see heldScopes), refresh tokens and API keys. The hint only orders the search (§2.1); the
 * credential's own format decides. A client sees its own tokens; resource servers and admin
 * clients holding `admin:tokens` see every client's — for anyone else another client's token is
 * simply inactive (§4: "MAY respond differently").
 */
export async function introspect(services: IntrospectionServices, caller: Client, token: string, now: number): Promise<IntrospectionResponse> {
  const mayView = (clientId: unknown) => clientId === caller.id || caller.isResourceServer || (caller.isAdmin && caller.scopes.includes(INSPECTS_TOKENS));
  if (token.length === 0 || token.length > 8192) return INACTIVE;

  switch (kindOf(token)) {
    case 'rt': {
      const found = await services.storage.refreshTokens.find(digestOf(token));
      if (!found || !mayView(found.token.clientId)) return INACTIVE;
      const { token: refresh, grant } = found;
      // Inactive once consumed, or when the token endpoint would refuse it (revoked, expired, user
      // gone, its client suspended with its developer's account, which the registry does not find,
      // or no longer allowed the refresh_token grant).
      const maxLifetime = services.config.tokens.refreshTokenMaxLifetimeSeconds;
      if (refresh.consumedAt !== null || refreshTokenRefusal(found, now, maxLifetime)) return INACTIVE;
      const holder = await services.clients.get(refresh.clientId);
      if (!holder || !holder.client.grantTypes.includes('refresh_token')) return INACTIVE;
      // §2.2 exp: when the token endpoint will start refusing it, the grant's end included.
      const exp = refreshTokenEnd(found, maxLifetime);
      // What its client still holds, as for access tokens (heldScopes).
      return { active: true, token_type: 'refresh_token', scope: heldScopes(refresh.scopes, holder.client).join(' '), client_id: refresh.clientId, sub: grant.userId ?? refresh.clientId, iat: refresh.createdAt, exp, iss: services.config.issuer };
    }
    case 'ak': {
      // Checking a key it may not see is no use of the key: its last-use time stays as it was.
      const found = await services.apiKeys.authenticate(token, now, mayView);
      if (!found) return INACTIVE;
      const { key } = found;
      return {
        active: true,
        token_type: 'ApiKey',
        scope: key.scopes.join(' '),
        client_id: key.clientId,
        sub: key.clientId,
        iat: key.createdAt,
        ...(key.expiresAt !== null ? { exp: key.expiresAt } : {}),
        iss: services.config.issuer,
      };
    }
    case undefined: {
      const verified = await verifyAccessToken(services.keys, { issuer: services.config.issuer, audience: services.config.tokens.audience }, token, now);
      if (!verified || !mayView(verified.payload.client_id)) return INACTIVE;
      // §2.2: inactive once revoked, by itself or with its grant, and once its client is deleted or
      // its user deleted or disabled (as /userinfo and the refresh grant already refuse).
      const holders = await accessTokenHolders(services, verified, now);
      if (holders === 'revoked' || !holders) return INACTIVE;
      const { payload } = verified;
      // §2.2 exp: when the token stops working, its grant's end included. A token signed before its
      // grant's lifetime bound was configured or shortened outlives the grant: a resource server
      // caching this answer until the JWT's exp would accept it past the grant's end.
      const ends = holders.grant && grantEnd(holders.grant, services.config.tokens.refreshTokenMaxLifetimeSeconds);
      return {
        active: true,
        token_type: 'Bearer',
        scope: heldScopes(verified.scopes, holders.client).join(' '),
        client_id: payload.client_id,
        sub: payload.sub,
        exp: ends === undefined ? payload.exp : Math.min(payload.exp ?? ends, ends),
        iat: payload.iat,
        iss: payload.iss,
        aud: payload.aud,
        jti: payload.jti,
        ...(payload.project !== undefined ? { project: payload.project } : {}),
        ...(payload.act !== undefined ? { act: payload.act } : {}),
      };
    }
    default:
      return INACTIVE;
  }
}
