import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import cookie from '@fastify/cookie';
import type { FastifyInstance } from 'fastify';
import { parse as parseForm } from 'fast-querystring';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Metrics } from '../metrics.ts';
import { accountRoutes } from './account.ts';
import { authorizeRoutes } from './authorize.ts';
import { consentRoutes } from './consent.ts';
import { UnreadableRequestError, type Pages } from './context.ts';
import { developerPortalRoutes } from './developers.ts';
import { loginRoutes } from './login.ts';
import { logoutRoutes } from './logout.ts';
import { passwordResetRoutes } from './password-reset.ts';
import { emailVerificationRoutes } from './email-verification.ts';
import { fieldWithLoneSurrogate, fieldWithNul } from '../nul.ts';
import { isWellEncoded } from '../percent-encoding.ts';
import { isUnavailable, unavailableLogMessage } from '../oauth/errors.ts';
import { jsonBodyParser } from '../oauth/json-body.ts';
import { OAuthError } from '../../core/errors.ts';
import { methodNotAllowed, pageMethods } from './methods.ts';
import { publicDir, renderPage } from './render.ts';
import { cookiePolicy, csrfProtection, PAGE_HEADERS } from './security.ts';

const STATIC_FILES: Record<string, string> = {
  'gatehouse.css': 'text/css; charset=utf-8',
  'form-post.js': 'text/javascript; charset=utf-8',
  // Developer portal: "Copy" buttons next to credentials shown once.
  'portal.js': 'text/javascript; charset=utf-8',
  // Linked from every page, so browsers do not ask for /favicon.ico and log its 404 as an error.
  'favicon.svg': 'image/svg+xml',
};

/** The first path segment of the pages below other than the developer portal's, for errors raised before routing. */
export const PAGE_ROOTS: readonly string[] = ['authorize', 'login', 'signup', 'password', 'email', 'consent', 'account', 'logout', 'static'];

/** Whether a path (without its query) is a page's, the developer portal's included: a person's browser asked for it, and an error is answered as a page. */
export const isPagePath = (path: string): boolean => path === '/developers' || path.startsWith('/developers/') || PAGE_ROOTS.includes(path.slice(1).split(/[/%]/, 1)[0]!);

/**
 * Everything a person sees: the authorization endpoint, sign-in, consent, account, sign-out and
 * the developer portal.
 * HTML errors, strict security headers and a CSRF token on every page.
 */
export async function pagesPlugin(app: FastifyInstance, { gatehouse, metrics }: { gatehouse: Gatehouse; metrics: Metrics }): Promise<void> {
  await app.register(cookie);
  // A browser encodes what was typed (a `%` as %25): a malformed escape, which the parser would keep
  // as literal text, never came from a form of ours, and is refused rather than stored as a name or
  // tried as a password. /authorize and /logout say more (encoding.ts), as they also check the query.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    if (isWellEncoded(body as string)) done(null, parseForm(body as string));
    else done(new UnreadableRequestError('The form could not be read: a field is not correctly percent-encoded (UTF-8). Nothing was changed.'));
  });
  // RFC 6749 §3.1: a parameter "MUST NOT be included more than once". A form keeps a repeat, which
  // /authorize and /logout refuse; JSON.parse keeps the last value only, so a JSON body (which they
  // take too) with a repeated member is refused as it is parsed, with the 400 page, never redirected.
  const parseJson = jsonBodyParser(app);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) =>
    parseJson(request, body as string, (error, parsed) => {
      if (error instanceof OAuthError) return done(new UnreadableRequestError(`The request is malformed: ${error.description}.`));
      done(error ?? null, parsed);
    }),
  );

  const cookies = cookiePolicy(gatehouse.config);
  const pages: Pages = { gatehouse, metrics, cookies, csrf: csrfProtection(gatehouse.config, cookies) };

  app.addHook('onRequest', async (request, reply) => {
    reply.headers(PAGE_HEADERS);
    // Static files may be kept by shared caches (public, max-age): a cookie set with them could be
    // handed to every visitor, making everyone's CSRF token one an attacker can fetch too.
    if (!request.url.startsWith('/static/')) pages.csrf.issue(request, reply);
  });

  app.addHook('preValidation', async (request, reply) => {
    if (fieldWithNul(request) !== undefined) {
      return renderPage(reply, 'error', { title: 'Bad request', message: 'The request contains a character that is not allowed (NUL).' }, 400);
    }
    // A JSON body may hold a lone surrogate, which no form can: stored, it would become U+FFFD, and
    // /authorize or /logout would send the application back another `state` than it sent.
    if (fieldWithLoneSurrogate(request) !== undefined) {
      return renderPage(reply, 'error', { title: 'Bad request', message: 'The request contains a character that is not allowed (an unpaired surrogate, which is not text).' }, 400);
    }
  });

  app.setErrorHandler((error, request, reply) => {
    if (error instanceof UnreadableRequestError) return renderPage(reply, 'error', { title: 'This request cannot be completed', message: error.message }, 400);
    const status = (error as { statusCode?: number }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return renderPage(reply, 'error', { title: 'Bad request', message: status === 413 ? 'The form was too large.' : 'The request could not be understood.' }, status === 413 ? 413 : 400);
    }
    if (isUnavailable(error as Error)) {
      request.log.warn({ req: request, reason: (error as Error).message }, unavailableLogMessage(error as Error));
      reply.header('retry-after', '5');
      return renderPage(reply, 'error', { title: 'Back in a moment', message: 'The service is briefly unavailable. Please try again in a few seconds.' }, 503);
    }
    request.log.error({ req: request, err: error }, 'page failed');
    return renderPage(reply, 'error', { title: 'Something went wrong', message: 'The server could not complete the request. Please try again in a moment.' }, 500);
  });
  const methods = pageMethods(app);
  app.setNotFoundHandler((request, reply) => {
    const allowed = methods.allowedAt(request.url.split('?')[0]!);
    if (allowed.length > 0) return methodNotAllowed(reply, allowed);
    return renderPage(reply, 'error', { title: 'Page not found', message: 'There is no page at this address.' }, 404);
  });

  for (const [name, type] of Object.entries(STATIC_FILES)) {
    const content = readFileSync(join(publicDir, name));
    app.get(`/static/${name}`, async (_request, reply) => reply.header('cache-control', 'public, max-age=3600').type(type).send(content));
  }
  app.get('/', async (_request, reply) => reply.redirect('/account', 302));

  await authorizeRoutes(app, pages);
  await loginRoutes(app, pages);
  await passwordResetRoutes(app, pages);
  await emailVerificationRoutes(app, pages);
  await consentRoutes(app, pages);
  await accountRoutes(app, pages);
  await logoutRoutes(app, pages);
  await developerPortalRoutes(app, pages);
}
