import { parseArgs } from 'node:util';
import { parseIsoInstant } from '../../core/instants.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { recordCliAction } from '../audit-trail.ts';
import { isoTime, table, UsageError, type Output } from '../output.ts';
import { required } from './clients.ts';

export const apiKeyUsage = `gatehouse apikey create CLIENT_ID --name NAME [--scope "a b"] [--expires-at ISO] [--json]
gatehouse apikey list CLIENT_ID [--json]
gatehouse apikey revoke CLIENT_ID KEY_ID [--json]`;

export async function apiKeyCommand(gatehouse: Gatehouse, args: string[], out: Output): Promise<void> {
  const [sub, ...rest] = args;
  const now = gatehouse.clock();
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { name: { type: 'string' }, scope: { type: 'string' }, 'expires-at': { type: 'string' }, json: { type: 'boolean' } },
  });
  const clientId = required(positionals[0], `apikey ${sub ?? ''} needs a CLIENT_ID`);
  // Only create takes options besides --json, and only revoke a second argument: anything else is a mistake, not ignored.
  const expected = sub === 'revoke' ? 2 : 1;
  if (positionals.length > expected) throw new UsageError(`apikey ${sub ?? ''} takes ${expected === 2 ? 'CLIENT_ID KEY_ID' : 'one CLIENT_ID'}, not also "${positionals[expected]}"`);
  const misplaced = sub === 'create' ? undefined : (['name', 'scope', 'expires-at'] as const).find((option) => values[option] !== undefined);
  if (misplaced !== undefined) throw new UsageError(`apikey ${sub ?? ''} takes no --${misplaced}`);
  const client = await gatehouse.storage.clients.find(clientId);
  if (!client) throw new Error(`no client ${clientId}`);
  switch (sub) {
    case 'create': {
      if (!values.name) throw new UsageError('apikey create needs --name');
      let expiresAt: number | null = null;
      if (values['expires-at'] !== undefined) {
        expiresAt = parseIsoInstant(values['expires-at']) ?? null;
        if (expiresAt === null) throw new UsageError('--expires-at must be an ISO 8601 date-time');
      }
      const scopes = values.scope?.split(/[\s,]+/).filter(Boolean);
      const { key, value } = await gatehouse.apiKeys.create(client, { name: values.name, scopes, expiresAt }, now);
      recordCliAction(gatehouse, 'api_key.created', { clientId, data: { api_key_id: key.id } });
      out.print({ id: key.id, api_key: value, scopes: key.scopes, expires_at: key.expiresAt === null ? null : isoTime(key.expiresAt) }, () =>
        [`id:      ${key.id}`, `api_key: ${value}   (shown once; store it now)`, `scopes:  ${key.scopes.join(' ')}`].join('\n'),
      );
      return;
    }
    case 'list': {
      const keys = await gatehouse.storage.apiKeys.listForClient(clientId);
      const rows = keys.map((k) => ({
        id: k.id,
        name: k.name,
        prefix: k.prefix,
        scopes: k.scopes,
        created_at: isoTime(k.createdAt),
        expires_at: k.expiresAt === null ? null : isoTime(k.expiresAt),
        last_used_at: k.lastUsedAt === null ? null : isoTime(k.lastUsedAt),
        revoked: k.revokedAt !== null,
      }));
      out.print(rows, () => table([['ID', 'NAME', 'PREFIX', 'CREATED', 'LAST USED', 'STATUS'], ...rows.map((r) => [r.id, r.name, `${r.prefix}…`, r.created_at, r.last_used_at ?? 'never', r.revoked ? 'revoked' : 'active'])]));
      return;
    }
    case 'revoke': {
      const id = required(positionals[1], 'apikey revoke needs CLIENT_ID KEY_ID');
      if (!(await gatehouse.storage.apiKeys.revoke(clientId, id, now))) throw new Error(`no active API key ${id} for ${clientId}`);
      recordCliAction(gatehouse, 'api_key.revoked', { clientId, data: { api_key_id: id } });
      out.print({ revoked: id }, () => `revoked ${id}: it stops working at once`);
      return;
    }
    default:
      throw new UsageError(`unknown apikey command "${sub ?? ''}"`);
  }
}
