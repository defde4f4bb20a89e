import { grantEnd } from './tokens/refresh.ts';
import type { Grant, Storage } from '../storage/repositories.ts';

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
 * A grant as the admin API and the command line show it (snake_case, times in ISO 8601), with the
 * state the token endpoint acts on at `now` (refreshTokenRefusal): `revoked`, `ended` at its end
 * (`ends_at`: its own end or its maximum lifetime, whichever comes first; null when it has neither),
 * though a grant past its maximum lifetime has nothing written to it, or `active`.
 */
export function describeGrant(g: Grant, now: number, maxLifetimeSeconds: number) {
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
    status: g.revokedAt !== null ? 'revoked' : end <= now ? 'ended' : 'active',
  } as const;
}
