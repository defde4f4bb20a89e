import type { FastifyInstance } from 'fastify';
import { parse as parseForm } from 'fast-querystring';
import { isWellEncoded } from '../percent-encoding.ts';
import { UnreadableRequestError } from './context.ts';

const FORM = 'application/x-www-form-urlencoded';

// Not redirected: when the parameters cannot be read, neither client_id nor a redirect URI can be trusted.
const unreadable = () => new UnreadableRequestError('The request is malformed: a parameter is not correctly percent-encoded (UTF-8). For your safety you were not redirected.');

/**
 * Registers the routes of an endpoint that sends the person back to an application with what it
 * was sent (`/authorize`, `/logout`: `state`), in a scope of their own whose query string, as their
 * form body, must be percent-encoded UTF-8, else the 400 error page saying nobody was redirected.
 * The other pages' queries are not checked: they name at most a waiting request or a notice.
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
