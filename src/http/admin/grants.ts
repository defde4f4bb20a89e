import type { FastifyInstance } from 'fastify';
import { describeGrants, revokeGrant } from '../../core/grant-records.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Grant } from '../../storage/repositories/grants.ts';
import { filteredPageQuery, listFilteredPage, pageOf, textId, type FilteredList } from './paging.ts';
import { notFound } from './problems.ts';
import { idParams, operation, optionalTimestamp, recordAdminAction, timestamp } from './support.ts';

const TAG = 'Grants';
const SCOPE = 'admin:tokens';

const grantProperties = {
  id: { type: 'string' },
  client_id: { type: 'string' },
  user_id: { type: ['string', 'null'] },
  kind: { type: 'string', description: 'The grant it was made by: `authorization_code`, `password`, `implicit`, or `impersonation` (a token exchange acting as the user, RFC 8693).' },
  scopes: { type: 'array', items: { type: 'string' } },
  created_at: timestamp,
  expires_at: { ...optionalTimestamp, description: 'When nothing issued from the grant can be used any more; it is deleted then. Null while it has refresh tokens.' },
  revoked_at: optionalTimestamp,
  ends_at: { ...optionalTimestamp, description: 'When its tokens stop working however often they are refreshed: its own end (`expires_at`) or its maximum lifetime (`tokens.refreshTokenMaxLifetimeSeconds` after `created_at`), whichever comes first; null when it has neither.' },
  status: {
    type: 'string',
    enum: ['active', 'revoked', 'ended', 'user_disabled', 'client_suspended'],
    description:
      'What the token endpoint acts on now: `revoked`, `ended` (past `ends_at`, though nothing was written to the grant), `user_disabled` (its user is disabled) or `client_suspended` (its application is suspended with its developer’s disabled account) — both refused until the account is enabled again, when the grant is as it was — or `active`.',
  },
} as const;

/** Newest first, and of one second by id (as the indexes read them, see GrantRepository.list). */
const GRANTS: FilteredList<Grant, string> = { name: 'grants', parseId: textId, positionOf: (grant) => ({ time: grant.createdAt, id: grant.id }) };

const grantSchema = { title: 'Grant', type: 'object', required: Object.keys(grantProperties), properties: grantProperties } as const;

/** Grants (what a user authorized a client to do, and the refresh tokens issued from it): list, revoke. */
export async function grantRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  app.get<{ Querystring: { user_id?: string; client_id?: string; limit: number; cursor?: string } }>(
    '/grants',
    {
      ...operation(TAG, SCOPE, 'listGrants', 'List grants', { description: 'Newest first, a page at a time; filter by user, client or both.' }),
      schema: {
        querystring: filteredPageQuery({
          user_id: { type: 'string', minLength: 1, maxLength: 200 },
          client_id: { type: 'string', minLength: 1, maxLength: 200 },
        }),
        response: { 200: pageOf('grants', grantSchema, 'newest first') },
      },
    },
    async (request) => {
      const { user_id: userId, client_id: clientId } = request.query;
      const { page, nextCursor } = await listFilteredPage(GRANTS, request.query, { user_id: userId, client_id: clientId }, (after, limit) =>
        gatehouse.storage.grants.list({ userId, clientId, after: after && { createdAt: after.time, id: after.id }, limit }),
      );
      const now = gatehouse.clock();
      return { grants: await describeGrants(gatehouse, page, now, gatehouse.config.tokens.refreshTokenMaxLifetimeSeconds), next_cursor: nextCursor };
    },
  );

  app.post<{ Params: { grantId: string } }>(
    '/grants/:grantId/revoke',
    {
      ...operation(TAG, SCOPE, 'revokeGrant', 'Revoke a grant', {
        description: 'Every refresh token issued from it stops working at once, and Gatehouse (introspection, userinfo, project tokens, token exchange) refuses its access tokens at once; APIs that verify tokens locally accept them until they expire. Revoking a revoked grant changes nothing.',
      }),
      schema: { params: idParams('grantId'), response: { 200: { description: 'The grant, revoked.', ...grantSchema } } },
    },
    async (request) => {
      const { grantId } = request.params;
      const result = await revokeGrant(gatehouse.storage, grantId, gatehouse.clock());
      if (!result) throw notFound(`there is no grant ${grantId}`);
      const { grant, revoked } = result;
      if (revoked) recordAdminAction(gatehouse, request, 'admin.grant.revoked', { userId: grant.userId, data: { grant_id: grant.id, client_id: grant.clientId } });
      const [described] = await describeGrants(gatehouse, [grant], gatehouse.clock(), gatehouse.config.tokens.refreshTokenMaxLifetimeSeconds);
      return described;
    },
  );
}
