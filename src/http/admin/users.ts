import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ChangeSource } from '../../core/account-notices.ts';
import { createUser, deleteUser, describeUser, resetUserPassword, setUserDisabled, signOutUser, updateUser } from '../../core/users.ts';
import { describeSession, LAST_USE_PRECISION_SECONDS, LISTED_SESSIONS } from '../../core/sessions.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { User } from '../../storage/repositories/users.ts';
import { listOf } from './clients.ts';
import { notFound } from './problems.ts';
import { filteredPageQuery, listFilteredPage, pageOf, textId, type FilteredList } from './paging.ts';
import { idParams, noContent, operation, optionalTimestamp, recordAdminAction, requestBody, timestamp } from './support.ts';

const TAG = 'Users';
const SCOPE = 'admin:users';

const userProperties = {
  id: { type: 'string' },
  email: { type: 'string' },
  name: { type: 'string' },
  email_verified: { type: 'boolean' },
  disabled: { type: 'boolean', description: 'A disabled user can neither sign in nor refresh tokens.' },
  disabled_at: optionalTimestamp,
  created_at: timestamp,
  updated_at: timestamp,
} as const;

// What an operator sees of a browser session, as Keycloak's admin console shows a user's sessions:
// never its digest, which stands for the cookie.
const sessionProperties = {
  sid: {
    type: ['string', 'null'],
    description: 'The session’s id, as its ID tokens carry it (`sid`, Back-Channel Logout 1.0 §2.1): random, and nothing of the cookie. Null for a session started by a version of Gatehouse older than sids; it ends only with `POST /users/{userId}/sign-out`.',
  },
  created_at: { ...timestamp, description: 'When the browser signed in first.' },
  auth_time: { ...timestamp, description: 'When the user last proved their password in it (a sign-in again that an application asked for moves it).' },
  last_used_at: { ...optionalTimestamp, description: `When a page last resolved it, recorded ${LAST_USE_PRECISION_SECONDS / 60} minutes apart at most; null when not known (a session older than the record).` },
  expires_at: timestamp,
  address: { type: ['string', 'null'], description: 'The client address it signed in from (behind a trusted proxy, as X-Forwarded-For gives it); null when not known.' },
  device: { type: ['string', 'null'], description: 'Its browser and system as the User-Agent header named them, from a list of the major ones (“Firefox on Linux”), never the header itself; null when not known.' },
} as const;

const sessionSchema = { title: 'Session', type: 'object', required: Object.keys(sessionProperties), properties: sessionProperties } as const;

const userSchema = { title: 'User', type: 'object', required: Object.keys(userProperties), properties: userProperties } as const;
const one = (description: string) => ({ description, ...userSchema });
const password = { type: 'string', minLength: 8, maxLength: 1024, description: 'At least 8 characters; stored as an Argon2id hash.' } as const;
const email = { type: 'string', minLength: 3, maxLength: 320 } as const;
const name = { type: 'string', maxLength: 200 } as const;

const listQuery = filteredPageQuery({
  email: {
    type: 'string',
    minLength: 1,
    maxLength: 320,
    description: 'Only the user with this email: matched exactly as sign-in matches it (case, surrounding spaces, Unicode form and an internationalized domain’s ASCII form aside). None or one user.',
  },
});

type UserParams = { userId: string };

/** Oldest first, and of one second by id (as UserRepository.list reads them). */
const USERS: FilteredList<User, string> = { name: 'users', parseId: textId, positionOf: (user) => ({ time: user.createdAt, id: user.id }) };

/** User accounts: find, create, change, disable and enable, reset the password, list and end their sessions, sign out, delete. */
export async function userRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  const findUser = async (id: string): Promise<User> => {
    const user = await gatehouse.storage.users.findById(id);
    if (!user) throw notFound(`there is no user ${id}`);
    return user;
  };

  /** Where a change is made, as the mail telling the user says it: the admin API, and the admin application's name. */
  const adminSource = async (request: FastifyRequest): Promise<ChangeSource> => {
    const admin = request.adminClientId === undefined ? undefined : await gatehouse.clients.get(request.adminClientId);
    return { via: 'admin_api', application: admin?.client.name ?? null };
  };

  app.get<{ Querystring: { limit: number; cursor?: string; email?: string } }>(
    '/users',
    {
      ...operation(TAG, SCOPE, 'listUsers', 'List users', { description: 'Oldest first, a page at a time; with `email`, the user who has that email, if any.' }),
      schema: { querystring: listQuery, response: { 200: pageOf('users', userSchema) } },
    },
    async (request) => {
      const filter = request.query.email === undefined ? {} : { email: request.query.email };
      const { page, nextCursor } = await listFilteredPage(USERS, request.query, filter, (after, limit) =>
        gatehouse.storage.users.list({ after: after && { createdAt: after.time, id: after.id }, limit }, filter),
      );
      return { users: page.map(describeUser), next_cursor: nextCursor };
    },
  );

  app.post<{ Body: { email: string; password: string; name?: string } }>(
    '/users',
    {
      ...operation(TAG, SCOPE, 'createUser', 'Create a user', { problems: [409] }),
      schema: {
        body: requestBody({ email, password, name }, ['email', 'password']),
        response: { 201: one('The new user.') },
      },
    },
    async (request, reply) => {
      const user = await createUser(gatehouse.storage, { email: request.body.email, password: request.body.password, name: request.body.name ?? '' }, gatehouse.clock());
      recordAdminAction(gatehouse, request, 'admin.user.created', { userId: user.id, data: { user_id: user.id } });
      return reply.code(201).header('location', `${request.url.split('?')[0]}/${user.id}`).send(describeUser(user));
    },
  );

  app.get<{ Params: UserParams }>(
    '/users/:userId',
    { ...operation(TAG, SCOPE, 'getUser', 'Show a user'), schema: { params: idParams('userId'), response: { 200: one('The user.') } } },
    async (request) => describeUser(await findUser(request.params.userId)),
  );

  app.patch<{ Params: UserParams; Body: { name?: string; email?: string; email_verified?: boolean } }>(
    '/users/:userId',
    {
      ...operation(TAG, SCOPE, 'updateUser', 'Change a user', {
        description:
          'Any of `name`, `email` and `email_verified`; those left out keep their value. Validated as on creation; an email another user has is a 409. ' +
          'A new email is not verified: `email_verified` becomes false unless the body sets it too, as Auth0’s Management API does; the email verification and password reset links sent to the old address stop working, and with mail configured the old address is told of the change, the new one masked. ' +
          'The user stays signed in, and their grants and tokens stay: userinfo answers with the new name and email at once, as does every ID token issued from then on that carries them (one issued before keeps the old ones; `sub`, the user’s id, never changes). ' +
          'A change meets concurrent ones as written: 409 when other requests kept changing the user’s email meanwhile (read it and try again).',
        problems: [409],
      }),
      schema: {
        params: idParams('userId'),
        body: requestBody({ name, email, email_verified: { type: 'boolean', description: 'Whether the user proved they receive mail at `email`.' } }),
        response: { 200: one('The changed user.') },
      },
    },
    async (request) => {
      const { name, email, email_verified: emailVerified } = request.body;
      const updated = await updateUser(gatehouse, request.params.userId, { name, email, emailVerified }, gatehouse.clock(), await adminSource(request));
      if (!updated) throw notFound(`there is no user ${request.params.userId}`);
      recordAdminAction(gatehouse, request, 'admin.user.updated', { userId: updated.id, data: { user_id: updated.id, fields: Object.keys(request.body) } });
      return describeUser(updated);
    },
  );

  for (const [action, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    app.post<{ Params: UserParams }>(
      `/users/:userId/${action}`,
      {
        ...operation(TAG, SCOPE, `${action}User`, disabled ? 'Disable a user' : 'Enable a user', {
          description: disabled
            ? 'The user can no longer sign in or refresh tokens, their tokens are refused, and the applications they registered in the developer portal are suspended.'
            : 'The user can sign in again, and their applications work again.',
        }),
        schema: { params: idParams('userId'), response: { 200: one('The user.') } },
      },
      async (request) => {
        const user = await findUser(request.params.userId);
        await setUserDisabled(gatehouse, user, disabled, gatehouse.clock());
        recordAdminAction(gatehouse, request, `admin.user.${action}d`, { userId: user.id, data: { user_id: user.id } });
        return describeUser(await findUser(user.id));
      },
    );
  }

  app.post<{ Params: UserParams; Body: { password: string } }>(
    '/users/:userId/password',
    {
      ...operation(TAG, SCOPE, 'resetUserPassword', 'Reset a user’s password', {
        description: 'Signs the user out everywhere; their grants stay. With mail configured, the user’s address is told that the password changed, through the admin API and by which admin application.',
      }),
      schema: { params: idParams('userId'), body: requestBody({ password }, ['password']), response: { 204: noContent } },
    },
    async (request, reply) => {
      const user = await findUser(request.params.userId);
      if (!(await resetUserPassword(gatehouse, user.id, request.body.password, gatehouse.clock(), await adminSource(request)))) throw notFound(`there is no user ${user.id}`);
      recordAdminAction(gatehouse, request, 'admin.user.password_reset', { userId: user.id, data: { user_id: user.id } });
      return reply.code(204).send();
    },
  );

  app.post<{ Params: UserParams }>(
    '/users/:userId/sign-out',
    {
      ...operation(TAG, SCOPE, 'signOutUser', 'Sign a user out everywhere', {
        description:
          'Ends every browser session of the user: each application that relies on Gatehouse’s sign-in asks them to sign in again. ' +
          'Only the sessions, as Keycloak’s logout of a user: their password stays, and so do the grants they gave applications, with the refresh tokens issued from them; ' +
          'revoke a grant with `POST /grants/{grantId}/revoke`, or reset the password, which signs the user out too.',
      }),
      schema: { params: idParams('userId'), response: { 204: noContent } },
    },
    async (request, reply) => {
      const user = await findUser(request.params.userId);
      await signOutUser(gatehouse, user.id);
      recordAdminAction(gatehouse, request, 'admin.user.signed_out', { userId: user.id, data: { user_id: user.id } });
      return reply.code(204).send();
    },
  );

  app.get<{ Params: UserParams }>(
    '/users/:userId/sessions',
    {
      ...operation(TAG, SCOPE, 'listUserSessions', 'List a user’s sessions', {
        description: `The browsers the user is signed in on, as their account page lists them: live sessions only, newest first, at most ${LISTED_SESSIONS}. Never the session cookie or anything it could be made from.`,
      }),
      schema: { params: idParams('userId'), response: { 200: listOf('sessions', sessionSchema) } },
    },
    async (request) => {
      const user = await findUser(request.params.userId);
      return { sessions: (await gatehouse.sessions.listForUser(user.id, gatehouse.clock())).map(describeSession) };
    },
  );

  app.delete<{ Params: UserParams & { sid: string } }>(
    '/users/:userId/sessions/:sid',
    {
      ...operation(TAG, SCOPE, 'endUserSession', 'Sign a user out of one session', {
        description:
          'Ends the session whose `sid` is given, as a sign-out in that browser would, and as the user’s own account page signs out one browser: the applications answered through it are told (Back-Channel Logout). ' +
          'The user’s other sessions, their password and their grants stay. 404 when the user has no such session (ended already, or another user’s).',
      }),
      schema: { params: idParams('userId', 'sid'), response: { 204: noContent } },
    },
    async (request, reply) => {
      const user = await findUser(request.params.userId);
      const { sid } = request.params;
      if (!(await gatehouse.sessions.endOne(user.id, sid))) throw notFound(`user ${user.id} has no session ${sid}`);
      recordAdminAction(gatehouse, request, 'admin.user.session_signed_out', { userId: user.id, data: { user_id: user.id, sid } });
      return reply.code(204).send();
    },
  );

  app.delete<{ Params: UserParams }>(
    '/users/:userId',
    {
      ...operation(TAG, SCOPE, 'deleteUser', 'Delete a user', { description: 'With their sessions, consents, grants and refresh tokens, and the applications they registered in the developer portal with everything issued to those.' }),
      schema: { params: idParams('userId'), response: { 204: noContent } },
    },
    async (request, reply) => {
      const deleted = await deleteUser(gatehouse, request.params.userId);
      if (!deleted) throw notFound(`there is no user ${request.params.userId}`);
      recordAdminAction(gatehouse, request, 'admin.user.deleted', { userId: request.params.userId, data: { user_id: request.params.userId, client_ids: deleted.clientIds } });
      return reply.code(204).send();
    },
  );
}

