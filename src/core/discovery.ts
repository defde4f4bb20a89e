import { CLIENT_ASSERTION_ALGORITHMS } from './client-auth/assertion.ts';
import type { GatehouseConfig } from './config.ts';

export interface DiscoveryInputs {
  config: GatehouseConfig;
  grantTypes: readonly string[];
  tokenEndpointAuthMethods: readonly string[];
  /** The algorithms of the ID-token keys that sign now or after the next rotation. */
  idTokenSigningAlgorithms: readonly string[];
}

/**
 * RFC 8414 authorization server metadata. Lists only what this server supports right now: the
 * grant types registered, the scopes in the catalogue, the signing algorithms configured.
 */
export function authorizationServerMetadata({ config, grantTypes, tokenEndpointAuthMethods }: DiscoveryInputs): Record<string, unknown> {
  const { issuer } = config;
  const implicit = config.implicit.enabled;
  return {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks.json`,
    userinfo_endpoint: `${issuer}/userinfo`,
    introspection_endpoint: `${issuer}/introspect`,
    revocation_endpoint: `${issuer}/revoke`,
    // Introspection needs a client that can authenticate: every method but `none`.
    introspection_endpoint_auth_methods_supported: tokenEndpointAuthMethods.filter((method) => method !== 'none'),
    revocation_endpoint_auth_methods_supported: [...tokenEndpointAuthMethods],
    end_session_endpoint: `${issuer}/logout`,
    scopes_supported: Object.keys(config.scopes),
    // The implicit flow is listed only when the operator enabled it (DESIGN §1).
    response_types_supported: implicit ? ['code', 'token', 'id_token', 'id_token token'] : ['code'],
    response_modes_supported: ['query', 'fragment', 'form_post'],
    grant_types_supported: implicit ? [...grantTypes, 'implicit'] : [...grantTypes],
    token_endpoint_auth_methods_supported: [...tokenEndpointAuthMethods],
    ...(tokenEndpointAuthMethods.includes('private_key_jwt') && {
      token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGORITHMS],
      introspection_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGORITHMS],
      revocation_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGORITHMS],
    }),
    code_challenge_methods_supported: config.pkce.allowPlain ? ['S256', 'plain'] : ['S256'],
    prompt_values_supported: ['none', 'login', 'consent', 'select_account'],
    // RFC 9207: every authorization response carries `iss`.
    authorization_response_iss_parameter_supported: true,
    // OpenID Connect Discovery §3: request_uri_parameter_supported defaults to true, so it is said.
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
  };
}

/** OpenID Connect Discovery 1.0 §3: the same metadata plus what OpenID Connect adds. */
export function openIdConfiguration(inputs: DiscoveryInputs): Record<string, unknown> {
  return {
    ...authorizationServerMetadata(inputs),
    subject_types_supported: ['public'],
    // The keys', not the configured algorithm: after a change of it, the active key signs with the
    // old one until the next rotation, and relying parties (oauth4webapi) refuse an ID token whose
    // alg is not listed. A next key of the new algorithm is listed before it signs, as it is
    // published in the JWKS before.
    id_token_signing_alg_values_supported: [...inputs.idTokenSigningAlgorithms],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'at_hash', 'azp', 'sid', 'name', 'preferred_username', 'updated_at', 'email', 'email_verified'],
    claims_parameter_supported: false,
    // Back-Channel Logout 1.0 §2.1: clients may register a backchannel_logout_uri, and every Logout
    // Token and ID token issued through a session carries its sid.
    backchannel_logout_supported: true,
    backchannel_logout_session_supported: true,
  };
}
