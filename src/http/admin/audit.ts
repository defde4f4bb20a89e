import type { FastifyInstance } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import type { AuditEvent } from '../../storage/repositories/audit.ts';
import { filteredPageQuery, integerId, listFilteredPage, pageOf, type FilteredList } from './paging.ts';
import { invalidField } from './problems.ts';
import { iso, operation, parseTime, timestamp } from './support.ts';

const TAG = 'Audit';
const SCOPE = 'admin:tokens';

const time = (description: string) => ({ type: 'string', minLength: 1, maxLength: 40, description: `${description}: ISO 8601 or epoch seconds.` }) as const;

const eventProperties = {
  id: { type: 'integer' },
  at: timestamp,
  kind: { type: 'string', description: 'e.g. `token.issued`, `login.failed`, `refresh_token.reused`, `admin.client.created`.' },
  outcome: { type: 'string', enum: ['success', 'failure'] },
  client_id: { type: ['string', 'null'], description: 'The client that acted (for admin actions: the admin client).' },
  user_id: { type: ['string', 'null'], description: 'The user concerned.' },
  data: { type: 'object', additionalProperties: true, description: 'Details of the event (grant, scopes, target ids…).' },
} as const;

/** Newest first by time, and of one second by id (see AuditRepository.query). */
const EVENTS: FilteredList<AuditEvent, number> = { name: 'audit', parseId: integerId, positionOf: (event) => ({ time: event.at, id: event.id ?? 0 }) };

/** The audit log, newest first, queried by time, client, user and kind. */
export async function auditRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  app.get<{ Querystring: { since?: string; until?: string; client_id?: string; user_id?: string; kind?: string; limit: number; cursor?: string } }>(
    '/audit-events',
    {
      ...operation(TAG, SCOPE, 'listAuditEvents', 'Query audit events', {
        description:
          'Newest first, and of one second by `id` (however many events share a second, each is on one page), a page at a time. Events are written in batches: one may take a moment to appear, with a time before events already listed.',
      }),
      schema: {
        querystring: filteredPageQuery({
          since: time('Events at or after this time'),
          until: time('Events before this time'),
          client_id: { type: 'string', minLength: 1, maxLength: 200 },
          user_id: { type: 'string', minLength: 1, maxLength: 200 },
          kind: { type: 'string', minLength: 1, maxLength: 200 },
        }),
        response: { 200: pageOf('events', { title: 'AuditEvent', type: 'object', required: Object.keys(eventProperties), properties: eventProperties }, 'newest first') },
      },
    },
    async (request) => {
      const { since, until, client_id: clientId, user_id: userId, kind } = request.query;
      const filter = {
        since: since === undefined ? undefined : parseTime(since, 'since'),
        until: until === undefined ? undefined : parseTime(until, 'until'),
        clientId,
        userId,
        kind,
      };
      if (filter.since !== undefined && filter.until !== undefined && filter.until < filter.since) throw invalidField('until', 'until must not be before since');
      // This instance's own recent events (e.g. the admin action just made) are written first.
      await gatehouse.audit.flush();
      const filters = { since: filter.since, until: filter.until, client_id: clientId, user_id: userId, kind };
      const { page, nextCursor } = await listFilteredPage(EVENTS, request.query, filters, (after, limit) =>
        gatehouse.storage.audit.query({ ...filter, after: after && { at: after.time, id: after.id }, limit }),
      );
      return { events: page.map(describeEvent), next_cursor: nextCursor };
    },
  );
}

export const describeEvent = (e: AuditEvent) => ({
  id: e.id ?? 0,
  at: iso(e.at),
  kind: e.kind,
  outcome: e.outcome,
  client_id: e.clientId,
  user_id: e.userId,
  data: e.data,
});
