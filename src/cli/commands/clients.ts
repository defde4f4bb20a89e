import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createClient, deleteClient, describeClient, rotateClientSecret, updateClient, ValidationError } from '../../core/applications.ts';
import { digestOf } from '../../core/tokens/opaque.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Client, JsonWebKeySet } from '../../storage/repositories.ts';
import { recordCliAction } from '../audit-trail.ts';
import { argumentsOf, isoTime, table, UsageError, type Output } from '../output.ts';

export const clientUsage = `gatehouse client create --name NAME [--type confidential|public] [--grant TYPE]... [--scope "a b"]
                        [--default-scope "a b"] [--redirect-uri URI]... [--post-logout-redirect-uri URI]...
                        [--base-url URL] [--description TEXT] [--admin] [--first-party] [--impersonation] [--resource-server]
                        [--jwks FILE] [--json]
gatehouse client set-jwks CLIENT_ID (FILE | --none) [--json]   public keys for private_key_jwt (RFC 7523)
gatehouse client list [--json]
gatehouse client show CLIENT_ID [--json]
gatehouse client delete CLIENT_ID [--json]
gatehouse client rotate-secret CLIENT_ID [--json]`;

export async function clientCommand(gatehouse: Gatehouse, args: string[], out: Output): Promise<void> {
  const [sub, ...rest] = args;
  const now = gatehouse.clock();
  switch (sub) {
    case 'create': {
      const { values } = parseArgs({
        args: rest,
        options: {
          name: { type: 'string' },
          description: { type: 'string' },
          type: { type: 'string', default: 'confidential' },
          grant: { type: 'string', multiple: true },
          scope: { type: 'string' },
          'default-scope': { type: 'string' },
          'redirect-uri': { type: 'string', multiple: true },
          'post-logout-redirect-uri': { type: 'string', multiple: true },
          'base-url': { type: 'string' },
          admin: { type: 'boolean', default: false },
          'first-party': { type: 'boolean', default: false },
          impersonation: { type: 'boolean', default: false },
          'resource-server': { type: 'boolean', default: false },
          jwks: { type: 'string' },
          json: { type: 'boolean' },
        },
      });
      if (!values.name) throw new UsageError('client create needs --name');
      const { client, secret } = await createClient(
        gatehouse,
        {
          name: values.name,
          description: values.description ?? '',
          type: values.type as Client['type'],
          grantTypes: values.grant ?? ['client_credentials'],
          scopes: words(values.scope),
          ...(values['default-scope'] !== undefined ? { defaultScopes: words(values['default-scope']) } : {}),
          redirectUris: values['redirect-uri'] ?? [],
          postLogoutRedirectUris: values['post-logout-redirect-uri'] ?? [],
          baseUrl: values['base-url'] ?? null,
          isAdmin: values.admin,
          firstParty: values['first-party'],
          allowImpersonation: values.impersonation,
          isResourceServer: values['resource-server'],
          ...(values.jwks !== undefined && { jwks: readJwks(values.jwks) }),
        },
        now,
      );
      recordCliAction(gatehouse, 'client.created', { clientId: client.id, data: { name: client.name, admin: client.isAdmin } });
      out.print(secret === undefined ? { client_id: client.id } : { client_id: client.id, client_secret: secret }, () =>
        [`client_id:     ${client.id}`, secret === undefined ? 'public client: no secret' : `client_secret: ${secret}   (shown once; store it now)`].join('\n'),
      );
      return;
    }
    case 'list': {
      argumentsOf('client list', rest, []);
      const clients = await gatehouse.storage.clients.list();
      out.print(clients.map(describeClient), () =>
        table([['CLIENT_ID', 'NAME', 'TYPE', 'GRANTS', 'FLAGS'], ...clients.map((c) => [c.id, c.name, c.type, c.grantTypes.join(','), flags(c)])]),
      );
      return;
    }
    case 'show': {
      const [id] = argumentsOf('client show', rest, ['CLIENT_ID']) as [string];
      const client = await gatehouse.storage.clients.find(id);
      if (!client) throw new Error(`no client ${id}`);
      const secrets = await gatehouse.storage.clients.listSecrets(client.id);
      const described = { ...describeClient(client), secrets: secrets.map((s) => ({ id: s.id, hint: `…${s.hint}`, created_at: isoTime(s.createdAt), expires_at: isoTime(s.expiresAt) })) };
      out.print(described, () => Object.entries(described).map(([k, v]) => `${k.padEnd(26)} ${typeof v === 'string' ? v : JSON.stringify(v)}`).join('\n'));
      return;
    }
    case 'delete': {
      const [id] = argumentsOf('client delete', rest, ['CLIENT_ID']) as [string];
      if (!(await deleteClient(gatehouse, id))) throw new Error(`no client ${id}`);
      recordCliAction(gatehouse, 'client.deleted', { clientId: id });
      out.print({ deleted: id }, () => `deleted ${id} with its secrets, grants and tokens`);
      return;
    }
    case 'rotate-secret': {
      const [id] = argumentsOf('client rotate-secret', rest, ['CLIENT_ID']) as [string];
      const client = await gatehouse.storage.clients.find(id);
      if (!client) throw new Error(`no client ${id}`);
      if (client.type === 'public') throw new Error(`${id} is a public client: it has no secret`);
      const replaced = await gatehouse.storage.clients.listSecrets(id);
      const secret = await rotateClientSecret(gatehouse, id, now);
      // Recorded as the admin API records the same steps: a secret added, and each old one deleted.
      const added = (await gatehouse.storage.clients.listSecrets(id)).find((s) => s.digest === digestOf(secret));
      recordCliAction(gatehouse, 'client_secret.created', { clientId: id, data: { secret_id: added?.id ?? null } });
      for (const old of replaced) recordCliAction(gatehouse, 'client_secret.deleted', { clientId: id, data: { secret_id: old.id } });
      out.print({ client_id: id, client_secret: secret }, () => `client_secret: ${secret}   (shown once; the previous secrets no longer work)`);
      return;
    }
    case 'set-jwks': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { none: { type: 'boolean', default: false }, json: { type: 'boolean' } } });
      const [id, file] = positionals;
      if (!id || (file === undefined) === !values.none) throw new UsageError('client set-jwks needs a CLIENT_ID and either a JWK Set FILE or --none');
      const updated = await updateClient(gatehouse, id, { jwks: file === undefined ? null : readJwks(file) }, now);
      if (!updated) throw new Error(`no client ${id}`);
      recordCliAction(gatehouse, 'client.updated', { clientId: id, data: { fields: ['jwks'] } });
      const count = updated.client.jwks?.keys.length ?? 0;
      out.print({ client_id: id, keys: count }, () => (count === 0 ? `${id} has no keys: private_key_jwt is off` : `${id} authenticates with private_key_jwt, ${count} key(s) registered`));
      return;
    }
    default:
      throw new UsageError(`unknown client command "${sub ?? ''}"`);
  }
}

const flags = (c: Client): string => [c.isAdmin && 'admin', c.firstParty && 'first-party', c.allowImpersonation && 'impersonation', c.isResourceServer && 'resource-server', c.jwks && 'private-key-jwt'].filter(Boolean).join(',') || '-';
/**
 * A JWK Set from a file; what it holds is checked when the client is saved. A file holding `null`
 * is refused here: to the core, null means "no keys", and only --none may say that.
 */
function readJwks(path: string): JsonWebKeySet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ValidationError('jwks', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ValidationError('jwks', `${path} is not JSON`);
  }
  if (parsed === null) throw new ValidationError('jwks', `${path} holds null, not a JWK Set: {"keys": [ … ]} (set-jwks --none removes a client's keys)`);
  return parsed as JsonWebKeySet;
}

const words = (value: string | undefined): string[] => (value ?? '').split(/[\s,]+/).filter(Boolean);

export function required(value: string | undefined, message: string): string {
  if (!value) throw new UsageError(message);
  return value;
}
