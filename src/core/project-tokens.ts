import type { Caller } from './callers.ts';
import { insufficientScope, invalidRequest, invalidScope } from './errors.ts';
import type { GrantServices } from './grants/services.ts';
import type { IssuedAccessToken } from './tokens/jwt.ts';

export interface ProjectTokenRequest {
  project: string;
  scopes: unknown;
  /** Epoch seconds. */
  expiresAt: number;
}

/**
 * A project id: unreserved characters (RFC 3986 §2.3), so it goes into a URI path as it is — but
 * not `.` or `..`, which in a path name no project but a step (§3.3), to an API that puts the id there.
 */
export const PROJECT_ID = /^(?!\.\.?$)[A-Za-z0-9._~-]{1,128}$/;

/**
 * The first of `scopes` that may not go into a project token for a holder of `held`, and why: not a
 * project scope, or not held. Each way of asking for a project token answers it with its own error.
 */
export function projectScopeRefusal(services: Pick<GrantServices, 'scopes'>, held: readonly string[], scopes: readonly string[]): { scope: string; reason: 'not_project' | 'not_held' } | undefined {
  for (const scope of scopes) {
    if (!services.scopes.definition(scope)?.project) return { scope, reason: 'not_project' };
    if (!held.includes(scope)) return { scope, reason: 'not_held' };
  }
  return undefined;
}

/**
 * A short-lived token bound to one project, for a browser viewer (DESIGN §1), so the caller's own
 * token never reaches the browser. Its scopes must be project scopes the caller holds; its
 * lifetime is capped by configuration; a project token cannot mint another.
 *
 * It ends no later than the credential it derives from, unless the application can renew that at
 * will (Caller.renewable: the reference flow, a 12-hour viewer token minted with a backend's
 * client-credentials token or a signed-in user's token). A token of a grant that ends with it, an
 * impersonation or delegation, or an API key with an expiry caps its lifetime, and the end of the
 * grant it derives from caps it always (the application cannot renew past that); and it names the
 * grant or API key it came from, and the access token (`derived_from`, with what that token was
 * derived from), so that revoking any of them ends it too.
 */
export async function issueProjectToken(services: GrantServices, caller: Caller, request: ProjectTokenRequest, now: number): Promise<IssuedAccessToken & { scopes: string[] }> {
  if (!PROJECT_ID.test(request.project)) throw invalidRequest('the project id is malformed');
  if (caller.project !== undefined) throw insufficientScope('a project token cannot create other tokens');
  if (!Array.isArray(request.scopes) || request.scopes.length === 0 || !request.scopes.every((s) => typeof s === 'string')) {
    throw invalidRequest('scopes must be a non-empty array of scope names');
  }
  const scopes = [...new Set(request.scopes as string[])];
  const refusal = projectScopeRefusal(services, caller.scopes, scopes);
  if (refusal?.reason === 'not_project') throw invalidScope(`the scope "${refusal.scope.slice(0, 64)}" cannot be put into a project token`);
  // RFC 6750 §3.1: "The request requires higher privileges than provided by the access token."
  if (refusal?.reason === 'not_held') throw insufficientScope(`the caller does not hold the scope "${refusal.scope}"`, refusal.scope);
  const maxTtl = services.config.projectTokens.maxTtlSeconds;
  if (!Number.isInteger(request.expiresAt) || request.expiresAt <= now) throw invalidRequest('expires_at must be in the future');
  if (request.expiresAt - now > maxTtl) throw invalidRequest(`expires_at may be at most ${maxTtl} seconds ahead`);

  const held = caller.renewable || caller.expiresAt === undefined ? request.expiresAt : Math.min(request.expiresAt, caller.expiresAt);
  const expiresAt = Math.min(held, caller.grantEndsAt ?? Number.POSITIVE_INFINITY);
  const extra = { project: request.project, ...(caller.act ? { act: caller.act } : {}) };
  const token = await services.accessTokens.issue({ sub: caller.sub, clientId: caller.clientId, scopes, grantId: caller.grantId, derivedFrom: caller.lineage, apiKeyIds: caller.apiKeyIds, extra }, now, expiresAt - now);
  services.audit.record({ at: now, kind: 'project_token.issued', outcome: 'success', clientId: caller.clientId, userId: caller.kind === 'user' ? caller.sub : null, data: { project: request.project, scopes, via: caller.kind } });
  return { ...token, scopes };
}

