import type { FastifyInstance } from 'fastify';
import { createClient, deleteClient, describeClient, updateClient, type ClientPatch } from '../../core/applications.ts';
import { GRANT_TYPES } from '../../core/client-validation.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Client, ClientPowers, ClientType, JsonWebKeySet } from '../../storage/repositories/clients.ts';
import { listFilteredPage, pageOf, pageQuery, textId, type FilteredList } from './paging.ts';
import { notFound } from './problems.ts';
import { actOnCheckedClient, ADMIN_CLIENT_RULE, CHECKED_WHEN_WRITTEN, idParams, noContent, operation, recordAdminAction, requestBody, requireAdminScopesOf, stringList, timestamp } from './support.ts';

const TAG = 'Clients';
const SCOPE = 'admin:clients';

const clientProperties = {
  client_id: { type: 'string' },
  name: { type: 'string' },
  description: { type: 'string' },
  type: { type: 'string', enum: ['confidential', 'public'] },
  base_url: { type: ['string', 'null'] },
  redirect_uris: { type: 'array', items: { type: 'string' } },
  post_logout_redirect_uris: { type: 'array', items: { type: 'string' } },
  grant_types: { type: 'array', items: { type: 'string' } },
  scopes: { type: 'array', items: { type: 'string' } },
  default_scopes: { type: 'array', items: { type: 'string' } },
  admin: { type: 'boolean' },
  first_party: { type: 'boolean' },
  impersonation: { type: 'boolean' },
  resource_server: { type: 'boolean' },
  jwks: {
    type: ['object', 'null'],
    description: 'Public keys for private_key_jwt (RFC 7523), as a JWK Set; null when the client has none.',
    properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: true } } },
  },
  backchannel_logout_uri: { type: ['string', 'null'], description: 'Where Logout Tokens are posted when a session the client was answered in ends (OpenID Connect Back-Channel Logout 1.0); null for none.' },
  backchannel_logout_session_required: { type: 'boolean' },
  owner_user_id: { type: ['string', 'null'] },
  created_at: timestamp,
  updated_at: timestamp,
} as const;

const clientSchema = { title: 'Client', type: 'object', required: Object.keys(clientProperties), properties: clientProperties } as const;

const clientWithSecretSchema = {
  title: 'ClientWithSecret',
  type: 'object',
  required: Object.keys(clientProperties),
  properties: {
    ...clientProperties,
    client_secret: { type: 'string', description: 'Only when a confidential client got a new secret: shown this once, never stored in plain text.' },
  },
} as const;

// The writable fields of a client, as on creation and in a PATCH.
const clientFields = {
  name: { type: 'string', minLength: 1, maxLength: 200 },
  description: { type: 'string', maxLength: 2000 },
  type: { type: 'string', enum: ['confidential', 'public'] },
  base_url: { type: ['string', 'null'], maxLength: 2000 },
  redirect_uris: stringList(
    'Exact redirect URIs: https; plain http only on 127.0.0.1, [::1] or localhost; or a private-use scheme in reverse-domain form (com.example.app:/callback). ' +
      'The host right after `//`; no user name or password, no `*` in the host, no backslash, nothing but ASCII, no `%` in the host, no fragment.',
  ),
  post_logout_redirect_uris: stringList('Where RP-initiated logout may return to; the same rules as `redirect_uris`.'),
  grant_types: { type: 'array', items: { type: 'string', enum: [...GRANT_TYPES] }, maxItems: GRANT_TYPES.length * 2 },
  scopes: stringList('Scopes the client may be granted (admin clients: admin scopes only, each held by the token that sets them).'),
  default_scopes: stringList('Granted when a request names none; within `scopes`.'),
  admin: { type: 'boolean', description: 'An admin client: holds admin scopes only, and may call this API. Only a token that holds all of its admin scopes can register or change one.' },
  first_party: { type: 'boolean', description: 'Trusted by the operator: skips the consent page.' },
  impersonation: { type: 'boolean', description: 'May exchange tokens for users (RFC 8693) and impersonate them.' },
  resource_server: { type: 'boolean', description: 'A protected API of the platform: may introspect every client’s tokens. Only a token that also holds admin:tokens can make or manage one.' },
  jwks: {
    type: ['object', 'null'],
    description:
      'Public signing keys (RSA of 2048 to 4096 bits with the public exponent 65537, EC on P-256, P-384 or P-521, OKP on Ed25519) the client authenticates with by private_key_jwt (RFC 7523): a JWK Set of 1 to 10 keys. ' +
      'A key’s `alg`, if given, must be one its type verifies (RSA: RS256…PS512; P-256: ES256; P-384: ES384; P-521: ES512; Ed25519: EdDSA or Ed25519), its `use`, if given, `sig`. ' +
      'Private key material is refused. null removes the keys. Confidential clients only.',
    required: ['keys'],
    properties: { keys: { type: 'array', minItems: 1, maxItems: 10, items: { type: 'object' } } },
  },
  backchannel_logout_uri: {
    type: ['string', 'null'],
    maxLength: 2000,
    description:
      'OpenID Connect Back-Channel Logout 1.0: where Gatehouse posts a Logout Token (`logout_token`, a JWT signed with the ID-token key) when a browser session the client was answered in ends — ' +
      'RP-initiated sign-out, the account page, the user signed out, their password reset, disabled or deleted. An absolute URI: https, plain http only on 127.0.0.1, [::1] or localhost; ' +
      'no user name or password, no fragment. One attempt of a few seconds, no redirect followed; each outcome is audited as `backchannel_logout.delivered`. null removes it.',
  },
  backchannel_logout_session_required: {
    type: 'boolean',
    description: 'The client needs `sid` in Logout Tokens (Back-Channel Logout 1.0 §2.2). Gatehouse always sends it; default false.',
  },
  owner_user_id: {
    type: ['string', 'null'],
    minLength: 1,
    maxLength: 200,
    description: 'The id of the user who owns the application (developer portal); null for none (the operator’s). A client whose owner is disabled is suspended with them. An admin client has no owner.',
  },
} as const;

const createBody = requestBody(
  {
    ...clientFields,
    type: { ...clientFields.type, default: 'confidential' },
    grant_types: { ...clientFields.grant_types, default: ['client_credentials'] },
    scopes: { ...clientFields.scopes, default: [] },
  },
  ['name'],
);
const patchBody = requestBody(clientFields);

interface ClientBody {
  name?: string;
  description?: string;
  type?: ClientType;
  base_url?: string | null;
  redirect_uris?: string[];
  post_logout_redirect_uris?: string[];
  grant_types?: string[];
  scopes?: string[];
  default_scopes?: string[];
  admin?: boolean;
  first_party?: boolean;
  impersonation?: boolean;
  resource_server?: boolean;
  jwks?: JsonWebKeySet | null;
  backchannel_logout_uri?: string | null;
  backchannel_logout_session_required?: boolean;
  owner_user_id?: string | null;
}

type ClientParams = { clientId: string };

/** Oldest first, and of one second by id (as ClientRepository.list reads them). */
const CLIENTS: FilteredList<Client, string> = { name: 'clients', parseId: textId, positionOf: (client) => ({ time: client.createdAt, id: client.id }) };

/** Applications: all their fields and flags (their secrets: client-secrets.ts; API keys: api-keys.ts). */
export async function clientRoutes(app: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  const findClient = (id: string) => findClientOr404(gatehouse, id);
  // Every owner named must exist: the client registry suspends a client whose owner it cannot find
  // (clients.ts), so an unknown one — the empty string included — would disable the client for good.
  const checkOwner = async (ownerUserId: string | null | undefined): Promise<void> => {
    if (ownerUserId !== undefined && ownerUserId !== null && !(await gatehouse.storage.users.findById(ownerUserId))) throw new ValidationError('owner_user_id', `there is no user "${ownerUserId}"`);
  };

  app.get<{ Querystring: { limit: number; cursor?: string } }>(
    '/clients',
    { ...operation(TAG, SCOPE, 'listClients', 'List clients', { description: 'Oldest first, a page at a time.' }), schema: { querystring: pageQuery, response: { 200: pageOf('clients', clientSchema) } } },
    async (request) => {
      const { page, nextCursor } = await listFilteredPage(CLIENTS, request.query, {}, (after, limit) => gatehouse.storage.clients.list({ after: after && { createdAt: after.time, id: after.id }, limit }));
      return { clients: page.map(describeClient), next_cursor: nextCursor };
    },
  );

  app.post<{ Body: ClientBody }>(
    '/clients',
    {
      ...operation(TAG, SCOPE, 'createClient', 'Register a client', { description: `A confidential client gets its first secret, returned once as \`client_secret\`. ${ADMIN_CLIENT_RULE}` }),
      schema: { body: createBody, response: { 201: { description: 'The client; with `client_secret` for a confidential client.', ...clientWithSecretSchema } } },
    },
    async (request, reply) => {
      const body = request.body;
      requireAdminScopesOf(gatehouse, request, null, { isAdmin: body.admin ?? false, scopes: body.scopes ?? [], allowImpersonation: body.impersonation ?? false, isResourceServer: body.resource_server ?? false });
      await checkOwner(body.owner_user_id);
      const { client, secret } = await createClient(gatehouse, { ...clientInput(body), name: body.name ?? '', type: body.type ?? 'confidential', grantTypes: body.grant_types ?? [], scopes: body.scopes ?? [] }, gatehouse.clock());
      recordAdminAction(gatehouse, request, 'admin.client.created', { data: { client_id: client.id, name: client.name, admin: client.isAdmin } });
      return reply
        .code(201)
        .header('location', `${request.url.split('?')[0]}/${client.id}`)
        .header('cache-control', 'no-store')
        .send({ ...describeClient(client), ...(secret !== undefined ? { client_secret: secret } : {}) });
    },
  );

  app.get<{ Params: ClientParams }>(
    '/clients/:clientId',
    { ...operation(TAG, SCOPE, 'getClient', 'Show a client'), schema: { params: idParams('clientId'), response: { 200: { description: 'The client.', ...clientSchema } } } },
    async (request) => describeClient(await findClient(request.params.clientId)),
  );

  app.patch<{ Params: ClientParams; Body: ClientBody }>(
    '/clients/:clientId',
    {
      ...operation(TAG, SCOPE, 'updateClient', 'Change a client', {
        description:
          `Any field or flag; those left out keep their value. Validated as on creation. A client made confidential gets a first secret (\`client_secret\`, shown once); one made public loses its secrets and API keys, and its grants are revoked (their refresh tokens were issued to a client with a secret). ${ADMIN_CLIENT_RULE} ` +
          'A change is checked against, and merged into, the client as it is when written, so the fields it leaves out keep what a concurrent change gave them: 409 when concurrent changes kept changing the client meanwhile (read it and try again).',
        problems: [409],
      }),
      schema: { params: idParams('clientId'), body: patchBody, response: { 200: { description: 'The changed client.', ...clientWithSecretSchema } } },
    },
    async (request, reply) => {
      const body = request.body;
      const authorize = (current: Client, next: ClientPowers) => requireAdminScopesOf(gatehouse, request, current.id, current, next);
      // Refused before the owner is looked up; updateClient checks again against the very record the
      // change is merged into, and writes only if the client still has the powers it was checked with.
      const current = await findClient(request.params.clientId);
      authorize(current, {
        isAdmin: body.admin ?? current.isAdmin,
        scopes: body.scopes ?? current.scopes,
        allowImpersonation: body.impersonation ?? current.allowImpersonation,
        isResourceServer: body.resource_server ?? current.isResourceServer,
      });
      await checkOwner(body.owner_user_id);
      const updated = await updateClient(gatehouse, request.params.clientId, clientInput(body), gatehouse.clock(), authorize);
      if (!updated) throw notFound(`there is no client ${request.params.clientId}`);
      recordAdminAction(gatehouse, request, 'admin.client.updated', { data: { client_id: updated.client.id, fields: Object.keys(request.body) } });
      return reply.header('cache-control', 'no-store').send({ ...describeClient(updated.client), ...(updated.secret !== undefined ? { client_secret: updated.secret } : {}) });
    },
  );

  app.delete<{ Params: ClientParams }>(
    '/clients/:clientId',
    {
      ...operation(TAG, SCOPE, 'deleteClient', 'Delete a client', {
        description: `With its secrets, API keys, grants, refresh tokens and codes: everything it holds stops working. ${ADMIN_CLIENT_RULE} ${CHECKED_WHEN_WRITTEN}`,
        problems: [409],
      }),
      schema: { params: idParams('clientId'), response: { 204: noContent } },
    },
    async (request, reply) => {
      const deleted = await actOnCheckedClient(gatehouse, request, request.params.clientId, (checked) => deleteClient(gatehouse, checked.id, checked));
      if (!deleted) throw notFound(`there is no client ${request.params.clientId}`);
      recordAdminAction(gatehouse, request, 'admin.client.deleted', { data: { client_id: request.params.clientId } });
      return reply.code(204).send();
    },
  );
}

export function listOf(name: string, item: object) {
  return { description: 'The list.', type: 'object', required: [name], properties: { [name]: { type: 'array', items: item } } };
}

function clientInput(body: ClientBody): ClientPatch {
  return {
    name: body.name,
    description: body.description,
    type: body.type,
    baseUrl: body.base_url,
    redirectUris: body.redirect_uris,
    postLogoutRedirectUris: body.post_logout_redirect_uris,
    grantTypes: body.grant_types,
    scopes: body.scopes,
    defaultScopes: body.default_scopes,
    isAdmin: body.admin,
    firstParty: body.first_party,
    allowImpersonation: body.impersonation,
    isResourceServer: body.resource_server,
    jwks: body.jwks,
    backchannelLogoutUri: body.backchannel_logout_uri,
    backchannelLogoutSessionRequired: body.backchannel_logout_session_required,
    ownerUserId: body.owner_user_id,
  };
}

export async function findClientOr404(gatehouse: Gatehouse, id: string): Promise<Client> {
  const client = await gatehouse.storage.clients.find(id);
  if (!client) throw notFound(`there is no client ${id}`);
  return client;
}
