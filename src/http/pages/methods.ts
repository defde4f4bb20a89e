import type { FastifyInstance, FastifyReply } from 'fastify';
import { pathPattern } from '../route-paths.ts';
import { renderPage } from './render.ts';

/**
 * RFC 9110 §9.2.1, §9.3.2: HEAD is safe, and link checkers, mail scanners and prefetching proxies
 * send it with nobody behind it. An endpoint whose GET acts — `/authorize` issues a code or keeps a
 * waiting request, `/logout` ends a session — cannot give GET's headers without acting, so its HEAD
 * is answered 405 with `Allow` (§15.5.6), and nothing is done. Its GET route must be registered with
 * `exposeHeadRoute: false`, else Fastify answers HEAD by running it.
 */
export function refuseHead(endpoint: FastifyInstance, url: string, allowed: readonly string[]): void {
  endpoint.head(url, async (_request, reply) => methodNotAllowed(reply, allowed));
}

/**
 * RFC 9110 §15.5.6: a page asked with a method it does not take (PUT, DELETE, OPTIONS, …) answers
 * 405 with `Allow`, as the protocol endpoints and the admin API do, not the 404 page of an address
 * with nothing there. Routes are recorded as they are registered: `onRoute` must be added before them.
 */
export function pageMethods(app: FastifyInstance): { allowedAt(path: string): string[] } {
  const routes: { method: string; pattern: RegExp }[] = [];
  app.addHook('onRoute', (route) => {
    const pattern = pathPattern(route.url);
    for (const method of [route.method].flat()) {
      // A HEAD route of its own is refuseHead's: the page's GET acts, and HEAD is refused there.
      if (method === 'HEAD') continue;
      routes.push({ method, pattern });
      if (method === 'GET' && route.exposeHeadRoute !== false) routes.push({ method: 'HEAD', pattern });
    }
  });
  return { allowedAt: (path) => [...new Set(routes.filter((route) => route.pattern.test(path)).map((route) => route.method))] };
}

/** The 405 page, with `Allow`. */
export function methodNotAllowed(reply: FastifyReply, allowed: readonly string[]) {
  const listed = allowed.length > 1 ? `${allowed.slice(0, -1).join(', ')} and ${allowed.at(-1)}` : allowed.join('');
  return renderPage(reply.header('allow', allowed.join(', ')), 'error', { title: 'Method not allowed', message: `This address answers ${listed} only.` }, 405);
}
