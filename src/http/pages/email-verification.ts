import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { currentSession, field, recordThrottled, type Pages } from './context.ts';
import { linkCookie } from './link-cookie.ts';
import { renderPage } from './render.ts';

/**
 * Email verification: the page its mail links to (`/email/verify`, signed in or not) and the account
 * page's "send the link again" (`POST /email/resend`). Without mail, or with signup.verifyEmail off,
 * they answer a 404 page and the account page says nothing of it.
 * The link's token leaves the address at once, for a cookie (linkCookie). Following the link changes
 * nothing: mail scanners and link previews fetch the links in a mail, so the page asks the person to
 * confirm, and only that form's POST (with its CSRF token) spends the link.
 * Only a browser signed in to the link's account is asked to confirm, and only its POST verifies:
 * someone may have signed up with another person's address, and that person, following the link,
 * would otherwise verify an account whose password someone else holds. A browser signed out, or
 * signed in to another account, is asked to sign in to the account first (coming back to the link,
 * whose token stays in its cookie) and is offered the password reset that takes an account back.
 */
export async function emailVerificationRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;
  const verifications = gatehouse.emailVerifications;
  const verifyLink = linkCookie(pages, 'gatehouse_verify', '/email/verify');

  const off = (reply: FastifyReply) =>
    renderPage(reply, 'error', { title: 'Email verification is not available', message: 'This service does not send email verification links.' }, 404);

  /** A link that cannot verify: signed in, the page says what the address is now, and offers a new link while it is unverified. */
  const linkInvalid = async (request: FastifyRequest, reply: FastifyReply) => {
    verifyLink.forget(request, reply);
    const session = await currentSession(pages, request);
    const user = session && { email: session.user.email, verified: session.user.emailVerified };
    return renderPage(reply, 'email-link-invalid', { title: 'This link no longer works', user }, 400);
  };

  const showConfirm = (reply: FastifyReply, email: string, error?: string, status = 200) => renderPage(reply, 'email-verify', { title: 'Confirm your email address', email, error }, status);

  /** The link is for an account this browser is not signed in to: sign in to it first, or take it back with a reset. */
  const showSignInFirst = (reply: FastifyReply, email: string, signedInAs: string | undefined, status: number) =>
    renderPage(reply, 'email-verify-sign-in', { title: 'Sign in to confirm your email address', email, signedInAs }, status);

  app.get('/email/verify', async (request, reply) => {
    if (!verifications.enabled) return off(reply);
    const now = gatehouse.clock();
    const query = request.query as Record<string, unknown>;
    if (query.token !== undefined) {
      if (!(await verifications.isLive(query.token, now))) return linkInvalid(request, reply);
      return verifyLink.moveIntoCookie(request, reply, query.token as string, verifications.tokenTtlSeconds);
    }
    const target = await verifications.targetOf(verifyLink.read(request), now);
    if (target === undefined) return linkInvalid(request, reply);
    const session = await currentSession(pages, request);
    if (session?.user.id !== target.userId) return showSignInFirst(reply, target.email, session?.user.email, 200);
    return showConfirm(reply, target.email);
  });

  app.post('/email/verify', async (request, reply) => {
    if (!verifications.enabled) return off(reply);
    const now = gatehouse.clock();
    const token = verifyLink.read(request);
    const target = await verifications.targetOf(token, now);
    if (target === undefined) return linkInvalid(request, reply);
    const session = await currentSession(pages, request);
    if (session?.user.id !== target.userId) return showSignInFirst(reply, target.email, session?.user.email, 403);
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showConfirm(reply, target.email, 'The form expired or did not come from this site, so nothing was verified. Please confirm again.', 403);
    const result = await verifications.verify(token, session.user.id, now);
    if (result.outcome === 'invalid') return linkInvalid(request, reply);
    if (result.outcome === 'other_account') return showSignInFirst(reply, target.email, session.user.email, 403);
    verifyLink.forget(request, reply);
    return renderPage(reply, 'email-verified', { title: 'Your email address is verified', email: result.email });
  });

  app.post('/email/resend', async (request, reply) => {
    if (!verifications.enabled) return off(reply);
    const session = await currentSession(pages, request);
    if (!session) return reply.redirect('/login', 303);
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return renderPage(reply, 'error', { title: 'Please try again', message: 'The form expired or did not come from this site, so nothing was sent.' }, 403);
    }
    const result = await verifications.resend(session.user, request.ip, gatehouse.clock());
    if (result.outcome === 'throttled') {
      recordThrottled(pages, request, 'email_verification.throttled', { userId: session.user.id });
      reply.header('retry-after', String(result.retryAfterSeconds));
      return renderPage(
        reply,
        'error',
        { title: 'Too many links', message: `Too many links were asked for. Try again in ${Math.ceil(result.retryAfterSeconds / 60)} minute(s); the newest link we sent still works until it expires.` },
        429,
      );
    }
    return reply.redirect(result.outcome === 'sent' ? '/account?sent=verification' : '/account', 303);
  });
}
