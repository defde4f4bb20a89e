import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ValidationError } from '../../core/validation.ts';
import { MAX_EMAIL_LENGTH } from '../../storage/repositories/users.ts';
import { field, recordThrottled, type Pages } from './context.ts';
import { linkCookie } from './link-cookie.ts';
import { renderPage } from './render.ts';

type ResetErrors = Partial<Record<'new' | 'confirm' | 'form', string>>;

const EXPIRED = 'Your session expired while the page was open. Please try again.';
const sentence = (message: string): string => message.charAt(0).toUpperCase() + message.slice(1) + '.';
const isPlausibleEmail = (email: string): boolean => email.includes('@') && email.length <= MAX_EMAIL_LENGTH;
/** How long the "Check your email" page names the address typed, reloaded. */
const SENT_COOKIE_SECONDS = 600;

/**
 * "Forgot your password?" (`/password/forgot`, answered by `/password/sent`) and the page its mail
 * links to (`/password/reset`).
 * Without mail settings, both answer a 404 page and the sign-in page has no link to them.
 * The link's token leaves the address at once, for a cookie (linkCookie).
 */
export async function passwordResetRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;
  const resets = gatehouse.passwordResets;

  const off = (reply: FastifyReply) =>
    renderPage(reply, 'error', { title: 'Password reset is not available', message: 'This service does not send password reset links by email. Ask its operators to reset your password.' }, 404);

  const resetLink = linkCookie(pages, 'gatehouse_reset', '/password/reset');
  const sentCookieName = (request: FastifyRequest) => (pages.cookies.names(request).session.startsWith('__Host-') ? '__Host-gatehouse_reset_sent' : 'gatehouse_reset_sent');
  const linkInvalid = (request: FastifyRequest, reply: FastifyReply) => {
    resetLink.forget(request, reply);
    return renderPage(reply, 'password-link-invalid', { title: 'This link no longer works' }, 400);
  };

  const showForgot = (reply: FastifyReply, data: { email?: string; error?: string }, status = 200) =>
    renderPage(reply, 'password-forgot', { title: 'Forgot your password?', email: data.email ?? '', error: data.error }, status);

  app.get('/password/forgot', async (_request, reply) => (resets.enabled ? showForgot(reply, {}) : off(reply)));

  app.post('/password/forgot', async (request, reply) => {
    if (!resets.enabled) return off(reply);
    const email = field(request.body, 'email')?.trim() ?? '';
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showForgot(reply, { email, error: EXPIRED }, 403);
    if (!isPlausibleEmail(email)) return showForgot(reply, { email, error: 'Enter the email address of your account.' }, 400);
    const result = await resets.request(email, request.ip, gatehouse.clock());
    if (result.outcome === 'throttled') {
      recordThrottled(pages, request, 'password_reset.throttled');
      reply.header('retry-after', String(result.retryAfterSeconds));
      return showForgot(reply, { email, error: `Too many links were asked for. Try again in ${Math.ceil(result.retryAfterSeconds / 60)} minute(s).` }, 429);
    }
    // Post/Redirect/Get: reloading the page that follows must not ask for another link. The address
    // it names goes in a short-lived cookie, not the URL, which reaches the history and the logs.
    // DESIGN §5: the same answer whether or not the address has an account, or a disabled one.
    reply.setCookie(sentCookieName(request), email, pages.cookies.options(request, SENT_COOKIE_SECONDS));
    return reply.redirect('/password/sent', 303);
  });

  app.get('/password/sent', async (request, reply) => {
    if (!resets.enabled) return off(reply);
    const typed = request.cookies[sentCookieName(request)];
    const email = typed !== undefined && isPlausibleEmail(typed) ? typed : undefined;
    return renderPage(reply, 'password-sent', { title: 'Check your email', email, minutes: Math.round(resets.tokenTtlSeconds / 60) });
  });

  /**
   * `account`: the address the form names for password managers, and what it says will become of
   * the applications the account authorized (PasswordResetService.linkAccount).
   */
  const showReset = (reply: FastifyReply, account: { email: string; keepsGrants: boolean }, errors: ResetErrors = {}, status = 200) =>
    renderPage(reply, 'password-reset', { title: 'Choose a new password', ...account, errors }, status);

  app.get('/password/reset', async (request, reply) => {
    if (!resets.enabled) return off(reply);
    const now = gatehouse.clock();
    const query = request.query as Record<string, unknown>;
    if (query.token !== undefined) {
      if (!(await resets.isLive(query.token, now))) return linkInvalid(request, reply);
      return resetLink.moveIntoCookie(request, reply, query.token as string, resets.tokenTtlSeconds);
    }
    const account = await resets.linkAccount(resetLink.read(request), now);
    if (account === undefined) return linkInvalid(request, reply);
    return showReset(reply, account);
  });

  app.post('/password/reset', async (request, reply) => {
    if (!resets.enabled) return off(reply);
    const now = gatehouse.clock();
    const token = resetLink.read(request);
    const account = await resets.linkAccount(token, now);
    if (account === undefined) return linkInvalid(request, reply);
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showReset(reply, account, { form: EXPIRED }, 403);
    const next = field(request.body, 'new_password') ?? '';
    const confirmation = field(request.body, 'confirm_password') ?? '';
    let result;
    try {
      if (confirmation !== next) {
        // The new password's own faults first: they are what the person has to fix.
        resets.checkPassword(next);
        return showReset(reply, account, { confirm: 'The new password and its confirmation are not the same.' }, 400);
      }
      result = await resets.reset(token, next, now);
    } catch (error) {
      if (error instanceof ValidationError) return showReset(reply, account, { new: sentence(error.message) }, 400);
      throw error;
    }
    if (result.outcome === 'invalid') return linkInvalid(request, reply);
    resetLink.forget(request, reply);
    gatehouse.audit.record({
      at: now,
      kind: 'user.password_reset',
      outcome: 'success',
      clientId: null,
      userId: result.userId,
      data: {
        by: 'email',
        sessions_ended: result.sessionsEnded,
        grants_revoked: result.grantsRevoked,
        ...(result.applicationsSuspended > 0 && { applications_suspended: result.applicationsSuspended }),
        address: request.ip,
      },
    });
    // The person is told when applications lost their access (those they use ask them again), and
    // when those registered under the account lost their credentials.
    const withdrawn = result.grantsRevoked > 0 ? '&applications=withdrawn' : '';
    const suspended = result.applicationsSuspended > 0 ? '&developer=suspended' : '';
    return reply.redirect(`/login?reset=done${withdrawn}${suspended}`, 303);
  });
}
