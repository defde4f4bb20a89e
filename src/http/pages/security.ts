import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { GatehouseConfig } from '../../core/config.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The CSRF token forms on this page carry (signed double-submit: HMAC of the CSRF cookie and the session cookie). */
    csrfToken?: string;
    /**
     * This browser's CSRF cookie, set by this answer if the browser had none: it also tells the
     * browser that began an authorization request from any other (AuthorizationEndpoint).
     * Undefined for a POST from another site's page that came without it (see csrfProtection's issue).
     */
    browser?: string;
  }
}

/**
 * A strict Content-Security-Policy: no inline script or style, nothing from elsewhere, never
 * framed (clickjacking), no Referer that could carry a code or token off the page.
 */
export const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

export interface CookieNames {
  session: string;
  csrf: string;
}

/** Cookie names and attributes: `__Host-` and `Secure` whenever the browser talks HTTPS. */
export function cookiePolicy(config: GatehouseConfig) {
  const issuerIsHttps = config.issuer.startsWith('https://');
  const secure = (request: FastifyRequest): boolean => issuerIsHttps || (config.trustProxy !== false && request.protocol === 'https');
  return {
    names(request: FastifyRequest): CookieNames {
      return secure(request) ? { session: '__Host-gatehouse_session', csrf: '__Host-gatehouse_csrf' } : { session: 'gatehouse_session', csrf: 'gatehouse_csrf' };
    },
    options(request: FastifyRequest, maxAgeSeconds?: number) {
      return { path: '/', httpOnly: true, sameSite: 'lax' as const, secure: secure(request), ...(maxAgeSeconds !== undefined ? { maxAge: maxAgeSeconds } : {}) };
    },
  };
}

export type CookiePolicy = ReturnType<typeof cookiePolicy>;

/**
 * Form tokens are bound to the session as well as to the browser's CSRF cookie: a form shown to
 * one person stops working once someone else signs in in that browser (another tab), or the person
 * signs out, so a consent page that said "Signed in as ada@…" can never grant Grace's account.
 * Signing in or out changes the token, as OWASP's CSRF cheat sheet asks of session-bound tokens.
 */
export function csrfProtection(config: GatehouseConfig, cookies: CookiePolicy) {
  // Forms are signed under the master secret; those shown before it changed, under a previous
  // secret, still verify, so that the change interrupts nobody filling in a form.
  const keys = [config.secret, ...config.previousSecrets].map((secret) => Buffer.from(hkdfSync('sha256', secret, 'gatehouse', 'csrf', 32)));
  const sign = (request: FastifyRequest, value: string, key = keys[0]!) =>
    createHmac('sha256', key)
      .update(value)
      .update('\0')
      .update(request.cookies[cookies.names(request).session] ?? '')
      .digest('base64url');
  return {
    /**
     * Makes sure the browser has a CSRF cookie and sets `request.csrfToken` for the forms; except
     * (unless `always`) for a POST from another site's page, which leaves both unset. Such a
     * top-level POST comes without the browser's SameSite=Lax cookies, so the browser may well have
     * a CSRF cookie already, and a new one would replace it: every form open in its other tabs would
     * go stale, and every authorization request it began would be taken for another browser's
     * (AuthorizationEndpoint) — a sign-in in one tab broken by an application's sign-out posted in
     * another, or by any page that posts to Gatehouse. Browsers say where a request comes from
     * (Sec-Fetch-Site); one that does not is given a cookie as before.
     */
    issue(request: FastifyRequest, reply: FastifyReply, always = false): void {
      const name = cookies.names(request).csrf;
      let value = request.cookies[name];
      if (!value || !/^[A-Za-z0-9_-]{43}$/.test(value)) {
        if (!always && request.method === 'POST' && request.headers['sec-fetch-site'] === 'cross-site') return;
        value = randomBytes(32).toString('base64url');
        reply.setCookie(name, value, cookies.options(request));
      }
      request.browser = value;
      request.csrfToken = sign(request, value);
    },
    /** True when the form's token is the HMAC of this browser's CSRF cookie and the session it has now, under the master secret or a previous one. */
    verify(request: FastifyRequest, token: unknown): boolean {
      const value = request.cookies[cookies.names(request).csrf];
      if (!value || typeof token !== 'string') return false;
      const given = Buffer.from(token);
      return keys.some((key) => {
        const expected = Buffer.from(sign(request, value, key));
        return expected.length === given.length && timingSafeEqual(expected, given);
      });
    },
  };
}

export type CsrfProtection = ReturnType<typeof csrfProtection>;
