import type { FastifyInstance } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import { ClientChangedError } from '../../core/applications.ts';
import type { ApiKey } from '../../storage/repositories/api-keys.ts';
import { findClientOr404 } from './clients.ts';
import { listFilteredPage, pageOf, pageQuery, textId, type FilteredList } from './paging.ts';
import { notFound } from './problems.ts';
import { actOnCheckedClient, ADMIN_CLIENT_RULE, CHECKED_WHEN_WRITTEN, idParams, iso, noContent, operation, optionalTimestamp, parseExpiry, recordAdminAction, requestBody, stringList, timestamp } from './support.ts';

const TAG = 'Clients';
const SCOPE = 'admin:clients';

const apiKeyProperties = {
  id: { type: 'string' },
  name: { type: 'string' },
  prefix: { type: 'string', description: 'The first characters of the key, to recognize it.' },
  scopes: { type: 'array', items: { type: 'string' } },
  created_at: timestamp,
  expires_at: optionalTimestamp,
  revoked_at: optionalTimestamp,
  last_used_at: { ...optionalTimestamp, description: 'Recorded in batches: may lag a few seconds.' },
} as const;

const apiKeySchema = { title: 'ApiKey', type: 'object', required: Object.keys(apiKeyProperties), properties: apiKeyProperties } as const;

type ClientParams = { clientId: string };

/** Newest first, and of one second by id (as the index reads them, see ApiKeyRepository.listForClient). */
const API_KEYS: FilteredList<ApiKey, string> = { name: 'api_keys', parseId: textId, positionOf: (key) => ({ time: key.createdAt, id: key.id }) };

/** A client's API keys (`Authorization: ApiKey <key>`): list, create (shown once), revoke. */
export async function apiKeyRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  app.get<{ Params: ClientParams; Querystring: { limit: number; cursor?: string } }>(
    '/clients/:clientId/api-keys',
    {
      ...operation(TAG, SCOPE, 'listApiKeys', 'List a client’s API keys', { description: 'Newest first, a page at a time; revoked and expired keys too, until the sweep deletes them (`apiKeys.retentionDays` after they ended, 30 days unless set).' }),
      schema: { params: idParams('clientId'), querystring: pageQuery, response: { 200: pageOf('api_keys', apiKeySchema, 'newest first') } },
    },
    async (request) => {
      const client = await findClientOr404(gatehouse, request.params.clientId);
      // The client is among the filters: a cursor from another client's keys is refused.
      const { page, nextCursor } = await listFilteredPage(API_KEYS, request.query, { client_id: client.id }, (after, limit) =>
        gatehouse.storage.apiKeys.listForClient(client.id, { after: after && { createdAt: after.time, id: after.id }, limit }),
      );
      return { api_keys: page.map(describeApiKey), next_cursor: nextCursor };
    },
  );

  app.post<{ Params: ClientParams; Body: { name: string; scopes?: string[]; expires_at?: string | null } }>(
    '/clients/:clientId/api-keys',
    {
      ...operation(TAG, SCOPE, 'createApiKey', 'Create an API key for a client', {
        description: `The key acts as the client (\`Authorization: ApiKey <key>\`) with the key’s scopes, which must be among the client’s and never user-only ones. ${ADMIN_CLIENT_RULE} ${CHECKED_WHEN_WRITTEN}`,
        problems: [409],
      }),
      schema: {
        params: idParams('clientId'),
        body: requestBody(
          {
            name: { type: 'string', minLength: 1, maxLength: 200 },
            scopes: stringList('Default: the client’s default scopes that an API key may hold.'),
            expires_at: { ...optionalTimestamp, description: 'When the key stops working (default: never).' },
          },
          ['name'],
        ),
        response: { 201: { description: 'The key, shown this once as `api_key`.', title: 'NewApiKey', type: 'object', required: [...apiKeySchema.required, 'api_key'], properties: { ...apiKeyProperties, api_key: { type: 'string' } } } },
      },
    },
    async (request, reply) => {
      const now = gatehouse.clock();
      let created: { key: ApiKey; value: string } | undefined;
      const added = await actOnCheckedClient(gatehouse, request, request.params.clientId, async (client) => {
        created = await gatehouse.apiKeys.create(client, { name: request.body.name, scopes: request.body.scopes, expiresAt: parseExpiry(request.body.expires_at) }, now, client);
        return created !== undefined;
      });
      // Not created with the client's powers unchanged: it changed in another way, as it can only meanwhile.
      if (!added || created === undefined) throw new ClientChangedError(`the client ${request.params.clientId} changed meanwhile: read it and try again`);
      const { key, value } = created;
      recordAdminAction(gatehouse, request, 'admin.api_key.created', { data: { client_id: key.clientId, api_key_id: key.id, scopes: key.scopes } });
      return reply.code(201).header('cache-control', 'no-store').send({ ...describeApiKey(key), api_key: value });
    },
  );

  app.delete<{ Params: ClientParams & { keyId: string } }>(
    '/clients/:clientId/api-keys/:keyId',
    {
      ...operation(TAG, SCOPE, 'revokeApiKey', 'Revoke an API key', { description: `It stops working at once. ${ADMIN_CLIENT_RULE} ${CHECKED_WHEN_WRITTEN}`, problems: [409] }),
      schema: { params: idParams('clientId', 'keyId'), response: { 204: noContent } },
    },
    async (request, reply) => {
      const { clientId, keyId } = request.params;
      const revoked = await actOnCheckedClient(gatehouse, request, clientId, (checked) => gatehouse.storage.apiKeys.revoke(clientId, keyId, gatehouse.clock(), checked));
      if (!revoked) throw notFound(`client ${clientId} has no live API key ${keyId}`);
      recordAdminAction(gatehouse, request, 'admin.api_key.revoked', { data: { client_id: clientId, api_key_id: keyId } });
      return reply.code(204).send();
    },
  );
}

const describeApiKey = (k: ApiKey) => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  scopes: k.scopes,
  created_at: iso(k.createdAt),
  expires_at: iso(k.expiresAt),
  revoked_at: iso(k.revokedAt),
  last_used_at: iso(k.lastUsedAt),
});
