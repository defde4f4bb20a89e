// The reference: oidc-provider set up to do the same work as Gatehouse's client_credentials grant —
// HTTP Basic client authentication and an ES256-signed JWT access token (RFC 9068) for one resource.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';
import type { Configuration, JWK } from 'oidc-provider';

const port = Number(process.env.PORT);
const host = process.env.HOST ?? '127.0.0.1';
const clientId = required('BENCH_CLIENT_ID');
const clientSecret = required('BENCH_CLIENT_SECRET');

const resourceServer = {
  scope: 'objects:read',
  audience: 'https://api.example',
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'ES256' } },
} as const;

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey: JWK = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const configuration: Configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'objects:read',
      // The client must be valid against the keystore even though no ID token is issued here.
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [signingKey] },
  scopes: ['objects:read'],
  features: {
    clientCredentials: { enabled: true },
    // Without it every JWT would carry the default alg and the userinfo audience; with it the
    // token is bound to one API, which is what Gatehouse issues.
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resourceServer.audience,
      getResourceServerInfo: () => resourceServer,
    },
    // Its only effect here would be a start-up warning; no interactive flow is measured.
    devInteractions: { enabled: false },
  },
  // Gatehouse's default lifetime; setting it also silences the "default ttl" notice.
  ttl: { ClientCredentials: 3600 },
};

const provider = new Provider(`http://${host}:${port}`, configuration);

provider.listen(port, host);

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
}
