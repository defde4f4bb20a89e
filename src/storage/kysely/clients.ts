import type { Insertable, Kysely, Selectable, Updateable } from 'kysely';
import { COLUMNS, type ClientTable, type ClientSecretTable, type Database } from '../schema.ts';
import { TooManyClientsError, TooManySecretsError, type Client, type ClientRepository, type ClientSecret, type JsonWebKeySet, type NewClient } from '../repositories/clients.ts';
import { isForeignKeyViolation } from './constraints.ts';
import { deleteClient } from './deletion.ts';
import { onePage } from './pages.ts';
import { flag, fromJsonList, toJson } from './json.ts';
import { claimClient, insertForClient, storedState } from './powers.ts';

const toClient = (row: Selectable<ClientTable>): Client => ({
  id: row.id,
  name: row.name,
  description: row.description,
  ownerUserId: row.owner_user_id,
  type: row.type === 'public' ? 'public' : 'confidential',
  baseUrl: row.base_url,
  redirectUris: fromJsonList(row.redirect_uris),
  postLogoutRedirectUris: fromJsonList(row.post_logout_redirect_uris),
  grantTypes: fromJsonList(row.grant_types),
  scopes: fromJsonList(row.scopes),
  defaultScopes: fromJsonList(row.default_scopes),
  isAdmin: row.is_admin === 1,
  firstParty: row.first_party === 1,
  allowImpersonation: row.allow_impersonation === 1,
  isResourceServer: row.is_resource_server === 1,
  jwks: row.jwks === null ? null : (JSON.parse(row.jwks) as JsonWebKeySet),
  backchannelLogoutUri: row.backchannel_logout_uri,
  backchannelLogoutSessionRequired: row.backchannel_logout_session_required === 1,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
});

const toSecret = (row: Selectable<ClientSecretTable>): ClientSecret => ({
  id: row.id,
  clientId: row.client_id,
  digest: row.digest,
  hint: row.hint,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
});

function toRow(client: Partial<Omit<NewClient, 'id'>>) {
  const row: Updateable<ClientTable> = {};
  if (client.name !== undefined) row.name = client.name;
  if (client.description !== undefined) row.description = client.description;
  if (client.ownerUserId !== undefined) row.owner_user_id = client.ownerUserId;
  if (client.type !== undefined) row.type = client.type;
  if (client.baseUrl !== undefined) row.base_url = client.baseUrl;
  if (client.redirectUris !== undefined) row.redirect_uris = toJson(client.redirectUris);
  if (client.postLogoutRedirectUris !== undefined) row.post_logout_redirect_uris = toJson(client.postLogoutRedirectUris);
  if (client.grantTypes !== undefined) row.grant_types = toJson(client.grantTypes);
  if (client.scopes !== undefined) row.scopes = toJson(client.scopes);
  if (client.defaultScopes !== undefined) row.default_scopes = toJson(client.defaultScopes);
  if (client.isAdmin !== undefined) row.is_admin = flag(client.isAdmin);
  if (client.firstParty !== undefined) row.first_party = flag(client.firstParty);
  if (client.allowImpersonation !== undefined) row.allow_impersonation = flag(client.allowImpersonation);
  if (client.isResourceServer !== undefined) row.is_resource_server = flag(client.isResourceServer);
  if (client.jwks !== undefined) row.jwks = client.jwks === null ? null : JSON.stringify(client.jwks);
  if (client.backchannelLogoutUri !== undefined) row.backchannel_logout_uri = client.backchannelLogoutUri;
  if (client.backchannelLogoutSessionRequired !== undefined) row.backchannel_logout_session_required = flag(client.backchannelLogoutSessionRequired);
  return row;
}

export function kyselyClients(db: Kysely<Database>): ClientRepository {
  const find = async (id: string) => {
    const row = await db.selectFrom('clients').select(COLUMNS.clients).where('id', '=', id).executeTakeFirst();
    return row && toClient(row);
  };
  return {
    async create(client, now, limit) {
      const insert = (into: Kysely<Database>) =>
        into
          .insertInto('clients')
          .values({ ...(toRow(client) as Insertable<ClientTable>), id: client.id, created_at: now, updated_at: now })
          .execute();
      const owner = client.ownerUserId;
      if (limit === undefined || owner === null) await insert(db);
      else {
        await db.transaction().execute(async (trx) => {
          // The owner's row is claimed by a write that changes nothing, as a user's deletion claims
          // it: registrations for one owner wait for each other, and each counts the ones before.
          await trx
            .updateTable('users')
            .set((eb) => ({ updated_at: eb.ref('updated_at') }))
            .where('id', '=', owner)
            .execute();
          const held = await trx.selectFrom('clients').select((eb) => eb.fn.countAll().as('count')).where('owner_user_id', '=', owner).executeTakeFirstOrThrow();
          if (Number(held.count) >= limit) throw new TooManyClientsError(`the user ${owner} holds ${limit} clients already`);
          await insert(trx);
        });
      }
      return (await find(client.id))!;
    },
    find,
    async findWithSecrets(id) {
      const client = await find(id);
      if (!client) return undefined;
      const secrets = await db.selectFrom('client_secrets').select(COLUMNS.client_secrets).where('client_id', '=', id).execute();
      return { client, secrets: secrets.map(toSecret) };
    },
    async list(page) {
      return (await onePage(db.selectFrom('clients').select(COLUMNS.clients).orderBy('created_at').orderBy('id'), page).execute()).map(toClient);
    },
    async listForOwner(userId) {
      const rows = await db.selectFrom('clients').select(COLUMNS.clients).where('owner_user_id', '=', userId).orderBy('created_at').orderBy('id').execute();
      return rows.map(toClient);
    },
    async update(id, patch, now, expected) {
      let update = db
        .updateTable('clients')
        .set({ ...toRow(patch), updated_at: now })
        .where('id', '=', id);
      // Every column as it was read (lists and key sets as toRow writes them, so the same value is the same text).
      if (expected) update = update.where((eb) => eb.and({ ...toRow(expected), updated_at: expected.updatedAt }));
      const result = await update.executeTakeFirst();
      return result.numUpdatedRows > 0n ? find(id) : undefined;
    },
    delete: (id, expected) => db.transaction().execute((trx) => deleteClient(trx, id, expected)),
    async addSecret(secret, expected, limit) {
      const insert = async (into: Kysely<Database>) => {
        if (limit !== undefined) {
          const held = await into.selectFrom('client_secrets').select((eb) => eb.fn.countAll().as('count')).where('client_id', '=', secret.clientId).executeTakeFirstOrThrow();
          if (Number(held.count) >= limit) throw new TooManySecretsError(`the client ${secret.clientId} holds ${limit} secrets already`);
        }
        await into
          .insertInto('client_secrets')
          .values({
            id: secret.id,
            client_id: secret.clientId,
            digest: secret.digest,
            hint: secret.hint,
            created_at: secret.createdAt,
            expires_at: secret.expiresAt,
          })
          .execute();
      };
      // A limit is counted after the claim of the client's row, which concurrent additions wait for.
      if (limit !== undefined) return db.transaction().execute(async (trx) => (await claimClient(trx, secret.clientId, expected)) && (await insert(trx), true));
      return insertForClient(db, secret.clientId, expected, insert);
    },
    async listSecrets(clientId) {
      const rows = await db.selectFrom('client_secrets').select(COLUMNS.client_secrets).where('client_id', '=', clientId).orderBy('created_at').execute();
      return rows.map(toSecret);
    },
    async deleteSecret(clientId, secretId, expected) {
      let deletion = db.deleteFrom('client_secrets').where('client_id', '=', clientId).where('id', '=', secretId);
      if (expected) deletion = deletion.where(({ exists, selectFrom }) => exists(selectFrom('clients').select('id').where('id', '=', clientId).where((eb) => eb.and(storedState(expected)))));
      const result = await deletion.executeTakeFirst();
      return result.numDeletedRows > 0n;
    },
    async recordAssertion(clientId, jti, expiresAt) {
      let result;
      try {
        result = await db
          .insertInto('client_assertions')
          .values({ client_id: clientId, jti, expires_at: expiresAt })
          .onConflict((conflict) => conflict.columns(['client_id', 'jti']).doNothing())
          .executeTakeFirst();
      } catch (error) {
        // The client was deleted since the caller read it (through another instance, whose
        // registry dropped it, while the caller's still holds it for a few seconds).
        if (isForeignKeyViolation(error)) return 'no client';
        throw error;
      }
      return (result.numInsertedOrUpdatedRows ?? 0n) > 0n ? 'recorded' : 'replayed';
    },
  };
}
