import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EMAIL_CHANGE_PATH } from '../../core/email-change.ts';
import { lifetimeText } from '../../core/emailed-links.ts';
import { ValidationError } from '../../core/validation.ts';
import type { ActiveSession } from '../../core/sessions.ts';
import { currentSession, field, recordThrottled, type Pages } from './context.ts';
import { linkCookie } from './link-cookie.ts';
import { answerPasswordUnchecked, EXPIRED, tooManyAttempts } from './account-settings.ts';
import { renderPage } from './render.ts';

type EmailErrors = Partial<Record<'email' | 'current' | 'form', string>>;


/**
 * A person changes their account's address (EmailChangeService): the form on the account page
 * (`/account/email`), which asks for the current password, and, with mail, the page the link to
 * the new address opens (`/email/change`). That page works as email verification's does: the token
 * leaves the address for a cookie (linkCookie), following the link changes nothing (mail scanners
 * fetch links), and only a browser signed in to the account that asked is offered the button whose
 * POST, with its CSRF token, changes the address.
 */
export async function accountEmailRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;
  const changes = gatehouse.emailChanges;
  const changeLink = linkCookie(pages, 'gatehouse_email_change', EMAIL_CHANGE_PATH);

  const showForm = (reply: FastifyReply, session: ActiveSession, data: { email?: string; errors?: EmailErrors } = {}, status = 200) =>
    renderPage(reply, 'account-email', { title: 'Change your email address', current: session.user.email, byLink: changes.byLink, email: data.email ?? '', errors: data.errors ?? {} }, status);

  app.get('/account/email', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return reply.redirect(`/login?next=${encodeURIComponent('/account/email')}`, 302);
    return showForm(reply, session);
  });

  app.post('/account/email', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return reply.redirect(`/login?next=${encodeURIComponent('/account/email')}`, 303);
    const email = field(request.body, 'email')?.trim() ?? '';
    const password = field(request.body, 'current_password') ?? '';
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showForm(reply, session, { email, errors: { form: EXPIRED } }, 403);
    if (!password) return showForm(reply, session, { email, errors: { current: 'Enter your current password.' } }, 400);

    const now = gatehouse.clock();
    let result;
    try {
      result = await changes.request(session.user, { newEmail: email, password }, request.ip, now);
    } catch (error) {
      if (error instanceof ValidationError) return showForm(reply, session, { email, errors: { email: 'Enter a valid email address.' } }, 400);
      throw error;
    }
    switch (result.outcome) {
      case 'same':
        return showForm(reply, session, { email, errors: { email: 'This is the address your account has already.' } }, 400);
      case 'throttled':
        if (result.limit === 'links') {
          recordThrottled(pages, request, 'email_change.throttled', { userId: session.user.id });
          reply.header('retry-after', String(result.retryAfterSeconds));
          return showForm(reply, session, { email, errors: { form: tooManyAttempts(result.retryAfterSeconds) } }, 429);
        }
        return answerPasswordUnchecked(pages, request, reply, session.user.id, { ...result, limit: result.limit }, (form, status) => showForm(reply, session, { email, errors: { form } }, status));
      case 'busy':
        return answerPasswordUnchecked(pages, request, reply, session.user.id, result, (form, status) => showForm(reply, session, { email, errors: { form } }, status));
      case 'invalid':
        gatehouse.audit.record({ at: now, kind: 'user.email_change_failed', outcome: 'failure', clientId: null, userId: session.user.id, data: { address: request.ip } });
        return showForm(reply, session, { email, errors: { current: 'The current password is not right.' } }, 400);
      case 'taken':
        // Without mail only, as sign-up without mail tells it, and counted against the client
        // address as sign-up counts it: probing addresses costs what probing sign-in does.
        await gatehouse.login.signupRefusedTakenEmail(request.ip, now);
        return showForm(reply, session, { email, errors: { email: 'This email address cannot be used: another account has it.' } }, 400);
      case 'changed':
        return reply.redirect('/account?changed=email', 303);
      case 'sent':
        return renderPage(reply, 'email-change-sent', { title: 'Check your new mailbox', email: result.email, lifetime: lifetimeText(changes.tokenTtlSeconds) });
    }
  });

  const off = (reply: FastifyReply) =>
    renderPage(reply, 'error', { title: 'There is no email change to confirm', message: 'This service changes email addresses without a link.' }, 404);

  /** A link that cannot change anything: used, expired, replaced, or for an account whose address or password changed since. */
  const linkInvalid = async (request: FastifyRequest, reply: FastifyReply) => {
    changeLink.forget(request, reply);
    const session = await currentSession(pages, request);
    return renderPage(reply, 'email-change-invalid', { title: 'This link no longer works', signedIn: session !== undefined }, 400);
  };

  const showConfirm = (reply: FastifyReply, target: { from: string; to: string }, error?: string, status = 200) =>
    renderPage(reply, 'email-change-confirm', { title: 'Confirm your new email address', from: target.from, to: target.to, error }, status);

  /** The link is for an account this browser is not signed in to: sign in to it first; the page says no more of it. */
  const showSignInFirst = (reply: FastifyReply, signedInAs: string | undefined, status: number) =>
    renderPage(reply, 'email-change-sign-in', { title: 'Sign in to confirm your new email address', signedInAs }, status);

  app.get(EMAIL_CHANGE_PATH, async (request, reply) => {
    if (!changes.byLink) return off(reply);
    const now = gatehouse.clock();
    const query = request.query as Record<string, unknown>;
    if (query.token !== undefined) {
      if ((await changes.targetOf(query.token, now)) === undefined) return linkInvalid(request, reply);
      return changeLink.moveIntoCookie(request, reply, query.token as string, changes.tokenTtlSeconds);
    }
    const target = await changes.targetOf(changeLink.read(request), now);
    if (target === undefined) return linkInvalid(request, reply);
    const session = await currentSession(pages, request);
    if (session?.user.id !== target.userId) return showSignInFirst(reply, session?.user.email, 200);
    return showConfirm(reply, target);
  });

  app.post(EMAIL_CHANGE_PATH, async (request, reply) => {
    if (!changes.byLink) return off(reply);
    const now = gatehouse.clock();
    const token = changeLink.read(request);
    const target = await changes.targetOf(token, now);
    if (target === undefined) return linkInvalid(request, reply);
    const session = await currentSession(pages, request);
    if (session?.user.id !== target.userId) return showSignInFirst(reply, session?.user.email, 403);
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showConfirm(reply, target, 'The form expired or did not come from this site, so nothing was changed. Please confirm again.', 403);
    const result = await changes.confirm(token, session.user.id, request.ip, now);
    switch (result.outcome) {
      case 'invalid':
        return linkInvalid(request, reply);
      case 'other_account':
        return showSignInFirst(reply, session.user.email, 403);
      case 'taken':
        // Whoever holds the link reads the new address's mail: telling them it has an account tells them nothing new.
        return showConfirm(reply, target, 'Another account uses this address now, so your address was not changed.', 409);
      case 'changed':
        changeLink.forget(request, reply);
        return reply.redirect('/account?changed=email', 303);
    }
  });
}
