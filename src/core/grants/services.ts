import type { Storage } from '../../storage/repositories.ts';
import type { ApiKeyService } from '../api-keys.ts';
import type { KeyStore } from '../tokens/keys.ts';
import type { LoginService } from '../login.ts';
import type { AuditTrail } from '../audit.ts';
import type { ClientRegistry } from '../clients.ts';
import type { ClientAssertions } from '../client-auth/assertion.ts';
import type { Clock } from '../clock.ts';
import type { GatehouseConfig } from '../config.ts';
import type { ScopePolicy } from '../scopes.ts';
import type { AccessTokenIssuer, IssuedAccessToken } from '../tokens/jwt.ts';
import type { ClientTokenReuse } from '../tokens/reuse.ts';
import type { TokenResponse } from '../token-endpoint.ts';

/** What grants are given to work with: declared once, typed, no service locator. */
export interface GrantServices {
  config: GatehouseConfig;
  clock: Clock;
  storage: Storage;
  clients: ClientRegistry;
  /** `private_key_jwt`: verifies client assertions and remembers their `jti`. */
  clientAssertions: ClientAssertions;
  scopes: ScopePolicy;
  accessTokens: AccessTokenIssuer;
  clientTokenReuse: ClientTokenReuse;
  audit: AuditTrail;
  keys: KeyStore;
  apiKeys: ApiKeyService;
  revocations: Storage['revocations'];
  /** Password sign-in with throttling per account and address (pages and the password grant alike). */
  login: LoginService;
}

/**
 * RFC 6749 §5.1. `scope` is echoed when the client asked for scopes; a request without `scope`
 * asked for the client's defaults (§3.3), which is what it got.
 */
export function bearerResponse(accessToken: IssuedAccessToken, scopes: readonly string[], scopeRequested: boolean, refreshToken?: string): TokenResponse {
  const response: TokenResponse = { token_type: 'Bearer', expires_in: accessToken.expiresIn, access_token: accessToken.token };
  if (refreshToken !== undefined) response.refresh_token = refreshToken;
  if (scopeRequested) response.scope = scopes.join(' ');
  return response;
}
