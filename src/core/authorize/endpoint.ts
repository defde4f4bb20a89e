import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Client } from '../../storage/repositories/clients.ts';
import type { Consent } from '../../storage/repositories/consents.ts';
import type { ActiveSession } from '../sessions.ts';
import { clientNetwork } from '../addresses.ts';
import { consentRequired, loginRequired } from '../errors.ts';
import type { GrantServices } from '../grants/services.ts';
import type { RequestLimiter } from '../rate-limit/requests.ts';
import type { IdTokenIssuer } from '../tokens/id-token.ts';
import { createOpaqueToken, digestOf } from '../tokens/opaque.ts';
import { accessTokenTtl } from '../tokens/refresh.ts';
import { authorizationResponse, type AuthorizationResponse } from './respond.ts';
import { AuthorizationPageError, AuthorizationRedirectError, recheckWaitingRequest, validateAuthorizationRequest, type AuthorizationRequest } from './request.ts';

/** What the browser should see next. */
export type AuthorizationOutcome =
  | AuthorizationResponse
  | { kind: 'login'; pendingId: string; client: Client; loginHint: string | undefined }
  /** `redirectUri`: where the person's browser goes, whether they allow or deny. */
  | { kind: 'consent'; pendingId: string; client: Client; scopes: { name: string; description: string }[]; redirectUri: string }
  | { kind: 'error_page'; message: string }
  /** The client address made too many requests that would wait for a person: nothing was stored. */
  | { kind: 'throttled'; retryAfterSeconds: number };

export interface AuthorizationServices extends GrantServices {
  idTokens: IdTokenIssuer;
}

// A person gets this long to sign in and decide before the request must be started again.
const PENDING_TTL_SECONDS = 30 * 60;

/** A request waiting for the person, as stored. */
interface PendingRequest {
  request: AuthorizationRequest;
  client: Client;
  /**
   * The session that was not good enough when the request arrived (`prompt=login` or
   * `select_account`, or older than `max_age`): only a new sign-in may go on to consent, never that
   * session going straight to the consent page.
   */
  staleSession: string | undefined;
  /**
   * When the request demanded a sign-in (`prompt=login` or `select_account`, `max_age`): the
   * instant it arrived. Only a session that signed in at or after it may decide the request,
   * whatever session (or none) the request came with — one that arrived without the cookie must not
   * be answered by an old session.
   */
  signInSince: number | undefined;
  /**
   * The digest of the browser that began the request (its CSRF cookie): only that browser may sign
   * in for it and decide it. Whoever learns a request's id (a URL in a shared browser's history, a
   * proxy's access log) could otherwise answer it with their own account, and the code, carrying the
   * victim's state and PKCE challenge, would sign the victim in to the client as them. Undefined for
   * a request stored by an earlier version.
   */
  browser: string | undefined;
}

/**
 * Where a request being decided comes from: a new one from a client address and browser (the value
 * of its CSRF cookie), or one that waited (with the digest of the browser that began it).
 */
type Origin = { address: string; browser: string } | { pendingId: string; browserDigest: string | undefined; address: string };

/** Over the budget of requests an address may leave waiting: answered without storing anything. */
class PendingBudgetSpent extends Error {
  override name = 'PendingBudgetSpent';
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('too many authorization requests waiting for a person from this address');
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * The authorization endpoint (RFC 6749 §4.1, §4.2; OpenID Connect Core §3): validates the
 * request, sends the person through sign-in and consent as needed, and answers the client.
 * Requests waiting for the person are stored, so any instance can continue them.
 */
export class AuthorizationEndpoint {
  #services: AuthorizationServices;
  #pendingPerAddress: RequestLimiter;

  /**
   * `pendingPerAddress`: how many requests each client address may leave waiting per window.
   * Anybody may start one without signing in, and each is a row kept for half an hour: without a
   * budget, one address could fill the database faster than expired rows are swept.
   */
  constructor(services: AuthorizationServices, limits: { pendingPerAddress: RequestLimiter }) {
    this.#services = services;
    this.#pendingPerAddress = limits.pendingPerAddress;
  }

  /** A new request, from the browser at `address` whose CSRF cookie is `browser`. */
  async begin(params: Readonly<Record<string, unknown>>, session: ActiveSession | undefined, address: string, browser: string): Promise<AuthorizationOutcome> {
    const { scopes, config } = this.#services;
    try {
      const { request, client } = await validateAuthorizationRequest({
        params,
        findClient: async (id) => (await this.#services.clients.get(id))?.client,
        scopes,
        allowPlainPkce: config.pkce.allowPlain,
        implicitEnabled: config.implicit.enabled,
        readIdTokenHint: (hint) => this.#services.idTokens.readHint(hint),
      });
      return await this.#decide(request, client, session, { address, browser });
    } catch (error) {
      return this.#fail(error);
    }
  }

  /** The person signed in (or was already) while the request waited, in the browser at `address`. */
  async continueAfterLogin(pendingId: string, session: ActiveSession, address: string, browser: string | undefined): Promise<AuthorizationOutcome> {
    const pending = await this.#waitingFor(pendingId, browser);
    if ('kind' in pending) return pending;
    try {
      return await this.#decide(pending.request, pending.client, session, { pendingId, browserDigest: pending.browser, address });
    } catch (error) {
      return this.#fail(error);
    }
  }

  /**
   * The error page for a waiting request that another browser began (see PendingRequest.browser),
   * or undefined: asked before a sign-in or sign-up for the request changes anything.
   */
  async refusedToBrowser(pendingId: string, browser: string | undefined): Promise<AuthorizationOutcome | undefined> {
    const pending = await this.#pending(pendingId);
    return pending && !fromBrowser(pending, browser) ? otherBrowser() : undefined;
  }

  /**
   * What the sign-in page shows of a waiting request — its application and login_hint — to the
   * browser that began it: the login outcome; the error page to another browser; undefined when
   * the request is not waiting (unknown, answered or expired, swept or not), and the page names nothing.
   */
  async signInPage(pendingId: string, browser: string | undefined): Promise<AuthorizationOutcome | undefined> {
    const pending = await this.#pending(pendingId);
    if (!pending) return undefined;
    if (!fromBrowser(pending, browser)) return otherBrowser();
    return { kind: 'login', pendingId, client: pending.client, loginHint: pending.request.loginHint };
  }

  /** What the consent page shows for a waiting request, or why it cannot. */
  async pendingConsent(pendingId: string, session: ActiveSession | undefined, browser: string | undefined): Promise<AuthorizationOutcome> {
    const pending = await this.#waitingFor(pendingId, browser);
    if ('kind' in pending) return pending;
    if (!session || this.#mustSignIn(pending, session)) return { kind: 'login', pendingId, client: pending.client, loginHint: pending.request.loginHint };
    return this.#consentPage(pendingId, pending.client, pending.request);
  }

  /** Allow or Deny on the consent page, from the browser at `address`. */
  async answerConsent(pendingId: string, session: ActiveSession, allow: boolean, address: string, browser: string | undefined): Promise<AuthorizationOutcome> {
    const pending = await this.#waitingFor(pendingId, browser);
    if ('kind' in pending) return pending;
    const { request, client } = pending;
    // OpenID Connect Core §3.1.2.1: prompt=login and max_age "MUST actively re-authenticate" — the
    // consent form is no way around the sign-in the request asked for.
    if (this.#mustSignIn(pending, session)) return { kind: 'login', pendingId, client, loginHint: request.loginHint };
    const target = { redirectUri: request.redirectUri, responseMode: request.responseMode, state: request.state };
    if (!(await this.#services.storage.pendingAuthorizations.take(pendingId))) return expired();
    const now = this.#services.clock();
    if (!allow) {
      this.#services.audit.record({ at: now, kind: 'consent.denied', outcome: 'failure', clientId: client.id, userId: session.user.id, data: { scopes: request.scopes, address } });
      // §4.1.2.1: "The resource owner or authorization server denied the request."
      return authorizationResponse(target, this.#services.config.issuer, { error: 'access_denied', error_description: 'the user denied the request' });
    }
    const previous = await this.#services.storage.consents.find(session.user.id, client.id);
    await this.#services.storage.consents.save({
      userId: session.user.id,
      clientId: client.id,
      scopes: [...new Set([...(previous?.scopes ?? []), ...request.scopes])],
      createdAt: previous?.createdAt ?? now,
      updatedAt: now,
    });
    this.#services.audit.record({ at: now, kind: 'consent.granted', outcome: 'success', clientId: client.id, userId: session.user.id, data: { scopes: request.scopes, address } });
    return this.#issue(request, client, session, { pendingId, browserDigest: pending.browser, address });
  }

  async #decide(request: AuthorizationRequest, client: Client, session: ActiveSession | undefined, origin: Origin): Promise<AuthorizationOutcome> {
    const now = this.#services.clock();
    const pendingId = 'pendingId' in origin ? origin.pendingId : undefined;
    // A request that waited is decided right after the person signed in for it.
    const justSignedIn = pendingId !== undefined;
    const target = { redirectUri: request.redirectUri, responseMode: request.responseMode, state: request.state };
    // A sign-in made for this very request satisfies max_age: judged again here, a second boundary
    // between the sign-in and this line would send the person back to sign in with max_age=0.
    const tooOld = session !== undefined && !justSignedIn && isTooOld(request, session, now);
    const notHinted = session !== undefined && !isHinted(request, session.user.id);
    if (notHinted && justSignedIn) {
      // OpenID Connect Core §3.1.2.1: unless the user the ID token names "is logged in or is logged
      // in by the request", the server "SHOULD return an error, such as login_required".
      if (pendingId) await this.#services.storage.pendingAuthorizations.take(pendingId);
      throw new AuthorizationRedirectError(loginRequired('the user who signed in is not the one the request names (id_token_hint, or the sub of claims)'), target);
    }
    // OpenID Connect Core §3.1.2.1, select_account: the server "SHOULD prompt the End-User to select
    // a user account", and without their choice "MUST return an error". Gatehouse keeps one account
    // a browser, so the sign-in page is where the person chooses it, as for prompt=login.
    const signInPrompted = request.prompt.includes('login') || request.prompt.includes('select_account');
    const mustSignIn = !session || tooOld || notHinted || (signInPrompted && !justSignedIn);
    if (mustSignIn) {
      // OpenID Connect Core §3.1.2.6
      if (request.prompt.includes('none')) {
        throw new AuthorizationRedirectError(loginRequired(notHinted ? 'the signed-in user is not the one the request names (id_token_hint, or the sub of claims)' : 'the user is not signed in'), target);
      }
      const signInDemanded = signInPrompted || request.maxAge !== undefined;
      const id = pendingId ?? (await this.#save(request, now, origin, { staleSession: session?.session.digest, signInSince: signInDemanded ? now : undefined }));
      return { kind: 'login', pendingId: id, client, loginHint: request.loginHint };
    }

    const consent = await this.#services.storage.consents.find(session.user.id, client.id);
    if (!client.firstParty && (request.prompt.includes('consent') || !covers(consent, request.scopes))) {
      if (request.prompt.includes('none')) throw new AuthorizationRedirectError(consentRequired('the user has not authorized this application'), target);
      const id = pendingId ?? (await this.#save(request, now, origin));
      return this.#consentPage(id, client, request);
    }
    if (pendingId && !(await this.#services.storage.pendingAuthorizations.take(pendingId))) return expired();
    return this.#issue(request, client, session, origin);
  }

  #consentPage(pendingId: string, client: Client, request: AuthorizationRequest): AuthorizationOutcome {
    const scopes = request.scopes.map((name) => ({ name, description: this.#services.scopes.definition(name)?.description ?? name }));
    return { kind: 'consent', pendingId, client, scopes, redirectUri: request.redirectUri };
  }

  /**
   * Answers the client: a code (§4.1.2), or tokens in the fragment (§4.2.2, OpenID Connect §3.2.2.5);
   * or, when the session has ended since it was read, what a request without it gets.
   */
  async #issue(request: AuthorizationRequest, client: Client, active: ActiveSession, origin: Origin): Promise<AuthorizationOutcome> {
    const { session, user } = active;
    const { storage, config, accessTokens, idTokens, audit } = this.#services;
    const now = this.#services.clock();
    const target = { redirectUri: request.redirectUri, responseMode: request.responseMode, state: request.state };
    const params: Record<string, string | undefined> = {};
    const sid = session.sid ?? undefined;
    const code = request.responseType === 'code' ? createOpaqueToken('ac') : undefined;
    // Back-Channel Logout 1.0 §2.5: the clients answered through a session are told when it ends. The
    // code is stored with that record, only while the session lasts: once it has ended its clients
    // have been told, and a code of it would give an ID token for a session they will never hear of.
    const recorded = await storage.sessions.addClient(
      session.digest,
      client.id,
      code === undefined ? undefined : {
        digest: digestOf(code),
        clientId: client.id,
        userId: user.id,
        redirectUri: request.redirectUri,
        redirectUriExplicit: request.redirectUriExplicit,
        scopes: request.scopes,
        codeChallenge: request.codeChallenge ?? null,
        codeChallengeMethod: request.codeChallengeMethod ?? null,
        nonce: request.nonce ?? null,
        authTime: session.authTime,
        ...(sid !== undefined && { sid }),
        grantId: null,
        accessTokenJti: null,
        accessTokenExpiresAt: null,
        createdAt: now,
        // The code stands for this sign-in (the ID token of its exchange carries its sid and
        // auth_time), and expires with the session if that comes first, as Keycloak refuses a code
        // whose session is no longer active. A session's end is set when it starts and never moves,
        // so the exchange refuses such a code by the code's own expiry, without reading the session.
        expiresAt: Math.min(now + config.tokens.authorizationCodeTtlSeconds, session.expiresAt),
        consumedAt: null,
      },
    );
    if (!recorded) return this.#signInAgain(request, client, active, origin);

    if (code !== undefined) {
      params.code = code;
    } else {
      let accessToken: string | undefined;
      if (request.responseType === 'token' || request.responseType === 'id_token token') {
        // A grant of its own, as the code flow's exchange makes one: withdrawing consent, or an
        // operator's revocation, then stops the token at Gatehouse's endpoints as it stops the others.
        // It ends with the token, and is swept after; the token is handed out only once it is stored.
        const grantId = randomUUID();
        const ttl = accessTokenTtl({ createdAt: now, expiresAt: null }, now, config.tokens);
        // A user deleted or disabled since the session was read has no session left either.
        const stored = await storage.grants.create({ id: grantId, clientId: client.id, userId: user.id, kind: 'implicit', scopes: request.scopes, authTime: session.authTime, ...(sid !== undefined && { sid }), createdAt: now, expiresAt: now + ttl, revokedAt: null });
        if (!stored) return this.#signInAgain(request, client, active, origin);
        const issued = await accessTokens.issue({ sub: user.id, clientId: client.id, scopes: request.scopes, grantId }, now, ttl);
        accessToken = issued.token;
        Object.assign(params, { access_token: issued.token, token_type: 'Bearer', expires_in: String(issued.expiresIn), scope: request.scopes.join(' ') });
      }
      if (request.responseType.startsWith('id_token')) {
        params.id_token = await idTokens.issue(
          { user, clientId: client.id, scopes: request.scopes, authTime: session.authTime, sid, nonce: request.nonce, accessToken, includeUserClaims: accessToken === undefined },
          now,
        );
      }
    }
    audit.record({ at: now, kind: 'authorization.granted', outcome: 'success', clientId: client.id, userId: user.id, data: { response_type: request.responseType, scopes: request.scopes, address: origin.address } });
    return authorizationResponse(target, config.issuer, params);
  }

  /**
   * The session ended between its reading and the answer (a sign-out in another tab, an operator's):
   * answered as a request that came without it — login_required to prompt=none (OpenID Connect Core
   * §3.1.2.6), otherwise the sign-in page, with the request kept for the browser that began it.
   */
  async #signInAgain(request: AuthorizationRequest, client: Client, { session }: ActiveSession, origin: Origin): Promise<AuthorizationOutcome> {
    const target = { redirectUri: request.redirectUri, responseMode: request.responseMode, state: request.state };
    try {
      if (request.prompt.includes('none')) throw new AuthorizationRedirectError(loginRequired('the user is not signed in'), target);
      const id = await this.#save(request, this.#services.clock(), origin, { staleSession: session.digest });
      return { kind: 'login', pendingId: id, client, loginHint: request.loginHint };
    } catch (error) {
      return this.#fail(error);
    }
  }

  /**
   * Whether the person must sign in (again) before deciding on a waiting request: it asked for a
   * sign-in that has not happened yet, or names another user (`id_token_hint`). Once it has,
   * `max_age` is not applied again while the person reads the consent page (with `max_age=0` nobody
   * could ever answer it). The clock counts whole seconds, so the session the request found is
   * refused by name as well: it may have signed in within the second the request arrived.
   */
  #mustSignIn(pending: PendingRequest, { session, user }: ActiveSession): boolean {
    if (session.digest === pending.staleSession || !isHinted(pending.request, user.id)) return true;
    return pending.signInSince !== undefined && session.authTime < pending.signInSince;
  }

  async #save(request: AuthorizationRequest, now: number, origin: Origin, demands: { staleSession?: string; signInSince?: number } = {}): Promise<string> {
    if ('browser' in origin) {
      const wait = await this.#pendingPerAddress.take(`address:${clientNetwork(origin.address)}`, now);
      if (wait > 0) throw new PendingBudgetSpent(wait);
    }
    const id = randomBytes(24).toString('base64url');
    const stored: Record<string, unknown> = { ...request };
    if ('browser' in origin) stored.browser = digestOf(origin.browser);
    else if (origin.browserDigest !== undefined) stored.browser = origin.browserDigest;
    if (demands.staleSession !== undefined) stored.staleSession = demands.staleSession;
    if (demands.signInSince !== undefined) stored.signInSince = demands.signInSince;
    await this.#services.storage.pendingAuthorizations.create({ id, clientId: request.clientId, request: stored, createdAt: now, expiresAt: now + PENDING_TTL_SECONDS });
    return id;
  }

  /**
   * The waiting request if `browser` began it (see PendingRequest.browser) and the client may still
   * receive its answer; otherwise what to show instead.
   */
  async #waitingFor(pendingId: string, browser: string | undefined): Promise<PendingRequest | AuthorizationOutcome> {
    const pending = await this.#pending(pendingId);
    if (!pending) return expired();
    if (!fromBrowser(pending, browser)) return otherBrowser();
    try {
      recheckWaitingRequest(pending.request, pending.client, { scopes: this.#services.scopes, implicitEnabled: this.#services.config.implicit.enabled });
    } catch (error) {
      // It can never be answered now: nobody may go on with it.
      await this.#services.storage.pendingAuthorizations.take(pendingId);
      return this.#fail(error);
    }
    return pending;
  }

  async #pending(pendingId: string): Promise<PendingRequest | undefined> {
    if (!/^[A-Za-z0-9_-]{32}$/.test(pendingId)) return undefined;
    const pending = await this.#services.storage.pendingAuthorizations.find(pendingId);
    if (!pending || pending.expiresAt <= this.#services.clock()) return undefined;
    const entry = await this.#services.clients.get(pending.clientId);
    const { staleSession, signInSince, browser, ...request } = pending.request as unknown as AuthorizationRequest & { staleSession?: string; signInSince?: number; browser?: string };
    return entry && { request, client: entry.client, staleSession, signInSince, browser };
  }

  #fail(error: unknown): AuthorizationOutcome {
    if (error instanceof AuthorizationPageError) return { kind: 'error_page', message: error.message };
    if (error instanceof PendingBudgetSpent) return { kind: 'throttled', retryAfterSeconds: Math.ceil(error.retryAfterSeconds) };
    if (error instanceof AuthorizationRedirectError) {
      return authorizationResponse(error.target, this.#services.config.issuer, { error: error.error.error, error_description: error.error.message });
    }
    throw error;
  }
}

/**
 * `max_age` (OpenID Connect Core §3.1.2.1): whether the session signed in longer ago than the client
 * accepts. §3.1.2.1: "max_age=0 is equivalent to prompt=login", so every session is too old for it:
 * the clock counts whole seconds, and one that signed in within this second would otherwise not be
 * older than 0.
 */
const isTooOld = (request: AuthorizationRequest, { session }: ActiveSession, now: number): boolean =>
  request.maxAge !== undefined && (request.maxAge === 0 || now - session.authTime > request.maxAge);

/** `id_token_hint` (OpenID Connect Core §3.1.2.1): the request names no user, or this session's. */
const isHinted = (request: AuthorizationRequest, userId: string): boolean => request.idTokenHintSubject === undefined || request.idTokenHintSubject === userId;

const covers = (consent: Consent | undefined, scopes: readonly string[]): boolean => consent !== undefined && scopes.every((s) => consent.scopes.includes(s));

/** Is this the browser that began the request (see PendingRequest.browser)? */
function fromBrowser(pending: PendingRequest, browser: string | undefined): boolean {
  if (pending.browser === undefined) return true;
  if (browser === undefined) return false;
  const expected = Buffer.from(pending.browser);
  const given = Buffer.from(digestOf(browser));
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Nothing is said about the request to a browser that did not begin it, and nothing changes. */
const otherBrowser = (): AuthorizationOutcome => ({
  kind: 'error_page',
  message: 'This sign-in request was started in another browser, or this browser’s cookies were cleared since. Go back to the application and start again.',
});

const expired = (): AuthorizationOutcome => ({
  kind: 'error_page',
  message: 'This sign-in request has expired or was already answered. Go back to the application and start again.',
});
