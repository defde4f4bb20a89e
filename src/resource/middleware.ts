import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authenticator, Principal } from './authenticator.ts';
import { ResourceError } from './errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by Gatehouse's `requireScope` pre-handler. */
    principal?: Principal;
  }
}

function send(error: unknown, respond: (status: number, headers: Record<string, string>, body: unknown) => void): void {
  if (error instanceof ResourceError) {
    respond(error.status, { 'www-authenticate': error.wwwAuthenticate, 'cache-control': 'no-store' }, error.toJSON());
    return;
  }
  // Discovery or introspection failed: the API cannot judge the credential right now.
  respond(503, { 'retry-after': '5' }, { error: 'temporarily_unavailable', error_description: 'the authorization server could not be reached' });
}

/**
 * Fastify: `{ preHandler: gatehouse.requireScope('objects:read') }` authenticates the request,
 * checks the scopes and sets `request.principal`; failures answer per RFC 6750.
 */
export function fastifyGatehouse(authenticator: Authenticator) {
  return {
    requireScope(...scopes: string[]) {
      return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
        try {
          const principal = await authenticator.authenticate(request);
          authenticator.requireScopes(principal, scopes);
          request.principal = principal;
        } catch (error) {
          send(error, (status, headers, body) => void reply.code(status).headers(headers).send(body));
          return reply;
        }
      };
    },
  };
}

/** The parts of Express's request and response this middleware uses. */
interface ExpressRequest {
  headers: Record<string, string | string[] | undefined>;
  principal?: Principal;
}
interface ExpressResponse {
  status(code: number): ExpressResponse;
  set(headers: Record<string, string>): ExpressResponse;
  json(body: unknown): unknown;
}

/** Express: `app.get('/objects', gatehouse.requireScope('objects:read'), handler)`; sets `req.principal`. */
export function expressGatehouse(authenticator: Authenticator) {
  return {
    requireScope(...scopes: string[]) {
      return (request: ExpressRequest, response: ExpressResponse, next: (error?: unknown) => void): void => {
        authenticator.authenticate(request).then(
          (principal) => {
            try {
              authenticator.requireScopes(principal, scopes);
            } catch (error) {
              send(error, (status, headers, body) => response.status(status).set(headers).json(body));
              return;
            }
            request.principal = principal;
            next();
          },
          (error: unknown) => send(error, (status, headers, body) => response.status(status).set(headers).json(body)),
        );
      };
    },
  };
}
