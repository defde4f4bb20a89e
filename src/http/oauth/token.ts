import type { FastifyInstance } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import { invalidRequest } from '../../core/errors.ts';
import type { Metrics } from '../metrics.ts';

// RFC 6749 §5.1: "The authorization server MUST include the HTTP "Cache-Control" response header
// field with a value of "no-store" in any response containing tokens".
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' };

/** The token endpoint at `/token` and, as some platforms document it, `/access_token`. */
export async function tokenRoutes(app: FastifyInstance, { gatehouse, metrics }: { gatehouse: Gatehouse; metrics: Metrics }): Promise<void> {
  for (const url of ['/token', '/access_token']) {
    app.post(url, async (request, reply) => {
      const body = request.body;
      if (body !== undefined && body !== null && (typeof body !== 'object' || Array.isArray(body))) {
        throw invalidRequest('the body must be a set of parameters');
      }
      const response = await gatehouse.tokenEndpoint.handle({
        params: (body ?? {}) as Record<string, unknown>,
        authorization: request.headers.authorization,
        address: request.ip,
      });
      // Only answered requests get here, so the grant type is a registered one.
      metrics.tokenIssued(String((body as Record<string, unknown>).grant_type));
      return reply.headers(NO_STORE).send(response);
    });
    app.route({
      method: ['GET', 'PUT', 'DELETE', 'PATCH'],
      url,
      handler: async (_request, reply) => {
        reply.headers({ allow: 'POST', ...NO_STORE });
        reply.code(405);
        return { error: 'invalid_request', error_description: 'the token endpoint accepts POST only' };
      },
    });
  }
}
