import type { FastifyInstance } from 'fastify';
import { renderPage } from './render.ts';

/**
 * RFC 9110 §9.2.1, §9.3.2: HEAD is safe, and link checkers, mail scanners and prefetching proxies
 * send it with nobody behind it. An endpoint whose GET acts — `/authorize` issues a code or keeps a
 * waiting request, `/logout` ends a session — cannot give GET's headers without acting, so its HEAD
 * is answered 405 with `Allow` (§15.5.6), and nothing is done. Its GET route must be registered with
 * `exposeHeadRoute: false`, else Fastify answers HEAD by running it.
 */
export function refuseHead(endpoint: FastifyInstance, url: string, allowed: readonly string[]): void {
  endpoint.head(url, async (_request, reply) =>
    renderPage(reply.header('allow', allowed.join(', ')), 'error', { title: 'Method not allowed', message: `This address answers ${allowed.join(' and ')} only.` }, 405),
  );
}
