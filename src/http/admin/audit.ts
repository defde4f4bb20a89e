import type { FastifyInstance } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import type { AuditEvent } from '../../storage/repositories.ts';
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

/** The audit log, newest first, queried by time, client, user and kind. */
export async function auditRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  app.get<{ Querystring: { since?: string; until?: string; client_id?: string; user_id?: string; kind?: string; limit?: number } }>(
    '/audit-events',
    {
      ...operation(TAG, SCOPE, 'listAuditEvents', 'Query audit events', { description: 'Newest first. Events are written in batches: one may take a moment to appear.' }),
      schema: {
        querystring: {
          type: 'object',
          properties: {
            since: time('Events at or after this time'),
            until: time('Events before this time'),
            client_id: { type: 'string', minLength: 1, maxLength: 200 },
            user_id: { type: 'string', minLength: 1, maxLength: 200 },
            kind: { type: 'string', minLength: 1, maxLength: 200 },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          },
        },
        response: {
          200: {
            description: 'The events.',
            type: 'object',
            required: ['events'],
            properties: { events: { type: 'array', items: { title: 'AuditEvent', type: 'object', required: Object.keys(eventProperties), properties: eventProperties } } },
          },
        },
      },
    },
    async (request) => {
      const { since, until, client_id: clientId, user_id: userId, kind, limit } = request.query;
      const filter = {
        since: since === undefined ? undefined : parseTime(since, 'since'),
        until: until === undefined ? undefined : parseTime(until, 'until'),
        clientId,
        userId,
        kind,
        limit,
      };
      if (filter.since !== undefined && filter.until !== undefined && filter.until < filter.since) throw invalidField('until', 'until must not be before since');
      // This instance's own recent events (e.g. the admin action just made) are written first.
      await gatehouse.audit.flush();
      return { events: (await gatehouse.storage.audit.query(filter)).map(describeEvent) };
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
