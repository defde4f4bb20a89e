import type { FastifyInstance } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import { invalidRequest } from '../../core/errors.ts';
import type { Metrics } from '../metrics.ts';
import { NO_STORE, refuseOtherMethods } from './errors.ts';


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
    refuseOtherMethods(app, url, ['POST'], 'token endpoint');
  }
}
