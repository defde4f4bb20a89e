import { parseArgs } from 'node:util';
import { describeGrants, revokeGrant } from '../../core/grant-records.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { recordCliAction } from '../audit-trail.ts';
import { argumentsOf, exactly, table, UsageError, type Output, type Run } from '../output.ts';
import { findClient } from './client-support.ts';
import { findUser } from './users.ts';

export const grantUsage = `gatehouse grant list [--user USER_ID|EMAIL] [--client CLIENT_ID] [--limit N] [--json]
                        what users authorized clients to do, newest first (default: the latest 100)
gatehouse grant revoke GRANT_ID [--json]   its refresh tokens stop working at once`;

/** As many as the admin API lists on a page. */
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

/** Grants, as the admin API's /admin/v1/grants lists and revokes them. */
export function grantCommand(args: string[]): Run {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'list': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { user: { type: 'string' }, client: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } } });
      exactly('grant list', positionals, []);
      const limit = values.limit === undefined ? DEFAULT_LIMIT : parseLimit(values.limit);
      return (gatehouse, out) => listGrants(gatehouse, out, { user: values.user, client: values.client, limit });
    }
    case 'revoke': {
      const [id] = argumentsOf('grant revoke', rest, ['GRANT_ID']) as [string];
      return async (gatehouse, out) => {
        const result = await revokeGrant(gatehouse.storage, id, gatehouse.clock());
        if (!result) throw new Error(`no grant ${id}`);
        const { grant, revoked } = result;
        if (revoked) recordCliAction(gatehouse, 'grant.revoked', { clientId: grant.clientId, userId: grant.userId ?? undefined, data: { grant_id: grant.id } });
        const described = (await describeGrants(gatehouse, [grant], gatehouse.clock(), gatehouse.config.tokens.refreshTokenMaxLifetimeSeconds))[0]!;
        out.print(described, () =>
          revoked
            ? `revoked ${grant.id} (client ${grant.clientId}, user ${grant.userId ?? '-'}): its refresh tokens stop working at once, and Gatehouse refuses its access tokens; APIs that verify tokens locally accept them until they expire`
            : `${grant.id} was revoked already, at ${described.revoked_at}: nothing changed`,
        );
      };
    }
    default:
      throw new UsageError(`unknown grant command "${sub ?? ''}"`);
  }
}

async function listGrants(gatehouse: Gatehouse, out: Output, options: { user: string | undefined; client: string | undefined; limit: number }): Promise<void> {
  // A user or client that is not there is a mistake to say, not an empty list: their grants went with them.
  const userId = options.user === undefined ? undefined : (await findUser(gatehouse, options.user)).id;
  const clientId = options.client === undefined ? undefined : (await findClient(gatehouse, options.client)).id;
  // One more than asked for, to tell whether there are more.
  const found = await gatehouse.storage.grants.list({ userId, clientId, limit: options.limit + 1 });
  const now = gatehouse.clock();
  const grants = await describeGrants(gatehouse, found.slice(0, options.limit), now, gatehouse.config.tokens.refreshTokenMaxLifetimeSeconds);
  out.print(grants, () =>
    [
      grants.length === 0 ? 'no grants' : table([['ID', 'CLIENT_ID', 'USER_ID', 'KIND', 'SCOPES', 'CREATED', 'STATUS'], ...grants.map((g) => [g.id, g.client_id, g.user_id ?? '-', g.kind, g.scopes.join(' ') || '-', g.created_at!, g.status])]),
      ...(found.length > options.limit ? [`(the latest ${options.limit}; there are more: --limit up to ${MAX_LIMIT}, or --user and --client)`] : []),
    ].join('\n'),
  );
}

function parseLimit(value: string): number {
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
  if (!(limit >= 1 && limit <= MAX_LIMIT)) throw new UsageError(`--limit must be a number from 1 to ${MAX_LIMIT}, not "${value}"`);
  return limit;
}
