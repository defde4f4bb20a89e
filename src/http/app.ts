import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { parse as parseForm } from 'fast-querystring';
import type { Gatehouse } from '../gatehouse.ts';
import { healthRoutes } from './health.ts';
import { createMetrics, instrument } from './metrics.ts';
import { discoveryRoutes } from './oauth/discovery.ts';
import { oauthErrorHandler } from './oauth/errors.ts';
import { tokenRoutes } from './oauth/token.ts';
import { userinfoRoutes } from './oauth/userinfo.ts';
import { introspectionRoutes } from './oauth/introspection.ts';
import { projectRoutes } from './oauth/projects.ts';
import { pagesPlugin } from './pages/plugin.ts';

export const BODY_LIMIT = 64 * 1024;

/** Builds the Fastify app around a Gatehouse instance; the caller listens. */
export function buildApp(gatehouse: Gatehouse): FastifyInstance {
  const app = Fastify({
    loggerInstance: gatehouse.logger as FastifyBaseLogger,
    // Access logs are the load balancer's job; per-request log lines would halve throughput.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    // Slow or stuck clients do not hold sockets forever.
    requestTimeout: 30_000,
    connectionTimeout: 30_000,
    keepAliveTimeout: 72_000,
    return503OnClosing: true,
    // X-Forwarded-Proto/-For only count when an operator says a proxy is in front.
    trustProxy: gatehouse.config.trustProxy,
  });

  app.addHook('onSend', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff');
  });

  const metrics = createMetrics(gatehouse);
  instrument(app, metrics);

  // The protocol endpoints: RFC 6749 JSON errors, form and JSON bodies (DESIGN §1).
  app.register(async (oauth) => {
    oauth.setErrorHandler((error, request, reply) => oauthErrorHandler(error as Error, request, reply, metrics));
    // Browser apps (public clients with PKCE) call these endpoints with fetch. They use no cookies,
    // so any origin may read their answers, as oidc-provider does by default.
    oauth.addHook('onRequest', async (request, reply) => {
      if (request.headers.origin === undefined) return;
      reply.header('access-control-allow-origin', '*');
      if (request.method === 'OPTIONS') {
        reply
          .code(204)
          .headers({ 'access-control-allow-methods': 'GET, POST', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '600' })
          .send();
      }
    });
    oauth.options('/*', async (_request, reply) => reply.code(204).send());
    // fast-querystring keeps repeated parameters as arrays, so duplicates can be refused (RFC 6749 §3.2).
    oauth.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      done(null, parseForm(body as string));
    });
    await oauth.register(tokenRoutes, { gatehouse, metrics });
    await oauth.register(discoveryRoutes, { gatehouse });
    await oauth.register(healthRoutes, { gatehouse });
    await oauth.register(userinfoRoutes, { gatehouse });
    await oauth.register(introspectionRoutes, { gatehouse });
    await oauth.register(projectRoutes, { gatehouse });
  });

  // What people see in the browser: HTML pages and errors (DESIGN §5).
  app.register(pagesPlugin, { gatehouse });

  return app;
}
