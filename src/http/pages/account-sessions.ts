import type { FastifyInstance } from 'fastify';
import { signOutSession } from '../../core/account.ts';
import type { ActiveSession } from '../../core/sessions.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { currentSession, field, type Pages } from './context.ts';
import { minute } from './developers-context.ts';
import { toSignIn } from './account-settings.ts';
import { renderPage } from './render.ts';

/** What the account page shows of one signed-in browser. */
export interface ListedSession {
  /** Its sid, the handle its "Sign out" form sends: random, not secret, nothing of the cookie. Undefined for one without a sid (started by an instance older than sids), which has no button. */
  handle: string | undefined;
  device: string;
  address: string;
  started: string;
  lastUsed: string;
  current: boolean;
}

/** Longer than any sid SessionService draws (32 hex digits) or migration 013 gave; a longer one is no sid. */
const MAX_HANDLE_LENGTH = 64;

/**
 * The browsers the person is signed in on, newest first and at most LISTED_SESSIONS (and this
 * one), this one marked (Keycloak's device activity, Google's and GitHub's session lists): what it was signed in
 * with, from which address, when, and when last used.
 */
export async function listedSessions(gatehouse: Gatehouse, signedIn: ActiveSession, now: number): Promise<ListedSession[]> {
  const sessions = await gatehouse.sessions.listForUser(signedIn.user.id, now);
  // This one is always listed, first when more than the bound were started after it.
  if (!sessions.some((session) => session.digest === signedIn.session.digest)) sessions.unshift(signedIn.session);
  return sessions.map((session) => ({
    handle: session.sid ?? undefined,
    device: session.device ?? 'Unknown browser',
    address: session.address ?? 'unknown address',
    started: minute(session.createdAt),
    lastUsed: session.lastUsedAt === null ? 'unknown' : minute(session.lastUsedAt),
    current: session.digest === signedIn.session.digest,
  }));
}

/**
 * `/account/sessions/sign-out`: signs one other browser out, as a sign-out in it would (its
 * applications are told, SessionService.endOne). The form carries the CSRF token and the session's
 * sid, never its cookie or digest. Nothing changes for a session that is not the person's, one
 * that has ended, or this one (which signs out with the ordinary sign-out).
 */
export async function accountSessionRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;

  // RFC 9110 §15.5.6: the address exists, for POST only.
  app.get('/account/sessions/sign-out', async (_request, reply) => {
    reply.header('allow', 'POST');
    return renderPage(reply, 'error', { title: 'Use the button on your account page', message: 'Signing out one of your browsers is done with its button on your account page.' }, 405);
  });

  app.post('/account/sessions/sign-out', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return toSignIn(request, reply, '/account');
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return renderPage(reply, 'error', { title: 'Please try again', message: 'The form expired or did not come from this site, so nothing was changed.' }, 403);
    }
    const handle = field(request.body, 'session') ?? '';
    const result = handle === '' || handle.length > MAX_HANDLE_LENGTH ? 'unknown' : await signOutSession(gatehouse.sessions, session, handle);
    switch (result) {
      case 'current':
        return renderPage(reply, 'error', { title: 'This is the browser you are using', message: 'To sign out of this browser, use the Sign out button on your account page. Nothing was changed.' }, 400);
      case 'unknown':
        return renderPage(reply, 'error', { title: 'That browser is not signed in', message: 'It was signed out already, or it is not one of the browsers signed in to your account. Nothing was changed.' }, 404);
      case 'ended':
        gatehouse.audit.record({ at: gatehouse.clock(), kind: 'user.session_signed_out', outcome: 'success', clientId: null, userId: session.user.id, data: { sid: handle, address: request.ip } });
        return reply.redirect('/account?signed_out=session', 303);
    }
  });
}
