import type { FastifyInstance } from 'fastify';
import { currentSession, recordThrottled, resendWithSession, sendOutcome, type Pages } from './context.ts';
import { strictlyEncoded } from './encoding.ts';
import { refuseHead } from './methods.ts';

/** `/authorize`, GET and POST (OpenID Connect Core §3.1.2.1: both must be supported). */
export async function authorizeRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  await strictlyEncoded(app, (endpoint) => {
    for (const method of ['GET', 'POST'] as const) {
      endpoint.route({
        method,
        url: '/authorize',
        exposeHeadRoute: false,
        handler: async (request, reply) => {
          if (method === 'POST') {
            const resent = resendWithSession(pages, request, reply, '/authorize');
            if (resent) return resent;
            // A post from another site that cannot be sent again as a GET is answered as it came: a
            // request it leaves waiting is bound to a CSRF cookie, which the browser then needs.
            if (request.browser === undefined) pages.csrf.issue(request, reply, true);
          }
          const params = (method === 'GET' ? request.query : request.body) ?? {};
          const outcome = await pages.gatehouse.authorizationEndpoint.begin(params as Record<string, unknown>, await currentSession(pages, request), request.ip, request.browser!);
          if (outcome.kind === 'throttled') recordThrottled(pages, request, 'authorization.throttled');
          return sendOutcome(pages, reply, outcome, false);
        },
      });
    }
    refuseHead(endpoint, '/authorize', ['GET', 'POST']);
  });
}
