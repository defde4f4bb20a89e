import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authenticateCaller } from '../../core/callers.ts';
import { insufficientScope } from '../../core/errors.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { apiKeyRoutes } from './api-keys.ts';
import { auditRoutes } from './audit.ts';
import { clientSecretRoutes } from './client-secrets.ts';
import { clientRoutes } from './clients.ts';
import { grantRoutes } from './grants.ts';
import { keyRoutes } from './keys.ts';
import { documentationRoutes, type AdminRoute } from './openapi.ts';
import { fieldWithLoneSurrogate, fieldWithNul } from '../nul.ts';
import { pathPattern } from '../route-paths.ts';
import { invalidField, notFound, ProblemError, problemHandler, sendProblem } from './problems.ts';
import { emptyBodyAsObject, exactBodyTypes, knownQueryParameters, type AdminScope } from './support.ts';
import { userRoutes } from './users.ts';

/** Where the admin API is mounted (`app.register(adminPlugin, { prefix: ADMIN_PREFIX, gatehouse })`). */
export const ADMIN_PREFIX = '/admin/v1';

/** On every admin answer: nothing cached, nothing sniffed. */
const ADMIN_HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

/**
 * The admin API: JSON over HTTP for operators' back offices. Every route but the documentation is
 * reachable only with an access token of an admin client holding the route's admin scope (DESIGN
 * §1: "the admin API accepts nothing else"); every failure is an RFC 9457 problem.
 */
export async function adminPlugin(app: FastifyInstance, { gatehouse }: { gatehouse: Gatehouse }): Promise<void> {
  const typeBase = `${gatehouse.config.issuer.replace(/\/+$/, '')}${ADMIN_PREFIX}/docs`;
  const routes: AdminRoute[] = [];

  // Every route registered here, with its operation: what the OpenAPI document is made of.
  app.addHook('onRoute', (route) => {
    const operation = route.config?.adminOperation;
    if (!operation) return;
    for (const method of [route.method].flat()) {
      // The HEAD companion of a GET route is implied by it (RFC 9110 §9.3.2), not an operation of its own.
      if (method === 'HEAD') continue;
      routes.push({ method, url: route.url, schema: route.schema, operation, optionalBody: route.preValidation === emptyBodyAsObject });
    }
  });

  // `POST …/disable` and the like take no body: an empty one sent as JSON is no body, not an error.
  // JSON is the only body parsed: any other, text/plain included (which Fastify parses by default,
  // and which a body left without a type is sent as by fetch), is a 415, as the reference says.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') done(null, undefined);
    else parseJson(request, body as string, done);
  });

  app.setErrorHandler(problemHandler(typeBase));
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    // RFC 9110 §15.5.6: a route asked with a method it does not take answers 405 with Allow, not 404.
    const allowed = methodsAt(routes, path);
    if (allowed.length > 0) {
      const allow = allowed.join(', ');
      return sendProblem(reply, typeBase, new ProblemError('method-not-allowed', `${path} takes ${allow}, not ${request.method}`, { headers: { allow } }), path);
    }
    return sendProblem(reply, typeBase, notFound(`there is no route ${request.method} ${path}`), path);
  });

  // onRequest, before the body is read: an unauthorized caller learns nothing about its input.
  app.addHook('onRequest', async (request, reply) => {
    reply.headers(ADMIN_HEADERS);
    const scope = request.routeOptions.config.adminOperation?.scope;
    if (scope) ({ clientId: request.adminClientId, scopes: request.adminScopes } = await authorizeAdmin(gatehouse, request, scope));
  });

  app.addHook('preValidation', knownQueryParameters);
  app.addHook('preValidation', exactBodyTypes);
  app.addHook('preValidation', async (request) => {
    const field = fieldWithNul(request);
    if (field !== undefined) throw invalidField(field, `${field} contains a NUL character`);
    const lone = fieldWithLoneSurrogate(request);
    if (lone !== undefined) throw invalidField(lone, `${lone} contains a lone surrogate (an unpaired \\uD800–\\uDFFF escape), which is not text`);
  });

  await clientRoutes(app, gatehouse);
  await clientSecretRoutes(app, gatehouse);
  await apiKeyRoutes(app, gatehouse);
  await userRoutes(app, gatehouse);
  await grantRoutes(app, gatehouse);
  await keyRoutes(app, gatehouse);
  await auditRoutes(app, gatehouse);
  await documentationRoutes(app, gatehouse, routes);
}

/**
 * Accepts only an access token of an admin client (client credentials: no user) that holds
 * `scope`; returns the client's id and the scopes the token holds. No or a bad token is `invalid_token` (401); anything else —
 * a user's token, an API key, another client's token, a missing scope — `insufficient_scope` (403).
 *
 * A token holds only those of its scopes its client still holds: an operator who takes an admin
 * scope from a back office takes it from the tokens already issued, as taking the admin flag does
 * (RFC 7662 §2.2: a token is active only while it "has not been revoked by the resource owner").
 * The client comes from the registry's cache (DESIGN §6), so the change applies at once on the
 * instance that made it and within `clients.cacheTtlSeconds` on the others.
 */
async function authorizeAdmin(gatehouse: Gatehouse, request: FastifyRequest, scope: AdminScope): Promise<{ clientId: string; scopes: string[] }> {
  const now = gatehouse.clock();
  const caller = await authenticateCaller(gatehouse, request.headers.authorization, now, 'send the access token of an admin client (Authorization: Bearer ...)');
  // A valid credential knocking on the wrong door is worth an audit line; a missing one is noise.
  const refuse = (reason: string) => {
    gatehouse.audit.record({
      at: now,
      kind: 'admin.refused',
      outcome: 'failure',
      clientId: caller.clientId,
      userId: caller.kind === 'user' ? caller.sub : null,
      data: { credential: caller.kind, scope, route: `${request.method} ${request.routeOptions.url}`, address: request.ip },
    });
    return insufficientScope(reason, scope);
  };
  if (caller.kind !== 'client' || caller.project !== undefined || caller.act !== undefined) {
    throw refuse(`the admin API needs the token of an admin client, not ${caller.kind === 'user' ? "a user's token" : caller.kind === 'api_key' ? 'an API key' : 'a restricted token'}`);
  }
  const entry = await gatehouse.clients.get(caller.clientId);
  if (!entry?.client.isAdmin) throw refuse('the admin API needs the token of an admin client');
  // The caller's scopes are those of the token its client still holds (heldScopes).
  if (!caller.scopes.includes(scope)) throw refuse(entry.client.scopes.includes(scope) ? `the token lacks the scope ${scope}` : `the token's client no longer holds the scope ${scope}`);
  return { clientId: caller.clientId, scopes: caller.scopes };
}

/** The methods the admin routes take at `path` (HEAD wherever GET), or none when no route has that path. */
function methodsAt(routes: readonly AdminRoute[], path: string): string[] {
  const methods = routes.filter((route) => pathPattern(route.url).test(path)).map((route) => route.method);
  if (methods.includes('GET')) methods.push('HEAD');
  return [...new Set(methods)];
}

