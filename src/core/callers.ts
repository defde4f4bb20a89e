import type { ApiKeyService } from './api-keys.ts';
import { invalidToken } from './errors.ts';
import type { KeyStore } from './tokens/keys.ts';
import { verifyAccessToken } from './tokens/verify.ts';
import type { RevocationRepository } from '../storage/repositories.ts';

/** Who calls a Gatehouse API with a token: a user through a client, a client alone, or an API key. */
export interface Caller {
  kind: 'user' | 'client' | 'api_key';
  /** The user, or the client for client tokens and API keys. */
  sub: string;
  clientId: string;
  scopes: string[];
  /** Set on project tokens. */
  project: string | undefined;
  /** RFC 8693 §4.1: who acts on the subject's behalf. */
  act: Record<string, unknown> | undefined;
  /** When the credential stops working (API keys without expiry: undefined). */
  expiresAt: number | undefined;
}

export interface CallerServices {
  keys: KeyStore;
  config: { issuer: string; tokens: { audience: string } };
  revocations: RevocationRepository;
  apiKeys: ApiKeyService;
}

/**
 * Authenticates `Authorization: Bearer <access token>` (RFC 6750) or `Authorization: ApiKey <key>`.
 * Fails with `invalid_token` (401) for anything missing, malformed, expired or revoked.
 */
export async function authenticateCaller(services: CallerServices, authorization: string | undefined, now: number): Promise<Caller> {
  const match = authorization?.match(/^(Bearer|ApiKey) +(\S+)$/i);
  if (!match) throw invalidToken('send an access token (Authorization: Bearer …) or an API key (Authorization: ApiKey …)');
  const [, scheme, credential] = match;

  if (scheme!.toLowerCase() === 'apikey') {
    const found = await services.apiKeys.authenticate(credential!, now);
    if (!found) throw invalidToken('the API key is invalid, expired or revoked');
    return { kind: 'api_key', sub: found.client.id, clientId: found.client.id, scopes: found.key.scopes, project: undefined, act: undefined, expiresAt: found.key.expiresAt ?? undefined };
  }

  const verified = await verifyAccessToken(services.keys, { issuer: services.config.issuer, audience: services.config.tokens.audience }, credential!, now);
  if (!verified) throw invalidToken('the access token is invalid or has expired');
  if (verified.jti && (await services.revocations.isJtiRevoked(verified.jti))) throw invalidToken('the access token has been revoked');
  const { payload } = verified;
  const clientId = typeof payload.client_id === 'string' ? payload.client_id : '';
  const sub = typeof payload.sub === 'string' ? payload.sub : clientId;
  return {
    kind: sub === clientId ? 'client' : 'user',
    sub,
    clientId,
    scopes: verified.scopes,
    project: typeof payload.project === 'string' ? payload.project : undefined,
    act: typeof payload.act === 'object' && payload.act !== null ? (payload.act as Record<string, unknown>) : undefined,
    expiresAt: payload.exp,
  };
}
