import { grantEnd } from './tokens/refresh.ts';
import type { Storage } from '../storage/repositories.ts';
import type { Grant } from '../storage/repositories/grants.ts';
import type { ClientRegistry } from './clients.ts';

/**
 * Revokes a grant as an operator does, from the admin API or the command line: every refresh token
 * issued from it is refused at once (its grant is read with it), and Gatehouse's own endpoints
 * refuse its access tokens at once (RFC 7009 §2.1: revoking a grant invalidates the tokens based on
 * it; access tokens verified elsewhere stay valid until they expire). Undefined when there is no
 * such grant; `revoked` is false when it was revoked already, and nothing changed.
 */
export async function revokeGrant(storage: Pick<Storage, 'grants'>, grantId: string, now: number): Promise<{ grant: Grant; revoked: boolean } | undefined> {
  if (!(await storage.grants.find(grantId))) return undefined;
  const revoked = await storage.grants.revoke(grantId, now);
  const grant = await storage.grants.find(grantId);
  return grant && { grant, revoked };
}

/**
 * Why the token endpoint refuses every refresh of a grant neither revoked nor ended, for as long as
 * it lasts: its user is disabled (refreshTokenRefusal), or its client is suspended with its
 * developer's account (the registry does not find it, so it cannot authenticate). The grant works
 * again as it was once the account is enabled; a deleted user or client took its grants with it.
 */
type Suspension = 'user_disabled' | 'client_suspended';

/** Where describeGrants reads the grants' users and clients: the clients as the token endpoint finds them. */
export interface GrantHolders {
  storage: Pick<Storage, 'users'>;
  clients: Pick<ClientRegistry, 'get'>;
}

/**
 * `grants` as the admin API and the command line show them (describeGrant), each user and client
 * read once, and only for the grants that neither are revoked nor have ended.
 */
export async function describeGrants(holders: GrantHolders, grants: readonly Grant[], now: number, maxLifetimeSeconds: number) {
  const live = grants.filter((g) => g.revokedAt === null && grantEnd(g, maxLifetimeSeconds) > now);
  const userIds = [...new Set(live.flatMap((g) => (g.userId === null ? [] : [g.userId])))];
  const clientIds = [...new Set(live.map((g) => g.clientId))];
  const [users, clients] = await Promise.all([Promise.all(userIds.map((id) => holders.storage.users.findById(id))), Promise.all(clientIds.map((id) => holders.clients.get(id)))]);
  const disabledUsers = new Set(userIds.filter((_, at) => !users[at] || users[at].disabledAt !== null));
  const suspendedClients = new Set(clientIds.filter((_, at) => !clients[at]));
  const suspensionOf = (g: Grant): Suspension | undefined =>
    g.userId !== null && disabledUsers.has(g.userId) ? 'user_disabled' : suspendedClients.has(g.clientId) ? 'client_suspended' : undefined;
  return grants.map((g) => describeGrant(g, now, maxLifetimeSeconds, suspensionOf(g)));
}

/**
 * A grant as the admin API and the command line show it (snake_case, times in ISO 8601), with the
 * state the token endpoint acts on at `now` (refreshTokenRefusal): `revoked`, `ended` at its end
 * (`ends_at`: its own end or its maximum lifetime, whichever comes first; null when it has neither),
 * though a grant past its maximum lifetime has nothing written to it, its `suspension` while its
 * user or client is refused, or `active`.
 */
function describeGrant(g: Grant, now: number, maxLifetimeSeconds: number, suspension: Suspension | undefined) {
  const iso = (epochSeconds: number | null) => (epochSeconds === null ? null : new Date(epochSeconds * 1000).toISOString());
  const end = grantEnd(g, maxLifetimeSeconds);
  return {
    id: g.id,
    client_id: g.clientId,
    user_id: g.userId,
    kind: g.kind,
    scopes: g.scopes,
    created_at: iso(g.createdAt),
    expires_at: iso(g.expiresAt),
    revoked_at: iso(g.revokedAt),
    ends_at: Number.isFinite(end) ? iso(end) : null,
    status: g.revokedAt !== null ? 'revoked' : end <= now ? 'ended' : (suspension ?? 'active'),
  } as const;
}
