import type { FastifyInstance } from 'fastify';
import { lifetimeText } from '../../core/emailed-links.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { currentSession, field, type Pages } from './context.ts';
import { accountDeletionRoutes } from './account-deletion.ts';
import { accountEmailRoutes } from './account-email.ts';
import { accountSessionRoutes, listedSessions } from './account-sessions.ts';
import { accountSettingsRoutes } from './account-settings.ts';
import { safeHttpUrl } from './consent.ts';
import { renderPage } from './render.ts';

/**
 * The person's account: who is signed in, the applications they authorized, each withdrawable, and
 * the browsers signed in to it, each of which can be signed out (account-sessions.ts), the way to
 * their password, their name and their other browsers (account-settings.ts), their email address
 * (account-email.ts), and to deleting it (account-deletion.ts).
 */
export async function accountRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;

  app.get('/account', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return reply.redirect('/login', 302);
    const now = gatehouse.clock();
    const applications = [];
    for (const authorized of await authorizedApplications(gatehouse, session.user.id, now)) {
      // From the database, not the registry: an application suspended with its owner is listed too,
      // so that the person can still withdraw their consent.
      const client = await gatehouse.storage.clients.find(authorized.clientId);
      if (!client) continue;
      applications.push({
        clientId: client.id,
        name: client.name,
        baseUrl: safeHttpUrl(client.baseUrl),
        since: new Date(authorized.since * 1000).toISOString().slice(0, 10),
        scopes: authorized.scopes.map((name) => ({ name, description: gatehouse.scopes.definition(name)?.description ?? name })),
      });
    }
    // Gatehouse refuses the grant's access tokens at once (introspection, userinfo), but APIs that
    // verify them on their own (DESIGN §3) accept one until it expires; the person is told so
    // rather than promised more.
    const minutes = Math.ceil(gatehouse.config.tokens.accessTokenTtlSeconds / 60);
    const query = request.query as Record<string, unknown>;
    const notice =
      query.withdrawn === '1'
        ? `Access withdrawn. The application can no longer renew its access and its access tokens are revoked; an API that checks tokens on its own may accept one until it expires, within ${minutes} minutes.`
        : query.changed === 'password'
          ? 'Your password was changed. Every other browser that was signed in to your account is signed out; this one stays signed in.'
          : query.changed === 'email'
            ? 'Your email address was changed. You sign in with it from now on, and applications see it the next time they ask for your profile.'
            : query.changed === 'name'
              ? 'Your name was saved. Applications see it the next time they ask for your profile.'
              : query.signed_out === 'elsewhere'
                ? 'Every other browser that was signed in to your account is signed out; this one stays signed in.'
                : query.signed_out === 'session'
                  ? 'That browser is signed out. Applications you authorized keep their access until you withdraw it below.'
                  : undefined;
    const verification = gatehouse.emailVerifications.enabled
      ? { verified: session.user.emailVerified, sent: query.sent === 'verification' && !session.user.emailVerified, lifetime: lifetimeText(gatehouse.emailVerifications.tokenTtlSeconds) }
      : undefined;
    const sessions = await listedSessions(gatehouse, session, now);
    return renderPage(reply, 'account', { title: 'Your account', user: { email: session.user.email, name: session.user.name }, applications, sessions, notice, verification });
  });

  app.post('/account/applications/withdraw', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return reply.redirect('/login', 303);
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) {
      return renderPage(reply, 'error', { title: 'Please try again', message: 'The form expired or did not come from this site, so nothing was changed.' }, 403);
    }
    const clientId = field(request.body, 'client_id') ?? '';
    const now = gatehouse.clock();
    if (await gatehouse.storage.consents.withdraw(session.user.id, clientId, now)) {
      gatehouse.audit.record({ at: now, kind: 'consent.withdrawn', outcome: 'success', clientId, userId: session.user.id, data: { address: request.ip } });
    }
    return reply.redirect('/account?withdrawn=1', 303);
  });

  await accountSettingsRoutes(app, pages);
  await accountSessionRoutes(app, pages);
  await accountDeletionRoutes(app, pages);
  await accountEmailRoutes(app, pages);
}

/**
 * The applications the person can withdraw: those they consented to, and those holding a live
 * grant without a consent — a first-party application skips the consent page, yet its refresh
 * tokens last as long as any other's, and withdrawing here is the only way the person has to end
 * them (a password change and "Sign out everywhere else" keep grants), as Keycloak's account console
 * lists every application with offline access. Consented ones first, as they were listed before.
 */
async function authorizedApplications(gatehouse: Gatehouse, userId: string, now: number): Promise<{ clientId: string; scopes: string[]; since: number }[]> {
  const consents = await gatehouse.storage.consents.listForUser(userId);
  const consented = new Set(consents.map((consent) => consent.clientId));
  const granted = (await gatehouse.storage.grants.liveClientsOf(userId, now)).filter((live) => !consented.has(live.clientId));
  return [...consents.map((consent) => ({ clientId: consent.clientId, scopes: consent.scopes, since: consent.createdAt })), ...granted];
}
