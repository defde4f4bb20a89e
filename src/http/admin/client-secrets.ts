import type { FastifyInstance } from 'fastify';
import { addClientSecret, ClientChangedError, MAX_CLIENT_SECRETS } from '../../core/applications.ts';
import { digestOf } from '../../core/tokens/opaque.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { TooManySecretsError, type ClientSecret } from '../../storage/repositories/clients.ts';
import { findClientOr404, listOf } from './clients.ts';
import { conflict, notFound } from './problems.ts';
import {
  actOnCheckedClient,
  ADMIN_CLIENT_RULE,
  CHECKED_WHEN_WRITTEN,
  emptyBodyAsObject,
  idParams,
  iso,
  noContent,
  operation,
  optionalTimestamp,
  parseExpiry,
  recordAdminAction,
  requestBody,
  timestamp,
} from './support.ts';

const TAG = 'Clients';
const SCOPE = 'admin:clients';

const secretSchema = {
  title: 'ClientSecret',
  type: 'object',
  required: ['id', 'hint', 'created_at', 'expires_at'],
  properties: { id: { type: 'string' }, hint: { type: 'string', description: 'The last characters of the secret.' }, created_at: timestamp, expires_at: optionalTimestamp },
} as const;

type ClientParams = { clientId: string };

/** A client's secrets: listed by their hints, added (shown once) for rotation without downtime, deleted. */
export async function clientSecretRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  app.get<{ Params: ClientParams }>(
    '/clients/:clientId/secrets',
    { ...operation(TAG, SCOPE, 'listClientSecrets', 'List a client’s secrets', { description: 'Never the secrets themselves: only their hints.' }), schema: { params: idParams('clientId'), response: { 200: listOf('secrets', secretSchema) } } },
    async (request) => {
      const client = await findClientOr404(gatehouse, request.params.clientId);
      return { secrets: (await gatehouse.storage.clients.listSecrets(client.id)).map(describeSecret) };
    },
  );

  app.post<{ Params: ClientParams; Body: { expires_at?: string | null } }>(
    '/clients/:clientId/secrets',
    {
      ...operation(TAG, SCOPE, 'addClientSecret', 'Add a secret to a client', {
        description: `The other secrets keep working until deleted: rotation without downtime. A client holds at most ${MAX_CLIENT_SECRETS} secrets, expired ones included: one more is refused with a 409 problem until one is deleted. The body is optional. ${ADMIN_CLIENT_RULE} ${CHECKED_WHEN_WRITTEN}`,
        problems: [409],
      }),
      preValidation: emptyBodyAsObject,
      schema: {
        params: idParams('clientId'),
        body: requestBody({ expires_at: { ...optionalTimestamp, description: 'When the secret stops working (default: never).' } }),
        response: { 201: { description: 'The secret, shown this once as `client_secret`.', title: 'NewClientSecret', type: 'object', required: [...secretSchema.required, 'client_secret'], properties: { ...secretSchema.properties, client_secret: { type: 'string' } } } },
      },
    },
    async (request, reply) => {
      const now = gatehouse.clock();
      let secret: string | undefined;
      const added = await actOnCheckedClient(gatehouse, request, request.params.clientId, async (client) => {
        if (client.type === 'public') throw conflict(`${client.id} is a public client: it has no secrets`);
        const expiresAt = parseExpiry(request.body.expires_at);
        if (expiresAt !== null && expiresAt <= now) throw new ValidationError('expires_at', 'the expiry must be in the future');
        try {
          secret = await addClientSecret(gatehouse, client.id, now, expiresAt, client, undefined, MAX_CLIENT_SECRETS);
        } catch (error) {
          if (error instanceof TooManySecretsError) {
            throw conflict(`${client.id} holds at most ${MAX_CLIENT_SECRETS} secrets, expired ones included: delete one it no longer uses, then add a new one`);
          }
          throw error;
        }
        return secret !== undefined;
      });
      // Not added with the client's powers unchanged: it changed in another way, as it can only meanwhile.
      if (!added || secret === undefined) throw new ClientChangedError(`the client ${request.params.clientId} changed meanwhile: read it and try again`);
      const digest = digestOf(secret);
      const stored = (await gatehouse.storage.clients.listSecrets(request.params.clientId)).find((s) => s.digest === digest)!;
      recordAdminAction(gatehouse, request, 'admin.client_secret.created', { data: { client_id: request.params.clientId, secret_id: stored.id } });
      return reply.code(201).header('cache-control', 'no-store').send({ ...describeSecret(stored), client_secret: secret });
    },
  );

  app.delete<{ Params: ClientParams & { secretId: string } }>(
    '/clients/:clientId/secrets/:secretId',
    {
      ...operation(TAG, SCOPE, 'deleteClientSecret', 'Delete a client secret', { description: `${ADMIN_CLIENT_RULE} ${CHECKED_WHEN_WRITTEN}`, problems: [409] }),
      schema: { params: idParams('clientId', 'secretId'), response: { 204: noContent } },
    },
    async (request, reply) => {
      const { clientId, secretId } = request.params;
      const deleted = await actOnCheckedClient(gatehouse, request, clientId, (checked) => gatehouse.storage.clients.deleteSecret(clientId, secretId, checked));
      if (!deleted) throw notFound(`client ${clientId} has no secret ${secretId}`);
      gatehouse.clients.invalidate(clientId);
      recordAdminAction(gatehouse, request, 'admin.client_secret.deleted', { data: { client_id: clientId, secret_id: secretId } });
      return reply.code(204).send();
    },
  );
}

const describeSecret = (s: ClientSecret) => ({ id: s.id, hint: `…${s.hint}`, created_at: iso(s.createdAt), expires_at: iso(s.expiresAt) });
