import type { FastifyInstance } from 'fastify';
import { parse as parseForm } from 'fast-querystring';
import { currentSession, resendWithSession, sendOutcome, UnreadableRequestError, type Pages } from './context.ts';

const FORM = 'application/x-www-form-urlencoded';

/**
 * Whether a query string or form body is percent-encoded UTF-8 throughout (RFC 3986 §2.1, §2.5;
 * WHATWG URL §5.1). fast-querystring keeps a malformed escape (`%zz`, `a%2`) or one that decodes to no
 * UTF-8 (`%ff`) as the literal text: `state` would go back to the client as other bytes than it sent.
 */
const isWellEncoded = (text: string): boolean => {
  if (!text.includes('%')) return true;
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
};

// Not redirected: when the parameters cannot be read, neither client_id nor redirect_uri can be trusted.
const unreadable = () => new UnreadableRequestError('The request is malformed: a parameter is not correctly percent-encoded (UTF-8). For your safety you were not redirected.');

/** `/authorize`, GET and POST (OpenID Connect Core §3.1.2.1: both must be supported). */
export async function authorizeRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  // The endpoint's own scope: its form parser checks the encoding, which the other pages need not pay for.
  await app.register(async (endpoint) => {
    endpoint.removeContentTypeParser(FORM);
    endpoint.addContentTypeParser(FORM, { parseAs: 'string' }, (_request, body, done) => {
      if (isWellEncoded(body as string)) done(null, parseForm(body as string));
      else done(unreadable());
    });

    for (const method of ['GET', 'POST'] as const) {
      endpoint.route({
        method,
        url: '/authorize',
        handler: async (request, reply) => {
          if (method === 'GET') {
            const at = request.url.indexOf('?');
            if (at !== -1 && !isWellEncoded(request.url.slice(at + 1))) throw unreadable();
          } else {
            const resent = resendWithSession(pages, request, reply, '/authorize');
            if (resent) return resent;
          }
          const params = (method === 'GET' ? request.query : request.body) ?? {};
          const outcome = await pages.gatehouse.authorizationEndpoint.begin(params as Record<string, unknown>, await currentSession(pages, request));
          return sendOutcome(reply, outcome, false);
        },
      });
    }
  });
}
