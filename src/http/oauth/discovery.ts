import type { FastifyInstance } from 'fastify';
import { authorizationServerMetadata, openIdConfiguration } from '../../core/discovery.ts';
import { JWKS_MAX_AGE_SECONDS } from '../../core/tokens/keys.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { refuseOtherMethods } from './errors.ts';

/** RFC 8414 and OpenID Connect discovery, and the JWKS they point to. */
export async function discoveryRoutes(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  const inputs = () => ({
    config: gatehouse.config,
    grantTypes: gatehouse.tokenEndpoint.grantTypes,
    tokenEndpointAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
    idTokenSigningAlgorithms: gatehouse.keys.signingAlgorithms('id'),
  });
  // No longer than the JWKS: the metadata lists the algorithm of each next ID-token key, which a
  // rotation may make sign once the JWKS's cache time has passed (KeyStore.minimumNextKeyAgeSeconds).
  const cacheable = { 'cache-control': `public, max-age=${JWKS_MAX_AGE_SECONDS}` };

  app.get('/.well-known/oauth-authorization-server', async (_request, reply) => reply.headers(cacheable).send(authorizationServerMetadata(inputs())));
  app.get('/.well-known/openid-configuration', async (_request, reply) => reply.headers(cacheable).send(openIdConfiguration(inputs())));
  app.get('/jwks.json', async (_request, reply) =>
    reply
      // Short, so a rotation's next key reaches resource servers well before it signs (a rotation
      // waits for it), and a withdrawn key leaves their caches soon.
      .headers({ 'content-type': 'application/jwk-set+json', 'cache-control': `public, max-age=${JWKS_MAX_AGE_SECONDS}` })
      .send(gatehouse.keys.jwksJson),
  );
  for (const url of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration', '/jwks.json']) refuseOtherMethods(app, url, ['GET'], 'metadata endpoint');
}
