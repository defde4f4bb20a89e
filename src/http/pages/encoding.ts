import type { FastifyInstance } from 'fastify';
import { parse as parseForm } from 'fast-querystring';
import { UnreadableRequestError } from './context.ts';

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

// Not redirected: when the parameters cannot be read, neither client_id nor a redirect URI can be trusted.
const unreadable = () => new UnreadableRequestError('The request is malformed: a parameter is not correctly percent-encoded (UTF-8). For your safety you were not redirected.');

/**
 * Registers the routes of an endpoint that sends the person back to an application with what it
 * was sent (`/authorize`, `/logout`: `state`), in a scope of their own whose query string and form
 * body must be percent-encoded UTF-8, else the 400 error page. The other pages do not pay for it.
 */
export async function strictlyEncoded(app: FastifyInstance, routes: (endpoint: FastifyInstance) => void): Promise<void> {
  await app.register(async (endpoint) => {
    endpoint.removeContentTypeParser(FORM);
    endpoint.addContentTypeParser(FORM, { parseAs: 'string' }, (_request, body, done) => {
      if (isWellEncoded(body as string)) done(null, parseForm(body as string));
      else done(unreadable());
    });
    endpoint.addHook('onRequest', async (request) => {
      const at = request.url.indexOf('?');
      if (at !== -1 && !isWellEncoded(request.url.slice(at + 1))) throw unreadable();
    });
    routes(endpoint);
  });
}
