import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuthorizationOutcome } from '../../core/authorize/endpoint.ts';
import type { ActiveSession, SignInOrigin } from '../../core/sessions.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Metrics } from '../metrics.ts';
import { renderPage } from './render.ts';
import type { CookiePolicy, CsrfProtection } from './security.ts';

/** A request a page cannot read at all, refused with a message for the person (400) and never redirected. */
export class UnreadableRequestError extends Error {
  override name = 'UnreadableRequestError';
  readonly code = 'ERR_UNREADABLE_REQUEST';
  readonly statusCode = 400;
}

/** What every page route is given: the instance, cookie policy and CSRF protection. */
export interface Pages {
  gatehouse: Gatehouse;
  metrics: Metrics;
  cookies: CookiePolicy;
  csrf: CsrfProtection;
}

/** Where a request signs in from, to be recorded with the session (SessionService.start). */
export function signInOrigin(request: FastifyRequest): SignInOrigin {
  return { address: request.ip, userAgent: request.headers['user-agent'] };
}

export async function currentSession(pages: Pages, request: FastifyRequest): Promise<ActiveSession | undefined> {
  return pages.gatehouse.sessions.resolve(request.cookies[pages.cookies.names(request).session], pages.gatehouse.clock());
}

// Longer requests stay POSTs: as a query string they would pass the header size limit.
const MAX_RESENT_QUERY = 8 * 1024;

/**
 * A form posted from another site (an application's POST to /authorize or /logout) arrives without
 * the session cookie, which is `SameSite=Lax`: the person would look signed out. Such a POST is sent
 * back to the same address as a GET (303), which the browser makes as a top-level navigation, with
 * the cookie. Undefined when the request carries the cookie already, or cannot be written as a query
 * string (a value that is not a string, or too long); it is then answered as it came.
 */
export function resendWithSession(pages: Pages, request: FastifyRequest, reply: FastifyReply, path: string): FastifyReply | undefined {
  if (request.cookies[pages.cookies.names(request).session] !== undefined) return undefined;
  const body = request.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(body)) {
    if (typeof value === 'string') query.append(name, value);
    else if (Array.isArray(value) && value.every((item) => typeof item === 'string')) for (const item of value) query.append(name, item);
    else return undefined;
  }
  const search = query.toString();
  if (search.length > MAX_RESENT_QUERY) return undefined;
  return reply.redirect(search ? `${path}?${search}` : path, 303);
}

/**
 * Records a request a limit refused (`kind`: `login.throttled`, `signup.throttled`, …) with the
 * client address. A run past a limit goes on at the rate it likes, so the refusals are aggregated as
 * refused token requests are (AuditTrail.recordRepeatable): one row a minute per kind, account and
 * details, with its count.
 */
export function recordThrottled(pages: Pages, request: FastifyRequest, kind: string, details: { userId?: string; data?: Record<string, unknown> } = {}): void {
  const userId = details.userId ?? null;
  const data = { ...details.data, address: request.ip };
  pages.gatehouse.audit.recordRepeatable(JSON.stringify([kind, userId, data]), { at: pages.gatehouse.clock(), kind, outcome: 'failure', clientId: null, userId, data });
}

/** A single-valued string form field, or undefined. */
export function field(body: unknown, name: string): string | undefined {
  if (typeof body !== 'object' || body === null || !Object.hasOwn(body, name)) return undefined;
  const value = (body as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

/** Shows the browser what the authorization endpoint decided, and counts its answers to the client. */
export function sendOutcome(pages: Pages, reply: FastifyReply, outcome: AuthorizationOutcome, afterPost: boolean): FastifyReply {
  if (outcome.kind === 'redirect' || outcome.kind === 'form_post') pages.metrics.authorizationAnswered(outcome.fields);
  switch (outcome.kind) {
    case 'redirect':
      // 303 after a form post, so the browser follows with GET.
      return reply.redirect(outcome.url, afterPost ? 303 : 302);
    case 'form_post':
      return renderPage(reply, 'form-post', { title: 'Returning to the application', action: outcome.action, fields: Object.entries(outcome.fields) });
    case 'login':
      return reply.redirect(`/login?request=${encodeURIComponent(outcome.pendingId)}`, afterPost ? 303 : 302);
    case 'consent':
      return reply.redirect(`/consent?request=${encodeURIComponent(outcome.pendingId)}`, afterPost ? 303 : 302);
    case 'error_page':
      return renderPage(reply, 'error', { title: 'This request cannot be completed', message: outcome.message }, 400);
    case 'throttled':
      reply.header('retry-after', String(outcome.retryAfterSeconds));
      return renderPage(reply, 'error', { title: 'Too many requests', message: `Too many sign-in requests came from your network. Try again in ${Math.ceil(outcome.retryAfterSeconds / 60)} minute(s).` }, 429);
  }
}
