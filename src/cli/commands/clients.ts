import { parseArgs } from 'node:util';
import { createClient, deleteClient, describeClient, rotateClientSecret, updateClient } from '../../core/applications.ts';
import type { ClientInput } from '../../core/client-validation.ts';
import { digestOf } from '../../core/tokens/opaque.ts';
import type { Client } from '../../storage/repositories/clients.ts';
import { recordCliAction } from '../audit-trail.ts';
import { nextPageLine, pagedListOptions, readPage } from '../paging.ts';
import { argumentsOf, table, UsageError, type Run } from '../output.ts';
import { clientSecretCommand, clientSecretUsage } from './client-secrets.ts';
import { findClient, printClient, readJwks, words } from './client-support.ts';
import { clientUpdateCommand, clientUpdateUsage } from './client-update.ts';

export const clientUsage = `gatehouse client create --name NAME [--type confidential|public] [--grant TYPE]... [--scope "a b"]
                        [--default-scope "a b"] [--redirect-uri URI]... [--post-logout-redirect-uri URI]...
                        [--base-url URL] [--description TEXT] [--admin] [--first-party] [--impersonation] [--resource-server]
                        [--jwks FILE] [--backchannel-logout-uri URI] [--backchannel-logout-session-required] [--json]
${clientUpdateUsage}
gatehouse client set-jwks CLIENT_ID (FILE | --none) [--json]   public keys for private_key_jwt (RFC 7523)
gatehouse client list [--limit N] [--cursor CURSOR] [--json]
                        oldest first, 100 at a time unless --limit says (at most 1000); the next page's --cursor is printed after
gatehouse client show CLIENT_ID [--json]
gatehouse client delete CLIENT_ID [--json]
gatehouse client rotate-secret CLIENT_ID [--json]   one new secret in place of all the others
${clientSecretUsage}`;

export function clientCommand(args: string[]): Run {
  const [sub, ...rest] = args;
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
          'backchannel-logout-uri': { type: 'string' },
          'backchannel-logout-session-required': { type: 'boolean', default: false },
          json: { type: 'boolean' },
        },
      });
      const name = required(values.name, 'client create needs --name');
      const input: ClientInput = {
        name,
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
        backchannelLogoutUri: values['backchannel-logout-uri'] ?? null,
        backchannelLogoutSessionRequired: values['backchannel-logout-session-required'],
      };
      return async (gatehouse, out) => {
        const { client, secret } = await createClient(gatehouse, input, gatehouse.clock());
        recordCliAction(gatehouse, 'client.created', { clientId: client.id, data: { name: client.name, admin: client.isAdmin } });
        out.print(secret === undefined ? { client_id: client.id } : { client_id: client.id, client_secret: secret }, () =>
          [`client_id:     ${client.id}`, secret === undefined ? 'public client: no secret' : `client_secret: ${secret}   (shown once; store it now)`].join('\n'),
        );
      };
    }
    case 'update':
      return clientUpdateCommand(rest);
    case 'secret':
      return clientSecretCommand(rest);
    case 'list': {
      const { page } = pagedListOptions('client list', 'clients', rest);
      return async (gatehouse, out) => {
        const { records: clients, next } = await readPage('clients', page, (read) => gatehouse.storage.clients.list(read));
        out.print(clients.map(describeClient), () =>
          table([['CLIENT_ID', 'NAME', 'TYPE', 'GRANTS', 'FLAGS'], ...clients.map((c) => [c.id, c.name, c.type, c.grantTypes.join(','), flags(c)])]),
        );
        // After the page, for people; on stderr with --json, which stays the array of the page's records.
        if (next !== null) (out.json ? process.stderr : process.stdout).write(`${nextPageLine('client list', page, next)}\n`);
      };
    }
    case 'show': {
      const [id] = argumentsOf('client show', rest, ['CLIENT_ID']) as [string];
      return async (gatehouse, out) => printClient(gatehouse, await findClient(gatehouse, id), out);
    }
    case 'delete': {
      const [id] = argumentsOf('client delete', rest, ['CLIENT_ID']) as [string];
      return async (gatehouse, out) => {
        if (!(await deleteClient(gatehouse, id))) throw new Error(`no client ${id}`);
        recordCliAction(gatehouse, 'client.deleted', { clientId: id });
        out.print({ deleted: id }, () => `deleted ${id} with its secrets, grants and tokens`);
      };
    }
    case 'rotate-secret': {
      const [id] = argumentsOf('client rotate-secret', rest, ['CLIENT_ID']) as [string];
      return async (gatehouse, out) => {
        const client = await findClient(gatehouse, id);
        if (client.type === 'public') throw new Error(`${id} is a public client: it has no secret`);
        const replaced = await gatehouse.storage.clients.listSecrets(id);
        const secret = await rotateClientSecret(gatehouse, id, gatehouse.clock());
        // Recorded as the admin API records the same steps: a secret added, and each old one deleted.
        const added = (await gatehouse.storage.clients.listSecrets(id)).find((s) => s.digest === digestOf(secret));
        recordCliAction(gatehouse, 'client_secret.created', { clientId: id, data: { secret_id: added?.id ?? null } });
        for (const old of replaced) recordCliAction(gatehouse, 'client_secret.deleted', { clientId: id, data: { secret_id: old.id } });
        out.print({ client_id: id, client_secret: secret }, () => `client_secret: ${secret}   (shown once; the previous secrets no longer work)`);
      };
    }
    case 'set-jwks': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { none: { type: 'boolean', default: false }, json: { type: 'boolean' } } });
      const [id, file] = positionals;
      if (!id || positionals.length > 2 || (file === undefined) === !values.none) throw new UsageError('client set-jwks needs a CLIENT_ID and either a JWK Set FILE or --none');
      const jwks = file === undefined ? null : readJwks(file);
      return async (gatehouse, out) => {
        const updated = await updateClient(gatehouse, id, { jwks }, gatehouse.clock());
        if (!updated) throw new Error(`no client ${id}`);
        recordCliAction(gatehouse, 'client.updated', { clientId: id, data: { fields: ['jwks'] } });
        const count = updated.client.jwks?.keys.length ?? 0;
        out.print({ client_id: id, keys: count }, () => (count === 0 ? `${id} has no keys: private_key_jwt is off` : `${id} authenticates with private_key_jwt, ${count} key(s) registered`));
      };
    }
    default:
      throw new UsageError(`unknown client command "${sub ?? ''}"`);
  }
}

const flags = (c: Client): string => [c.isAdmin && 'admin', c.firstParty && 'first-party', c.allowImpersonation && 'impersonation', c.isResourceServer && 'resource-server', c.jwks && 'private-key-jwt'].filter(Boolean).join(',') || '-';

export function required(value: string | undefined, message: string): string {
  if (!value) throw new UsageError(message);
  return value;
}
