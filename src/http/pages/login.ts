import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ValidationError } from '../../core/validation.ts';
import { EmailTakenError } from '../../storage/repositories/users.ts';
import { field, recordThrottled, sendOutcome, signInOrigin, type Pages } from './context.ts';
import { renderPage } from './render.ts';

const PENDING_ID = /^[A-Za-z0-9_-]{32}$/;
// Local pages of the account and the developer portal only: a path without dots, backslashes or
// `//`, so it can never name another origin (no open redirect through the sign-in page); or the
// page of an email verification or email change link, which asks to sign in to the link's account first.
const NEXT_PAGE = /^(?:\/(?:account|developers)(?:\/[A-Za-z0-9_\/-]*)?(?:\?[A-Za-z0-9_=&%-]*)?|\/email\/(?:verify|change))$/;

/** Where a person may be sent after signing in, or undefined when `value` is not a safe local page. */
export function safeNextPage(value: unknown): string | undefined {
  return typeof value === 'string' && value.length <= 512 && NEXT_PAGE.test(value) && !value.includes('//') ? value : undefined;
}

/** The sign-up form's fields that show a message of their own. */
const SIGNUP_FIELDS: readonly string[] = ['name', 'email', 'password'];
type SignupErrors = Partial<Record<'name' | 'email' | 'password' | 'form', string>>;

const tooManyAttempts = (seconds: number): string => `Too many attempts. Try again in ${Math.ceil(seconds / 60)} minute(s).`;
const tooManyAccounts = (seconds: number): string => `Too many accounts were created from your network. Try again in ${Math.ceil(seconds / 60)} minute(s).`;

/** The query that carries a waiting request, or else the next page, from sign-in to sign-up and back. */
const carried = (pendingId: string | undefined, next: string | undefined): string =>
  pendingId ? `?request=${encodeURIComponent(pendingId)}` : next ? `?next=${encodeURIComponent(next)}` : '';

/** Sign-in and sign-up. After either, a waiting authorization request continues where it left off. */
export async function loginRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;

  const pendingFrom = (value: unknown): string | undefined => (typeof value === 'string' && PENDING_ID.test(value) ? value : undefined);

  const showLogin = async (reply: FastifyReply, pendingId: string | undefined, next: string | undefined, data: { email?: string; error?: string; notice?: string }, status = 200) => {
    // The page of a request names its application and carries its login_hint (an email address):
    // a browser that did not begin the request, knowing only its id, is shown neither, nor is anyone
    // once the request no longer waits (an expired one stays stored until the next sweep).
    const shown = pendingId === undefined ? undefined : await gatehouse.authorizationEndpoint.signInPage(pendingId, reply.request.browser);
    if (shown !== undefined && shown.kind !== 'login') return sendOutcome(pages, reply, shown, false);
    const waiting = shown?.pendingId;
    // A request that no longer waits (expired, answered, never known: all read alike) is said to be
    // over, or the person would sign in and land on their account page with no word why.
    const over = pendingId !== undefined && shown === undefined ? 'This sign-in request has expired or was already answered. Go back to the application and start again, or sign in here to go to your account.' : undefined;
    return renderPage(
      reply,
      'login',
      {
        title: 'Sign in',
        pendingId: waiting,
        next: waiting ? undefined : next,
        carry: carried(waiting, next),
        clientName: shown?.client.name,
        email: data.email ?? shown?.loginHint ?? '',
        error: data.error,
        notice: data.notice ?? over,
        signup: gatehouse.config.signup.enabled,
        forgot: gatehouse.passwordResets.enabled,
      },
      status,
    );
  };

  /**
   * A sign-in or sign-up for a waiting authorization request that another browser began is refused
   * before anything is stored: no session, no account (AuthorizationEndpoint.refusedToBrowser).
   */
  const refusedHere = async (request: FastifyRequest, pendingId: string | undefined) =>
    pendingId === undefined ? undefined : gatehouse.authorizationEndpoint.refusedToBrowser(pendingId, request.browser);

  /**
   * Signs the person in under a new session cookie (SessionService.signIn); undefined, with no
   * cookie set, when their account was deleted or disabled since it was read (an operator, another
   * instance).
   */
  const startSession = async (request: FastifyRequest, reply: FastifyReply, userId: string): Promise<string | undefined> => {
    const names = pages.cookies.names(request);
    const cookie = await gatehouse.sessions.signIn(userId, request.cookies[names.session], gatehouse.clock(), signInOrigin(request));
    if (cookie !== undefined) reply.setCookie(names.session, cookie, pages.cookies.options(request, gatehouse.sessions.ttlSeconds));
    return cookie;
  };

  /** After startSession: continues the waiting request, or goes to the next page. */
  const signedIn = async (request: FastifyRequest, reply: FastifyReply, cookie: string, pendingId: string | undefined, next: string | undefined) => {
    const session = await gatehouse.sessions.resolve(cookie, gatehouse.clock());
    if (pendingId && session) return sendOutcome(pages, reply, await gatehouse.authorizationEndpoint.continueAfterLogin(pendingId, session, request.ip, request.browser), true);
    return reply.redirect(next ?? '/account', 303);
  };

  app.get('/login', async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const withdrawn = query.applications === 'withdrawn' ? ' Applications that had access to your account can no longer renew it: authorize again those you use.' : '';
    const suspended =
      query.developer === 'suspended'
        ? ' Applications registered under your account lost their client secrets, public keys and API keys, and the access people had given them: review them in the developer portal and add new ones.'
        : '';
    const notice = query.reset === 'done' ? `Your password was changed, and every browser signed in to your account was signed out.${withdrawn}${suspended} Sign in with your new password.` : undefined;
    return showLogin(reply, pendingFrom(query.request), safeNextPage(query.next), { notice });
  });

  app.post('/login', async (request, reply) => {
    const pendingId = pendingFrom(field(request.body, 'request'));
    const next = safeNextPage(field(request.body, 'next'));
    const email = field(request.body, 'email')?.trim() ?? '';
    const password = field(request.body, 'password') ?? '';
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return showLogin(reply, pendingId, next, { email, error: 'Your session expired while the page was open. Please try again.' }, 403);
    }
    if (!email || !password) return showLogin(reply, pendingId, next, { email, error: 'Enter your email and password.' }, 400);
    const foreign = await refusedHere(request, pendingId);
    if (foreign) return sendOutcome(pages, reply, foreign, true);
    const result = await gatehouse.login.login(email, password, request.ip, gatehouse.clock());
    if (result.outcome === 'throttled') {
      recordThrottled(pages, request, 'login.throttled', { data: { via: 'page', limit: result.limit } });
      reply.header('retry-after', String(result.retryAfterSeconds));
      return showLogin(reply, pendingId, next, { email, error: tooManyAttempts(result.retryAfterSeconds) }, 429);
    }
    if (result.outcome === 'busy') {
      reply.header('retry-after', '1');
      return showLogin(reply, pendingId, next, { email, error: 'Your sign-in could not be checked right now. Please try again in a moment.' }, 503);
    }
    // An account deleted while its password was checked is answered as an unknown email is.
    const cookie = result.outcome === 'success' ? await startSession(request, reply, result.user.id) : undefined;
    if (result.outcome !== 'success' || cookie === undefined) {
      const userId = result.outcome === 'success' ? result.user.id : result.userId;
      gatehouse.audit.record({ at: gatehouse.clock(), kind: 'login.failed', outcome: 'failure', clientId: null, userId, data: { via: 'page', address: request.ip } });
      return showLogin(reply, pendingId, next, { email, error: 'The email or password is not right.' }, 401);
    }
    gatehouse.audit.record({ at: gatehouse.clock(), kind: 'login.succeeded', outcome: 'success', clientId: null, userId: result.user.id, data: { address: request.ip } });
    return signedIn(request, reply, cookie, pendingId, next);
  });

  /** `errors`: a message next to the field it is about (name, email, password), or above the form (form). */
  const showSignup = (reply: FastifyReply, pendingId: string | undefined, next: string | undefined, data: { email?: string; name?: string; errors?: SignupErrors }, status = 200) =>
    renderPage(
      reply,
      'signup',
      { title: 'Create your account', pendingId, next: pendingId ? undefined : next, carry: carried(pendingId, next), email: data.email ?? '', name: data.name ?? '', errors: data.errors ?? {} },
      status,
    );

  app.get('/signup', async (request, reply) => {
    if (!gatehouse.config.signup.enabled) return renderPage(reply, 'error', { title: 'Sign-up is closed', message: 'New accounts are created by the operators of this service.' }, 404);
    const query = request.query as Record<string, unknown>;
    return showSignup(reply, pendingFrom(query.request), safeNextPage(query.next), {});
  });

  app.post('/signup', async (request, reply) => {
    if (!gatehouse.config.signup.enabled) return renderPage(reply, 'error', { title: 'Sign-up is closed', message: 'New accounts are created by the operators of this service.' }, 404);
    const pendingId = pendingFrom(field(request.body, 'request'));
    const next = safeNextPage(field(request.body, 'next'));
    const email = field(request.body, 'email')?.trim() ?? '';
    const name = field(request.body, 'name')?.trim() ?? '';
    const password = field(request.body, 'password') ?? '';
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return showSignup(reply, pendingId, next, { email, name, errors: { form: 'Your session expired while the page was open. Please try again.' } }, 403);
    }
    if (name.length > 200) return showSignup(reply, pendingId, next, { email, name, errors: { name: 'The name is longer than 200 characters.' } }, 400);
    const foreign = await refusedHere(request, pendingId);
    if (foreign) return sendOutcome(pages, reply, foreign, true);
    const wait = await gatehouse.login.signupBlockedFor(request.ip, gatehouse.clock());
    if (wait > 0) {
      // The address's failed sign-ins (and emails found taken) spent its budget: see signupBlockedFor.
      recordThrottled(pages, request, 'signup.throttled', { data: { limit: 'address' } });
      reply.header('retry-after', String(wait));
      return showSignup(reply, pendingId, next, { email, name, errors: { form: tooManyAttempts(wait) } }, 429);
    }
    try {
      const result = await gatehouse.signups.signUp({ email, password, name }, request.ip, gatehouse.clock());
      if (result.outcome === 'throttled') {
        recordThrottled(pages, request, 'signup.throttled', { data: { limit: 'accounts' } });
        reply.header('retry-after', String(result.retryAfterSeconds));
        return showSignup(reply, pendingId, next, { email, name, errors: { form: tooManyAccounts(result.retryAfterSeconds) } }, 429);
      }
      const { user } = result;
      gatehouse.audit.record({ at: gatehouse.clock(), kind: 'user.signed_up', outcome: 'success', clientId: null, userId: user.id, data: { address: request.ip } });
      const cookie = await startSession(request, reply, user.id);
      // Deleted as soon as it was made (an operator): there is no account to sign in to.
      if (cookie === undefined) return showSignup(reply, pendingId, next, { email, name, errors: { form: 'The account was deleted as it was created. Please try again.' } }, 409);
      return signedIn(request, reply, cookie, pendingId, next);
    } catch (error) {
      if (error instanceof ValidationError) {
        const message = error.message.charAt(0).toUpperCase() + error.message.slice(1) + '.';
        return showSignup(reply, pendingId, next, { email, name, errors: { [SIGNUP_FIELDS.includes(error.field) ? error.field : 'form']: message } }, 400);
      }
      if (error instanceof EmailTakenError) {
        await gatehouse.login.signupRefusedTakenEmail(request.ip, gatehouse.clock());
        return showSignup(reply, pendingId, next, { email, name, errors: { email: 'This email cannot be used to create an account. If it is yours, sign in instead.' } }, 400);
      }
      throw error;
    }
  });

}
