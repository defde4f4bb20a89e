import type { FastifyInstance } from 'fastify';
import { currentSession, sendOutcome, type Pages } from './context.ts';

/** `/authorize`, GET and POST (OpenID Connect Core §3.1.2.1: both must be supported). */
export async function authorizeRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const handle = (method: 'GET' | 'POST') =>
    app.route({
      method,
      url: '/authorize',
      handler: async (request, reply) => {
        const params = (method === 'GET' ? request.query : request.body) ?? {};
        const outcome = await pages.gatehouse.authorizationEndpoint.begin(params as Record<string, unknown>, await currentSession(pages, request));
        return sendOutcome(reply, outcome, false);
      },
    });
  handle('GET');
  handle('POST');
}
