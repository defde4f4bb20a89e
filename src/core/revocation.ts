import type { Client } from '../storage/repositories/clients.ts';
import type { GatehouseConfig } from './config.ts';
import { unauthorizedClient } from './errors.ts';
import type { IntrospectionServices } from './introspection.ts';
import { digestOf, isWellFormed, kindOf } from './tokens/opaque.ts';
import { verifyAccessToken } from './tokens/verify.ts';

/**
 * How long after its expiry an access token is still revoked, and its revocation kept: while a token
 * derived from it may live, which may outlive it — a project token minted with it up to its expiry
 * by projectTokens.maxTtlSeconds (an application's own token, or one of a grant with refresh tokens,
 * is renewable: see issueProjectToken), a token exchanged for it (impersonation with it as the
 * client's subject token, delegation with it as actor token) by up to the lifetime of an access token.
 */
export function revocationWindowSeconds(config: Pick<GatehouseConfig, 'tokens' | 'projectTokens'>): number {
  return Math.max(config.projectTokens.maxTtlSeconds, config.tokens.accessTokenTtlSeconds);
}

/**
 * RFC 7009. A refresh token revokes its whole grant (§2.1: "the authorization server SHOULD also
 * invalidate all access tokens based on the same authorization grant" — the refresh tokens; the
 * access tokens are short-lived JWTs); an access token is revoked by its `jti`, which ends the tokens
 * derived from it too (project tokens, token exchange: they name it in `derived_from`), but not its
 * grant; an API key is revoked at once. Unknown or malformed tokens change nothing and are not an
 * error (§2.2: "invalid tokens do not cause an error response"). A token of another client is
 * refused (§2.1: the server "verifies whether the token was issued to the client making the
 * revocation request. If this validation fails, the request is refused").
 */
export async function revoke(services: IntrospectionServices, caller: Client, token: string, now: number): Promise<void> {
  if (token.length === 0 || token.length > 8192) return;
  const notYours = () => unauthorizedClient('the token was not issued to this client');

  switch (kindOf(token)) {
    case 'rt': {
      const found = await services.storage.refreshTokens.find(digestOf(token));
      if (!found) return;
      if (found.token.clientId !== caller.id) throw notYours();
      if (await services.storage.grants.revoke(found.grant.id, now)) {
        services.audit.record({ at: now, kind: 'token.revoked', outcome: 'success', clientId: caller.id, userId: found.grant.userId, data: { token_type: 'refresh_token', grant_id: found.grant.id } });
      }
      return;
    }
    case 'ak': {
      if (!isWellFormed(token, 'ak')) return;
      const key = await services.storage.apiKeys.findByDigest(digestOf(token));
      if (!key) return;
      if (key.clientId !== caller.id) throw notYours();
      if (await services.storage.apiKeys.revoke(caller.id, key.id, now)) {
        services.audit.record({ at: now, kind: 'api_key.revoked', outcome: 'success', clientId: caller.id, userId: null, data: { api_key_id: key.id, via: 'revocation endpoint' } });
      }
      return;
    }
    case undefined: {
      // A token that expired within the window is still revoked, which ends what was derived from
      // it; one that expired longer ago, or a foreign-signed one, has nothing left to end.
      const window = revocationWindowSeconds(services.config);
      const verified = await verifyAccessToken(services.keys, { issuer: services.config.issuer, audience: services.config.tokens.audience, expiredForAtMost: window }, token, now);
      if (!verified) return;
      if (verified.payload.client_id !== caller.id) throw notYours();
      await services.storage.revocations.revokeJti(verified.jti, (verified.payload.exp ?? now) + window);
      services.clientTokenReuse.forget(verified.jti);
      services.audit.record({ at: now, kind: 'token.revoked', outcome: 'success', clientId: caller.id, userId: typeof verified.payload.sub === 'string' && verified.payload.sub !== caller.id ? verified.payload.sub : null, data: { token_type: 'access_token', jti: verified.jti } });
      return;
    }
    default:
      return;
  }
}

