import { parseArgs } from 'node:util';
import { parseIsoInstant } from '../../core/instants.ts';
import { recordCliAction } from '../audit-trail.ts';
import { isoTime, optionalIsoTime, table, UsageError, type Run } from '../output.ts';
import { findClient } from './client-support.ts';
import { required } from './clients.ts';

export const apiKeyUsage = `gatehouse apikey create CLIENT_ID --name NAME [--scope "a b"] [--expires-at ISO] [--json]
gatehouse apikey list CLIENT_ID [--json]
gatehouse apikey revoke CLIENT_ID KEY_ID [--json]`;

export function apiKeyCommand(args: string[]): Run {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { name: { type: 'string' }, scope: { type: 'string' }, 'expires-at': { type: 'string' }, json: { type: 'boolean' } },
  });
  if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') throw new UsageError(`unknown apikey command "${sub ?? ''}"`);
  const clientId = required(positionals[0], `apikey ${sub} needs a CLIENT_ID`);
  // Only create takes options besides --json, and only revoke a second argument: anything else is a mistake, not ignored.
  const expected = sub === 'revoke' ? 2 : 1;
  if (positionals.length > expected) throw new UsageError(`apikey ${sub} takes ${expected === 2 ? 'CLIENT_ID KEY_ID' : 'one CLIENT_ID'}, not also "${positionals[expected]}"`);
  const misplaced = sub === 'create' ? undefined : (['name', 'scope', 'expires-at'] as const).find((option) => values[option] !== undefined);
  if (misplaced !== undefined) throw new UsageError(`apikey ${sub} takes no --${misplaced}`);
  switch (sub) {
    case 'create': {
      const name = required(values.name, 'apikey create needs --name');
      let expiresAt: number | null = null;
      if (values['expires-at'] !== undefined) {
        expiresAt = parseIsoInstant(values['expires-at']) ?? null;
        if (expiresAt === null) throw new UsageError('--expires-at must be an ISO 8601 date-time');
      }
      const scopes = values.scope?.split(/[\s,]+/).filter(Boolean);
      return async (gatehouse, out) => {
        const client = await findClient(gatehouse, clientId);
        const { key, value } = await gatehouse.apiKeys.create(client, { name, scopes, expiresAt }, gatehouse.clock());
        recordCliAction(gatehouse, 'api_key.created', { clientId, data: { api_key_id: key.id } });
        out.print({ id: key.id, api_key: value, scopes: key.scopes, expires_at: optionalIsoTime(key.expiresAt) }, () =>
          [`id:      ${key.id}`, `api_key: ${value}   (shown once; store it now)`, `scopes:  ${key.scopes.join(' ')}`].join('\n'),
        );
      };
    }
    case 'list':
      return async (gatehouse, out) => {
        await findClient(gatehouse, clientId);
        const keys = await gatehouse.storage.apiKeys.listForClient(clientId);
        const rows = keys.map((k) => ({
          id: k.id,
          name: k.name,
          prefix: k.prefix,
          scopes: k.scopes,
          created_at: isoTime(k.createdAt),
          expires_at: optionalIsoTime(k.expiresAt),
          last_used_at: optionalIsoTime(k.lastUsedAt),
          revoked: k.revokedAt !== null,
        }));
        out.print(rows, () => table([['ID', 'NAME', 'PREFIX', 'CREATED', 'LAST USED', 'STATUS'], ...rows.map((r) => [r.id, r.name, `${r.prefix}…`, r.created_at, r.last_used_at ?? 'never', r.revoked ? 'revoked' : 'active'])]));
      };
    case 'revoke': {
      const id = required(positionals[1], 'apikey revoke needs CLIENT_ID KEY_ID');
      return async (gatehouse, out) => {
        await findClient(gatehouse, clientId);
        if (!(await gatehouse.storage.apiKeys.revoke(clientId, id, gatehouse.clock()))) throw new Error(`no active API key ${id} for ${clientId}`);
        recordCliAction(gatehouse, 'api_key.revoked', { clientId, data: { api_key_id: id } });
        out.print({ revoked: id }, () => `revoked ${id}: it stops working at once`);
      };
    }
  }
}
