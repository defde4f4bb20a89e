import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { withQueryParameters } from '../../core/authorize/respond.ts';
import { isOAuthError } from '../../core/errors.ts';
import { requestParameter } from '../../core/parameters.ts';
import type { Client } from '../../storage/repositories/clients.ts';
import { currentSession, field, resendWithSession, type Pages } from './context.ts';
import { strictlyEncoded } from './encoding.ts';
import { refuseHead } from './methods.ts';
import { renderPage } from './render.ts';

/** The parameters of RP-Initiated Logout §2; `logout_hint` and `ui_locales` are accepted and not used. */
const LOGOUT_PARAMETERS = ['id_token_hint', 'logout_hint', 'client_id', 'post_logout_redirect_uri', 'state', 'ui_locales'] as const;

/**
 * OpenID Connect RP-Initiated Logout 1.0. With a valid `id_token_hint` of the current session the
 * session ends at once and the browser returns to a registered `post_logout_redirect_uri`;
 * otherwise the person confirms (so no other site can sign them out with a link).
 */
export async function logoutRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;

  const logout = async (request: FastifyRequest, reply: FastifyReply, params: Record<string, unknown>, confirmed: boolean) => {
    // Read as /authorize and /token read theirs (requestParameter, RFC 6749 §3.1): one sent empty is
    // one left out; one sent twice, or that is no string (a JSON body), is refused before anything
    // is done — read as left out, a second state or client_id changed where the person went, or
    // whether they were asked.
    let values: Partial<Record<(typeof LOGOUT_PARAMETERS)[number], string>>;
    try {
      values = Object.fromEntries(LOGOUT_PARAMETERS.map((name) => [name, requestParameter(params, name)]));
    } catch (error) {
      if (!isOAuthError(error)) throw error;
      const problem = `${error.description[0]!.toUpperCase()}${error.description.slice(1)}`;
      return renderPage(reply, 'error', { title: 'Sign-out link not valid', message: `${problem}. You were not signed out or redirected.` }, 400);
    }
    const hint = values.id_token_hint;
    const claims = hint ? await gatehouse.idTokens.readHint(hint) : undefined;
    const clientId = values.client_id ?? claims?.audience[0];
    const client: Client | undefined = clientId ? (await gatehouse.clients.get(clientId))?.client : undefined;
    // A hint that cannot be verified (signed by a key since dropped from the JWKS, or not ours) is
    // not used (§4: "the information that failed to validate MUST NOT be used"), yet the person can
    // still sign out, after confirming. Without client_id nothing ties the address to a client: it
    // is left out rather than refused (§3: redirect only where the client is known).
    const unverified = hint !== undefined && claims === undefined;
    const requested = unverified && values.client_id === undefined ? undefined : values.post_logout_redirect_uri;
    // RP-Initiated Logout §2: "the OP MUST verify that the Client Identifier matches the one used when issuing the ID Token".
    if (claims && values.client_id !== undefined && !claims.audience.includes(values.client_id!)) {
      return renderPage(reply, 'error', { title: 'Sign-out link not valid', message: 'The ID token the application sent was issued to another application. You were not signed out or redirected.' }, 400);
    }
    if (requested && (!client || !client.postLogoutRedirectUris.includes(requested))) {
      return renderPage(reply, 'error', { title: 'Sign-out link not valid', message: 'The application asked to send you to an address it has not registered. You were not signed out or redirected.' }, 400);
    }
    const session = await currentSession(pages, request);
    // §2: "the OP MUST ask the End-User ... if the supplied ID Token does not belong to the current
    // OP session". An ID token carries the sid of the session it was issued in (a refreshed one
    // too), and every sign-in starts a new session: a hint of the same person from an earlier one,
    // or from another browser's, is asked about, like a link any site could hold. Their auth_time
    // alone cannot tell two sessions that signed in within the same second apart; it is all a
    // session started by an instance older than sids has.
    const ofThisSession =
      session !== undefined && claims?.subject === session.user.id && (session.session.sid !== null ? claims.sid === session.session.sid : claims.authTime === session.session.authTime);
    if (session && !confirmed && !ofThisSession) {
      return renderPage(reply, 'logout', { title: 'Sign out', email: session.user.email, clientName: client?.name, params: Object.entries({ post_logout_redirect_uri: requested, client_id: client?.id, state: requested && values.state }).filter(([, v]) => v !== undefined) });
    }
    const names = pages.cookies.names(request);
    await gatehouse.sessions.end(request.cookies[names.session]);
    reply.clearCookie(names.session, pages.cookies.options(request));
    if (session) gatehouse.audit.record({ at: gatehouse.clock(), kind: 'logout', outcome: 'success', clientId: client?.id ?? null, userId: session.user.id, data: { address: request.ip } });
    if (requested) return reply.redirect(withQueryParameters(requested, values.state === undefined ? {} : { state: values.state }), 303);
    return renderPage(reply, 'logged-out', { title: 'Signed out' });
  };

  await strictlyEncoded(app, (endpoint) => {
    endpoint.get('/logout', { exposeHeadRoute: false }, async (request, reply) => logout(request, reply, request.query as Record<string, unknown>, false));
    endpoint.post('/logout', async (request, reply) => {
      const body = (request.body ?? {}) as Record<string, unknown>;
      // A confirmed sign-out must come from our own form.
      const confirmed = field(body, 'confirm') === 'yes' && pages.csrf.verify(request, field(body, 'csrf'));
      // RP-Initiated Logout §2: an application may POST here; from its site the session cookie stays behind.
      if (!confirmed) {
        const resent = resendWithSession(pages, request, reply, '/logout');
        if (resent) return resent;
      }
      return logout(request, reply, body, confirmed);
    });
    refuseHead(endpoint, '/logout', ['GET', 'POST']);
  });
}
