import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { changeOwnName, changeOwnPassword, MAX_NAME_LENGTH, signOutOtherSessions } from '../../core/account.ts';
import { checkNewPassword } from '../../core/users.ts';
import { ValidationError } from '../../core/validation.ts';
import type { ActiveSession } from '../../core/sessions.ts';
import { currentSession, field, recordThrottled, signInOrigin, type Pages } from './context.ts';
import { renderPage } from './render.ts';

type PasswordErrors = Partial<Record<'current' | 'new' | 'confirm' | 'form', string>>;
type NameErrors = Partial<Record<'name' | 'form', string>>;

export const EXPIRED = 'Your session expired while the page was open. Please try again.';
export const tooManyAttempts = (seconds: number): string => `Too many attempts. Try again in ${Math.ceil(seconds / 60)} minute(s).`;
export const BUSY = 'Your password could not be checked right now. Please try again in a moment.';

/** A current password an account page's form asked for that was not checked (LoginService.confirmPassword). */
export type PasswordUnchecked = { outcome: 'throttled'; retryAfterSeconds: number; limit: 'account' | 'address' } | { outcome: 'busy' };

/**
 * The answer to a form on the account pages whose current password was not checked: over the
 * sign-in limits it shares with the sign-in page, 429 with Retry-After, recorded as
 * `login.throttled`; held back while other attempts on the account are checked, 503. `showForm`
 * shows the page's form again with the message.
 */
export function answerPasswordUnchecked(
  pages: Pages,
  request: FastifyRequest,
  reply: FastifyReply,
  userId: string,
  result: PasswordUnchecked,
  showForm: (message: string, status: number) => FastifyReply | Promise<FastifyReply>,
): FastifyReply | Promise<FastifyReply> {
  if (result.outcome === 'busy') {
    reply.header('retry-after', '1');
    return showForm(BUSY, 503);
  }
  recordThrottled(pages, request, 'login.throttled', { userId, data: { via: 'account_page', limit: result.limit } });
  reply.header('retry-after', String(result.retryAfterSeconds));
  return showForm(tooManyAttempts(result.retryAfterSeconds), 429);
}

/** A signed-out person signs in first, and comes back to `path`. */
export const toSignIn = (request: FastifyRequest, reply: FastifyReply, path: string) => reply.redirect(`/login?next=${encodeURIComponent(path)}`, request.method === 'GET' ? 302 : 303);
const sentence = (message: string): string => message.charAt(0).toUpperCase() + message.slice(1) + '.';

/**
 * What a person changes about their own account, signed in: their password (`/account/password`),
 * their name (`/account/name`), and which browsers stay signed in (`/account/sign-out-elsewhere`).
 * Each change is a form post with the CSRF token; signed out, the person signs in first.
 */
export async function accountSettingsRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;

  const showPasswordForm = (reply: FastifyReply, session: ActiveSession, errors: PasswordErrors = {}, status = 200) =>
    renderPage(reply, 'account-password', { title: 'Change your password', email: session.user.email, errors }, status);

  app.get('/account/password', async (request, reply) => {
    const session = await currentSession(pages, request);
    return session ? showPasswordForm(reply, session) : toSignIn(request, reply, '/account/password');
  });

  app.post('/account/password', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return toSignIn(request, reply, '/account/password');
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showPasswordForm(reply, session, { form: EXPIRED }, 403);
    const current = field(request.body, 'current_password') ?? '';
    const next = field(request.body, 'new_password') ?? '';
    const confirmation = field(request.body, 'confirm_password') ?? '';

    // Everything wrong with the form at once, before the current password is tried: a typo in the
    // new one costs no attempt.
    const errors: PasswordErrors = {};
    if (!current) errors.current = 'Enter your current password.';
    try {
      checkNewPassword(next);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      errors.new = sentence(error.message);
    }
    if (!errors.new && confirmation !== next) errors.confirm = 'The new password and its confirmation are not the same.';
    if (Object.keys(errors).length > 0) return showPasswordForm(reply, session, errors, 400);

    const now = gatehouse.clock();
    const result = await changeOwnPassword(gatehouse, session, { current, next }, signInOrigin(request), now);
    switch (result.outcome) {
      case 'throttled':
      case 'busy':
        return answerPasswordUnchecked(pages, request, reply, session.user.id, result, (form, status) => showPasswordForm(reply, session, { form }, status));
      case 'invalid':
        gatehouse.audit.record({ at: now, kind: 'user.password_change_failed', outcome: 'failure', clientId: null, userId: session.user.id, data: { address: request.ip } });
        return showPasswordForm(reply, session, { current: 'The current password is not right.' }, 400);
      case 'changed':
        gatehouse.audit.record({ at: now, kind: 'user.password_changed', outcome: 'success', clientId: null, userId: session.user.id, data: { other_sessions_ended: result.otherSessionsEnded, address: request.ip } });
        reply.setCookie(pages.cookies.names(request).session, result.session, pages.cookies.options(request, gatehouse.sessions.ttlSeconds));
        return reply.redirect('/account?changed=password', 303);
    }
  });

  const showNameForm = (reply: FastifyReply, name: string, errors: NameErrors = {}, status = 200) =>
    renderPage(reply, 'account-name', { title: 'Change your name', name, maxLength: MAX_NAME_LENGTH, errors }, status);

  app.get('/account/name', async (request, reply) => {
    const session = await currentSession(pages, request);
    return session ? showNameForm(reply, session.user.name) : toSignIn(request, reply, '/account/name');
  });

  app.post('/account/name', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return toSignIn(request, reply, '/account/name');
    const name = field(request.body, 'name') ?? '';
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showNameForm(reply, name, { form: EXPIRED }, 403);
    const now = gatehouse.clock();
    let updated;
    try {
      updated = await changeOwnName(gatehouse, session.user, name, now);
    } catch (error) {
      if (error instanceof ValidationError) return showNameForm(reply, name, { name: sentence(error.message) }, 400);
      throw error;
    }
    if (updated && updated.name !== session.user.name) {
      gatehouse.audit.record({ at: now, kind: 'user.name_changed', outcome: 'success', clientId: null, userId: session.user.id, data: { address: request.ip } });
    }
    return reply.redirect('/account?changed=name', 303);
  });

  app.post('/account/sign-out-elsewhere', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return toSignIn(request, reply, '/account');
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return renderPage(reply, 'error', { title: 'Please try again', message: 'The form expired or did not come from this site, so nothing was changed.' }, 403);
    }
    const ended = await signOutOtherSessions(gatehouse.sessions, session);
    gatehouse.audit.record({ at: gatehouse.clock(), kind: 'user.signed_out_elsewhere', outcome: 'success', clientId: null, userId: session.user.id, data: { sessions_ended: ended } });
    return reply.redirect('/account?signed_out=elsewhere', 303);
  });

  // RFC 9110 §15.5.6: the address exists, for POST only.
  app.get('/account/sign-out-elsewhere', async (_request, reply) => {
    reply.header('allow', 'POST');
    return renderPage(reply, 'error', { title: 'Use the button on your account page', message: 'Signing out your other browsers is done with the button on your account page.' }, 405);
  });
}
