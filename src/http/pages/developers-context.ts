import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { MAX_CLIENT_SECRETS } from '../../core/applications.ts';
import type { ActiveSession } from '../../core/sessions.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Client, ExpectedClient } from '../../storage/repositories/clients.ts';
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
  interface FastifyContextConfig {
    /** Developer portal: what a POST route's form is, for the guard (see PortalForm). */
    portalForm?: PortalForm;
    /**
     * Developer portal: the route registers an application or gives one a credential (client
     * secret, public keys, API key), so the guard lets through only a developer whose address is
     * verified, while email verification is on (see mayCreateCredentials).
     */
    portalGivesCredentials?: boolean;
  }
}

/**
 * What the portal's guard knows of a route's form, declared with the route (`config.portalForm`):
 * where the form is shown, and how to show it again. The guard answers with these in place of the
 * route, which then never runs: nothing is stored.
 */
export interface PortalForm {
  /** The page the form is on, from the address alone: sign-in brings a developer whose session ended back there. */
  page: (request: FastifyRequest) => string;
  /**
   * The form again, as posted (never a secret), with `message` and status 403, for a post whose CSRF
   * token has gone stale while the developer is still signed in; only ever called for a post from
   * this site's own pages, with the developer and their application checked.
   */
  again: (request: FastifyRequest, reply: FastifyReply, message: string) => Promise<FastifyReply> | FastifyReply;
}

/** The secrets an application holds at most in the portal, as anywhere else (MAX_CLIENT_SECRETS). */
export const MAX_PORTAL_SECRETS = MAX_CLIENT_SECRETS;

/**
 * The applications a developer registers at most in the portal. Anyone with an account can
 * register them, and the portal's list shows each, while deleting the account, or taking back its
 * credentials after a password reset, goes through each in statements of its own: without a bound,
 * a developer could make those grow without end.
 */
export const MAX_PORTAL_APPLICATIONS = 100;

/**
 * The live API keys an application holds at most in the portal: one for each of its back ends and
 * scripts, and a new one beside each while it is being replaced. Anyone with an account can make
 * them, and the keys page lists each, so without a bound a developer could make that page, and the
 * revocation of the application's credentials, grow without end. Revoked and expired keys do not count.
 */
export const MAX_PORTAL_API_KEYS = 20;

/** Said when a form is shown again because its CSRF token had gone stale. */
export const FORM_EXPIRED = 'The form had expired (the page was open a long time, or you signed in again in another tab), so nothing was changed. Check it and send it again.';

// Ids in the portal's addresses: printable ASCII without spaces (never NUL bytes, which PostgreSQL
// refuses as text); record ids are UUIDs.
const CLIENT_ID = /^[\x21-\x7e]{1,200}$/;
export const RECORD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The gate every portal route passes through, in this order: a signed-in person (otherwise the
 * sign-in page, which brings them back to the page they were on), ownership of the application the
 * address names (otherwise the same 404 as an application that does not exist, so ids of other
 * people's applications cannot be probed), and a valid CSRF token on every POST (otherwise 403,
 * nothing changed: the route never runs). A form of this site's own pages whose token went stale
 * is shown again as it was filled in (the route's `portalForm.again`), still with 403 and nothing
 * changed, so that the developer can send it again with the fresh token the page carries.
 */
export function guardPortal(portal: FastifyInstance, pages: Pages): void {
  portal.decorateRequest('developer', undefined);
  portal.decorateRequest('application', undefined);
  portal.addHook('preHandler', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return sendToLogin(request, reply);
    const clientId = (request.params as { clientId?: unknown } | undefined)?.clientId;
    if (clientId !== undefined) {
      const client = typeof clientId === 'string' && CLIENT_ID.test(clientId) ? await pages.gatehouse.storage.clients.find(clientId) : undefined;
      if (!client || !mayManage(client, session.user.id)) return applicationNotFound(reply);
      request.application = client;
    }
    request.developer = session;
    if (request.method === 'POST' && !pages.csrf.verify(request, field(request.body, 'csrf'))) {
      const form = request.routeOptions.config.portalForm;
      if (form && postedFromThisSite(request, pages.gatehouse.config.issuer)) return form.again(request, reply, FORM_EXPIRED);
      return renderPage(reply, 'error', { title: 'Please try again', message: 'The form expired or did not come from this site, so nothing was changed.' }, 403);
    }
    if (request.routeOptions.config.portalGivesCredentials && !mayCreateCredentials(pages.gatehouse, session)) return verifyFirst(reply, session);
  });
}

/**
 * Whether the developer may register applications and give them credentials: with email
 * verification on (`signup.verifyEmail`), only once their address is verified. Anyone can sign up
 * with an address that is not theirs; credentials made then would stay with that person after the
 * address's owner takes the account back with a password reset link (account pre-hijacking,
 * Sudhodanan & Paverd 2022; OWASP ASVS V2.1): a client secret or API key they keep acts as an
 * application of the owner's account. Reading the portal, and deleting or revoking, stay open.
 */
export const mayCreateCredentials = (gatehouse: Gatehouse, developer: ActiveSession): boolean => developer.user.emailVerified || !gatehouse.emailVerifications.enabled;

/** The page answered in place of a form that would give credentials to a developer whose address is not verified: 403, nothing stored. */
const verifyFirst = (reply: FastifyReply, developer: ActiveSession): FastifyReply =>
  renderPage(reply, 'developers-verify', { title: 'Verify your email address first', email: developer.user.email }, 403);

/**
 * Whether a POST came from one of this site's own pages: the browser says so (Sec-Fetch-Site), or,
 * one that does not send it, gives the issuer's origin. Only such a form is shown again with what it
 * carried. Another site's page must not fill in a form for the developer to send on trust: a
 * sibling on the same site (another subdomain, another port) gets the `SameSite=Lax` session cookie
 * sent along with its POST, and so a developer who looks signed in. Our pages send no Referer, so
 * their Origin is "null": Sec-Fetch-Site is what tells them apart.
 */
function postedFromThisSite(request: FastifyRequest, issuer: string): boolean {
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin';
  return request.headers.origin === new URL(issuer).origin;
}

/**
 * Whether the developer manages the application here: it is theirs, and holds no power that only
 * operators manage. An admin client is never managed here, even one given an owner before owners
 * were refused on them: its secrets would carry its admin scopes to whoever signs in as the owner;
 * nor is one allowed to impersonate, or a resource server (which introspects every client's tokens).
 */
export const mayManage = (client: Client, developerId: string): boolean =>
  client.ownerUserId === developerId && !client.isAdmin && !client.allowImpersonation && !client.isResourceServer;

/** The state a portal write expects the application in: as the portal checked it (mayManage), with the scopes it was read with. */
const managedState = (application: Client): ExpectedClient => ({
  isAdmin: false,
  scopes: application.scopes,
  allowImpersonation: false,
  isResourceServer: false,
  owner: application.ownerUserId,
});

const inState = (client: Client, expected: ExpectedClient): boolean =>
  client.isAdmin === expected.isAdmin &&
  client.allowImpersonation === expected.allowImpersonation &&
  client.isResourceServer === expected.isResourceServer &&
  client.ownerUserId === expected.owner &&
  client.scopes.length === expected.scopes.length &&
  client.scopes.every((scope, i) => scope === expected.scopes[i]);

/** Why a portal write stored nothing: the application is gone, is no longer the developer's to manage, or kept changing. */
export type WriteRefused = 'gone' | 'not-yours' | 'changed';

/**
 * Writes to the developer's application (`act`: adds or deletes a credential, deletes the
 * application) only while it is as the portal checked it: `act` makes its write conditional on
 * `expected` (the developer's, with no operator-only power, the scopes it was read with). An operator
 * may change the application between the portal's check and the write — make it an admin client or
 * a resource server, give it to someone else — and the write then stores nothing (`act` gives
 * undefined). The application is read again: gone or no longer the developer's to manage, the
 * write is refused; otherwise it is made once more to the application as it is now, and refused as
 * 'changed' if it loses again. An application still as it was checked means that `act` found
 * nothing to do (a key revoked meanwhile): `done` is undefined.
 */
export async function writeToOwnApplication<T>(
  gatehouse: Gatehouse,
  developerId: string,
  checked: Client,
  act: (application: Client, expected: ExpectedClient) => Promise<T | undefined>,
): Promise<{ application: Client; done: T | undefined } | { refused: WriteRefused }> {
  let application = checked;
  for (let attempt = 1; ; attempt++) {
    const expected = managedState(application);
    const done = await act(application, expected);
    if (done !== undefined) return { application, done };
    const current = await gatehouse.storage.clients.find(application.id);
    if (!current) return { refused: 'gone' };
    if (!mayManage(current, developerId)) return { refused: 'not-yours' };
    if (inState(current, expected)) return { application: current, done: undefined };
    if (attempt === 2) return { refused: 'changed' };
    application = current;
  }
}

/** Thrown by an updateClient `authorize` check when the application is no longer the developer's to manage. */
export class NotManageableError extends Error {
  override name = 'NotManageableError';
  readonly code = 'ERR_NOT_MANAGEABLE';
}

/** updateClient's check for a portal change: only to an application the developer may manage, as it is when written. */
export const authorizePortalChange =
  (developerId: string) =>
  (current: Client): void => {
    if (!mayManage(current, developerId)) throw new NotManageableError(`the application ${current.id} is not one the developer manages`);
  };

/**
 * After signing in, a GET comes back to the same page, and a form post to the page the form was on
 * (as Keycloak and Auth0 ask to sign in again). What the form carried is not kept and never sent
 * again: it acts only once sent anew, with the CSRF token of the new session.
 */
function sendToLogin(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const next = safeNextPage(request.method === 'GET' ? request.url : request.routeOptions.config.portalForm?.page(request)) ?? '/developers';
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

/** Records a change the signed-in developer made to the application `clientId`, with the client address it came from. */
export function recordPortalChange(gatehouse: Gatehouse, request: FastifyRequest, event: { at: number; kind: string; clientId: string; data: Record<string, unknown> }): void {
  gatehouse.audit.record({ ...event, outcome: 'success', userId: developerOf(request).user.id, data: { ...event.data, address: request.ip } });
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

/** The address of an application's page. */
export const applicationPath = (clientId: string): string => `/developers/applications/${encodeURIComponent(clientId)}`;

/** The application page of the address's `:clientId`, for a form's PortalForm.page. */
export const applicationPageOf = (request: FastifyRequest): string => applicationPath(String((request.params as { clientId?: unknown }).clientId));

/** What the application's pages show of it: name, type and the tabs. */
export function applicationHeader(client: Client) {
  return {
    id: client.id,
    name: client.name,
    description: client.description,
    confidential: client.type === 'confidential',
    typeLabel: client.type === 'confidential' ? 'Confidential' : 'Public',
    created: day(client.createdAt),
    path: applicationPath(client.id),
  };
}
