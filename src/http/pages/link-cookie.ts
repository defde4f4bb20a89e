import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Pages } from './context.ts';

/**
 * Where the pages keep the token of a link sent by email (password reset, email verification) once
 * it is followed. The token must not stay in the address: a page's address reaches the browser's
 * history, and any Referer it sends (RFC 9700 §4.2.4 says the same of codes). So the link is
 * answered with a redirect to its page without it, the token moved into a short-lived HttpOnly
 * cookie, `__Host-` whenever the session cookie has it (HTTPS); the pages send
 * `Referrer-Policy: no-referrer` and `Cache-Control: no-store` besides (PAGE_HEADERS).
 */
export function linkCookie(pages: Pages, name: string, path: string) {
  const cookieName = (request: FastifyRequest) => (pages.cookies.names(request).session.startsWith('__Host-') ? `__Host-${name}` : name);
  return {
    read: (request: FastifyRequest): string | undefined => request.cookies[cookieName(request)],
    /** Keeps `token` for `ttlSeconds` and sends the browser to the link's page without it. */
    moveIntoCookie(request: FastifyRequest, reply: FastifyReply, token: string, ttlSeconds: number) {
      reply.setCookie(cookieName(request), token, pages.cookies.options(request, ttlSeconds));
      return reply.redirect(path, 303);
    },
    forget(request: FastifyRequest, reply: FastifyReply) {
      if (request.cookies[cookieName(request)] !== undefined) reply.clearCookie(cookieName(request), pages.cookies.options(request));
    },
  };
}
