import type { GatehouseConfig } from './config.ts';

export interface DiscoveryInputs {
  config: GatehouseConfig;
  grantTypes: readonly string[];
  tokenEndpointAuthMethods: readonly string[];
}

/**
 * RFC 8414 authorization server metadata. Lists only what this server supports right now: the
 * grant types registered, the scopes in the catalogue, the signing algorithms configured.
 */
export function authorizationServerMetadata({ config, grantTypes, tokenEndpointAuthMethods }: DiscoveryInputs): Record<string, unknown> {
  const { issuer } = config;
  return {
    issuer,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks.json`,
    scopes_supported: Object.keys(config.scopes),
    response_types_supported: [],
    grant_types_supported: [...grantTypes],
    token_endpoint_auth_methods_supported: [...tokenEndpointAuthMethods],
    // RFC 9207: error and success responses carry `iss` once an authorization endpoint exists.
    authorization_response_iss_parameter_supported: false,
  };
}

/** OpenID Connect Discovery 1.0 §3: the same metadata plus what OpenID Connect adds. */
export function openIdConfiguration(inputs: DiscoveryInputs): Record<string, unknown> {
  return {
    ...authorizationServerMetadata(inputs),
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [inputs.config.tokens.idTokenAlgorithm],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'name', 'email', 'email_verified'],
  };
}
