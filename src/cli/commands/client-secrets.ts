import { parseArgs } from 'node:util';
import { addClientSecret, MAX_CLIENT_SECRETS } from '../../core/applications.ts';
import { TooManySecretsError } from '../../storage/repositories/clients.ts';
import { systemClock } from '../../core/clock.ts';
import { parseIsoInstant } from '../../core/instants.ts';
import { digestOf } from '../../core/tokens/opaque.ts';
import { recordCliAction } from '../audit-trail.ts';
import { argumentsOf, exactly, table, UsageError, type Run } from '../output.ts';
import { describeSecret, findClient } from './client-support.ts';

export const clientSecretUsage = `gatehouse client secret list CLIENT_ID [--json]
gatehouse client secret add CLIENT_ID [--expires-at ISO] [--json]   one more secret, shown once: the others keep working
gatehouse client secret revoke CLIENT_ID SECRET_ID [--json]`;

/**
 * A client's secrets, one at a time, as the admin API's /admin/v1/clients/{id}/secrets manages them:
 * a rotation without downtime adds a secret, deploys it, then revokes the old one, where
 * `rotate-secret` replaces every secret at once.
 */
export function clientSecretCommand(args: string[]): Run {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'list': {
      const [id] = argumentsOf('client secret list', rest, ['CLIENT_ID']) as [string];
      return async (gatehouse, out) => {
        const client = await findClient(gatehouse, id);
        const secrets = (await gatehouse.storage.clients.listSecrets(client.id)).map(describeSecret);
        out.print(secrets, () =>
          secrets.length === 0
            ? `${id} has no secret${client.type === 'public' ? ': it is a public client' : ''}`
            : table([['ID', 'HINT', 'CREATED', 'EXPIRES'], ...secrets.map((s) => [s.id, s.hint, s.created_at, s.expires_at ?? 'never'])]),
        );
      };
    }
    case 'add': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { 'expires-at': { type: 'string' }, json: { type: 'boolean' } } });
      const [id] = exactly('client secret add', positionals, ['CLIENT_ID']) as [string];
      const expiresAt = values['expires-at'] === undefined ? null : parseExpiry(values['expires-at']);
      return async (gatehouse, out) => {
        const client = await findClient(gatehouse, id);
        if (client.type === 'public') throw new Error(`${id} is a public client: it has no secrets`);
        const secret = await addClientSecret(gatehouse, id, gatehouse.clock(), expiresAt, undefined, undefined, MAX_CLIENT_SECRETS).catch((error: unknown) => {
          if (error instanceof TooManySecretsError) {
            throw new Error(`${id} holds at most ${MAX_CLIENT_SECRETS} secrets, expired ones included: revoke one it no longer uses (client secret revoke ${id} SECRET_ID), then add a new one`);
          }
          throw error;
        });
        if (secret === undefined) throw new Error(`no client ${id}`);
        const stored = (await gatehouse.storage.clients.listSecrets(id)).find((s) => s.digest === digestOf(secret));
        if (!stored) throw new Error(`no client ${id}`);
        recordCliAction(gatehouse, 'client_secret.created', { clientId: id, data: { secret_id: stored.id } });
        const described = describeSecret(stored);
        out.print({ ...described, client_secret: secret }, () =>
          [
            `id:            ${described.id}`,
            `client_secret: ${secret}   (shown once; store it now)`,
            `expires_at:    ${described.expires_at ?? 'never'}`,
            'the other secrets keep working until revoked (client secret revoke CLIENT_ID SECRET_ID)',
          ].join('\n'),
        );
      };
    }
    case 'revoke': {
      const [id, secretId] = argumentsOf('client secret revoke', rest, ['CLIENT_ID', 'SECRET_ID']) as [string, string];
      return async (gatehouse, out) => {
        await findClient(gatehouse, id);
        if (!(await gatehouse.storage.clients.deleteSecret(id, secretId))) throw new Error(`client ${id} has no secret ${secretId}`);
        gatehouse.clients.invalidate(id);
        recordCliAction(gatehouse, 'client_secret.deleted', { clientId: id, data: { secret_id: secretId } });
        const left = (await gatehouse.storage.clients.listSecrets(id)).length;
        out.print({ revoked: secretId, secrets_left: left }, () =>
          [
            `revoked ${secretId}: running servers refuse it once their cached copy of the client expires (clients.cacheTtlSeconds)`,
            ...(left === 0 ? [`${id} has no secret left: it cannot authenticate with one until one is added (client secret add ${id})`] : []),
          ].join('\n'),
        );
      };
    }
    default:
      throw new UsageError(`unknown client secret command "${sub ?? ''}"`);
  }
}

/** An expiry must be a time to come, as the admin API has it: a secret born expired is a mistake. */
function parseExpiry(value: string): number {
  const expiresAt = parseIsoInstant(value);
  if (expiresAt === undefined) throw new UsageError(`--expires-at must be an ISO 8601 date-time, not "${value}"`);
  if (expiresAt <= systemClock()) throw new UsageError(`--expires-at must be in the future, not ${value}`);
  return expiresAt;
}
