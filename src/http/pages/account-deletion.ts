import type { FastifyInstance, FastifyReply } from 'fastify';
import { deleteOwnAccount } from '../../core/account.ts';
import type { ActiveSession } from '../../core/sessions.ts';
import { currentSession, field, type Pages } from './context.ts';
import { answerPasswordUnchecked, EXPIRED, toSignIn } from './account-settings.ts';
import { renderPage } from './render.ts';

type DeletionErrors = Partial<Record<'password' | 'confirm' | 'form', string>>;

/** The value of the checkbox that says the person understands what deleting takes with it. */
const CONFIRMED = 'delete';

/**
 * A person deletes their own account (`/account/delete`), as Keycloak's account console and Auth0
 * let them, and as the right to erasure (GDPR Art. 17) and the app stores require: the page says
 * what goes with it, named — the sessions, the access given to applications, and the applications
 * the person registered in the developer portal with their secrets and API keys; the form takes the
 * password again and an explicit confirmation. The deletion is the operator's (deleteUser).
 */
export async function accountDeletionRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  const { gatehouse } = pages;

  const showDeletionForm = async (reply: FastifyReply, session: ActiveSession, errors: DeletionErrors = {}, status = 200) => {
    // From the database, not the registry: an application suspended with its owner goes too.
    const applications = (await gatehouse.storage.clients.listForOwner(session.user.id)).map((client) => ({ id: client.id, name: client.name }));
    return renderPage(
      reply,
      'account-delete',
      { title: 'Delete your account', email: session.user.email, applications, tokenMinutes: Math.ceil(gatehouse.config.tokens.accessTokenTtlSeconds / 60), errors },
      status,
    );
  };

  app.get('/account/delete', async (request, reply) => {
    const session = await currentSession(pages, request);
    return session ? showDeletionForm(reply, session) : toSignIn(request, reply, '/account/delete');
  });

  app.post('/account/delete', async (request, reply) => {
    const session = await currentSession(pages, request);
    if (!session) return toSignIn(request, reply, '/account/delete');
    if (!pages.csrf.verify(request, field(request.body, 'csrf'))) return showDeletionForm(reply, session, { form: EXPIRED }, 403);
    const password = field(request.body, 'password') ?? '';

    // Everything wrong with the form at once, before the password is tried: a box left unticked
    // costs no attempt.
    const errors: DeletionErrors = {};
    if (!password) errors.password = 'Enter your password.';
    if (field(request.body, 'confirm') !== CONFIRMED) errors.confirm = 'Tick the box to confirm that you want your account deleted.';
    if (Object.keys(errors).length > 0) return showDeletionForm(reply, session, errors, 400);

    const now = gatehouse.clock();
    const result = await deleteOwnAccount(gatehouse, session, password, request.ip, now);
    switch (result.outcome) {
      case 'throttled':
      case 'busy':
        return answerPasswordUnchecked(pages, request, reply, session.user.id, result, (form, status) => showDeletionForm(reply, session, { form }, status));
      case 'invalid':
        gatehouse.audit.record({ at: now, kind: 'user.deletion_failed', outcome: 'failure', clientId: null, userId: session.user.id, data: { address: request.ip } });
        return showDeletionForm(reply, session, { password: 'The password is not right.' }, 400);
      case 'deleted':
        gatehouse.audit.record({
          at: now,
          kind: 'user.deleted',
          outcome: 'success',
          clientId: null,
          userId: session.user.id,
          data: { by: 'self', client_ids: result.clientIds, address: request.ip },
        });
        // The session ended with the account; the browser forgets its cookie.
        reply.clearCookie(pages.cookies.names(request).session, pages.cookies.options(request));
        return renderPage(reply, 'account-deleted', { title: 'Your account was deleted', email: session.user.email, applications: result.clientIds.length, signup: gatehouse.config.signup.enabled });
    }
  });
}
