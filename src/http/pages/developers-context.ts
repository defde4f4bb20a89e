import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ActiveSession } from '../../core/sessions.ts';
import type { Client } from '../../storage/repositories.ts';
import { currentSession, field, type Pages } from './context.ts';
import { safeNextPage } from './login.ts';
import { renderPage } from './render.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Developer portal: the signed-in person (set by the portal's preHandler). */
    developer?: ActiveSession;
    /** Developer portal: the application named by `:clientId`, owned by the developer. */
    application?: Client;
  }
}

// Ids in the portal's addresses: printable ASCII without spaces (never NUL bytes, which PostgreSQL
// refuses as text); record ids are UUIDs.
const CLIENT_ID = /^[\x21-\x7e]{1,200}$/;
export const RECORD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The gate every portal route passes through, in this order: a signed-in person (otherwise the
 * sign-in page, which brings them back here), a valid CSRF token on every POST (otherwise 403,
 * nothing changed), and ownership of the application the address names (otherwise the same 404 as
 * an application that does not exist, so ids of other people's applications cannot be probed).
 */
export function guardPortal(portal: FastifyInstance, pages: Pages): void {
  portal.decorateRequest('developer', undefined);
  portal.decorateRequest('application', undefined);
  portal.addHook('preHandler', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return sendToLogin(request, reply);
    if (request.method === 'POST' && !pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return renderPage(reply, 'error', { title: 'Please try again', message: 'The form expired or did not come from this site, so nothing was changed.' }, 403);
    }
    request.developer = session;
    const clientId = (request.params as { clientId?: unknown } | undefined)?.clientId;
    if (clientId === undefined) return;
    const client = typeof clientId === 'string' && CLIENT_ID.test(clientId) ? await pages.gatehouse.storage.clients.find(clientId) : undefined;
    // An admin client is never managed here, even one given an owner before owners were refused on
    // them: its secrets would carry its admin scopes to whoever signs in as the owner.
    if (!client || client.ownerUserId !== session.user.id || client.isAdmin) return applicationNotFound(reply);
    request.application = client;
  });
}

function sendToLogin(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // After signing in, a GET comes back to the same page; a form post cannot be replayed, so it comes back to the list.
  const next = (request.method === 'GET' && safeNextPage(request.url)) || '/developers';
  return reply.redirect(`/login?next=${encodeURIComponent(next)}`, request.method === 'GET' ? 302 : 303);
}

export const applicationNotFound = (reply: FastifyReply): FastifyReply =>
  renderPage(reply, 'error', { title: 'Application not found', message: 'There is no application of yours at this address.' }, 404);

/** The developer and their application, as the preHandler left them. */
export function portalRequest(request: FastifyRequest): { developer: ActiveSession; application: Client } {
  if (!request.developer || !request.application) throw new Error('portal route reached without its guard');
  return { developer: request.developer, application: request.application };
}

export function developerOf(request: FastifyRequest): ActiveSession {
  if (!request.developer) throw new Error('portal route reached without its guard');
  return request.developer;
}

/** Every value of a repeatable form field (checkboxes): fast-querystring gives one string or an array. */
export function fieldList(body: unknown, name: string): string[] {
  if (typeof body !== 'object' || body === null || !Object.hasOwn(body, name)) return [];
  const value = (body as Record<string, unknown>)[name];
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** A short fixed message chosen by a code in the address: the page never echoes text from the URL. */
export function noticeFrom(request: FastifyRequest, notices: Readonly<Record<string, string>>): string | undefined {
  const code = (request.query as Record<string, unknown> | undefined)?.notice;
  return typeof code === 'string' && Object.hasOwn(notices, code) ? notices[code] : undefined;
}

export const day = (epochSeconds: number): string => new Date(epochSeconds * 1000).toISOString().slice(0, 10);
export const minute = (epochSeconds: number): string => new Date(epochSeconds * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';

/** ValidationError messages start in lower case and have no full stop; a page shows sentences. */
export const sentence = (message: string): string => message.charAt(0).toUpperCase() + message.slice(1) + (message.endsWith('.') ? '' : '.');

/** What the application's pages show of it: name, type and the tabs. */
export function applicationHeader(client: Client) {
  return {
    id: client.id,
    name: client.name,
    description: client.description,
    confidential: client.type === 'confidential',
    typeLabel: client.type === 'confidential' ? 'Confidential' : 'Public',
    created: day(client.createdAt),
    path: `/developers/applications/${encodeURIComponent(client.id)}`,
  };
}
