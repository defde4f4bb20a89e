import type { User } from '../../storage/repositories/users.ts';
import type { IdTokenIssuer } from '../tokens/id-token.ts';
import type { TokenResponseHook } from '../token-endpoint.ts';

/** What a grant hands to the OpenID Connect hook when the `openid` scope was granted. */
export interface OidcContext {
  user: User;
  authTime: number;
  nonce: string | null;
  /** The session the grant was authorized in, if any: its ID tokens carry its `sid`, refreshed ones too (OpenID Connect Core §12.2). */
  sid?: string | undefined;
}

/**
 * OpenID Connect Core §3.1.3.3 and §12.2: an `id_token` joins the token response of any grant
 * whose validation produced an `oidc` context — added here, by one explicit hook, rather than by
 * handler order.
 */
export function idTokenHook(idTokens: IdTokenIssuer): TokenResponseHook {
  return async ({ client, now }, response, validated) => {
    const oidc = (validated as { oidc?: OidcContext } | undefined)?.oidc;
    if (!oidc) return;
    response.id_token = await idTokens.issue(
      { user: oidc.user, clientId: client.id, scopes: (response.scope ?? '').split(' '), authTime: oidc.authTime, sid: oidc.sid, nonce: oidc.nonce, accessToken: response.access_token },
      now,
    );
  };
}
