import { randomUUID } from 'node:crypto';
import { authenticateCaller, type Caller } from '../callers.ts';
import { invalidGrant, invalidRequest, invalidScope, invalidTarget, OAuthError, unauthorizedClient } from '../errors.ts';
import { issueProjectToken, PROJECT_ID, projectScopeRefusal } from '../project-tokens.ts';
import type { GrantContext, GrantHandler } from '../token-endpoint.ts';
import { accessTokenTtl } from '../tokens/refresh.ts';
import type { GrantServices } from './services.ts';

const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const API_KEY_TYPE = 'urn:gatehouse:token-type:api_key';

/**
 * RFC 8693 §4.1 lets delegation chains nest `act` claims without end; past this many actors a
 * subject token is refused, so a token cannot grow with every exchange.
 */
export const MAX_ACTOR_DEPTH = 5;

/** The `act` claim (RFC 8693 §4.1): the current actor, with the prior ones nested in `act`. */
type ActClaim = { sub: string; client_id: string; act?: Record<string, unknown> };

type Exchange =
  /** A project token derived from the subject token (DESIGN §1, the standard way to ask for one). */
  | { kind: 'project'; subject: Caller; project: string; scopes: string[]; expiresAt: number }
  /** The client acts for a user: `sub` is the user, `act` names the client (RFC 8693 §4.1). */
  | {
      kind: 'delegation' | 'impersonation';
      userId: string;
      scopes: string[];
      act: ActClaim;
      expiresAt: number | undefined;
      grantId: string | undefined;
      /** The access tokens it is exchanged for, and what they derive from (Caller.lineage): revoking any ends it. */
      derivedFrom: string[];
      /** The API keys sent as actor or subject token, and those the subject token derives from: revoking any ends it, as it ends the project tokens minted with it. */
      apiKeyIds: string[];
    };

/**
 * RFC 8693 token exchange, for three things:
 * - a project token: `subject_token` = the caller's token, `resource` or `audience` = `project:<id>`
 *   (or `<issuer>/projects/<id>`);
 * - delegation: `subject_token` = a user's access token, `actor_token` = the client's own token;
 * - impersonation by a trusted back office: `requested_subject` = a user id.
 * Delegation and impersonation need the operator-granted impersonation privilege; every exchange
 * is audited. Every refusal happens in `validate`, so a refused request issues and stores nothing.
 *
 * A subject or actor token that cannot be used (invalid, of a project, of a user no longer active,
 * of a deleted client) is `invalid_grant` throughout: RFC 8693 §2.2.2 names `invalid_request` for
 * such tokens, but in this grant they play the part RFC 6749 §5.2 gives the authorization grant
 * ("invalid, expired, revoked, … or was issued to another client"), and one code for all of them
 * keeps the refusals of this grant alike.
 */
export const tokenExchangeGrant: GrantHandler<Exchange> = {
  grantType: 'urn:ietf:params:oauth:grant-type:token-exchange',
  parameters: ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_subject', 'requested_token_type', 'resource', 'audience'],
  targetParameters: ['resource', 'audience'],
  allowsPublicClients: false,

  async validate(context) {
    const { client, params, services } = context;
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw invalidRequest('only access tokens can be requested (requested_token_type)');
    }
    // RFC 8693 §2.1: actor_token_type is "REQUIRED when the actor_token parameter is present in the
    // request but MUST NOT be included otherwise."
    if (params.actor_token_type !== undefined && params.actor_token === undefined) throw invalidRequest('actor_token_type was sent without actor_token');
    const project = projectTarget(params.resource, params.audience, services.config.issuer);
    const requested = services.scopes.parse(params.scope);
    if (project !== undefined) {
      // A project token is minted for the subject token's own subject: a requested subject or an
      // actor would be quietly left out of the token the client believes it asked for.
      for (const name of ['requested_subject', 'actor_token'] as const) {
        if (params[name] !== undefined) throw invalidRequest(`${name} has no part in a project token exchange, which is for the subject token's own subject`);
      }
      return validateProjectToken(context, project, requested);
    }

    if (!client.allowImpersonation) {
      audit(services, context, 'failure', { reason: 'no impersonation privilege' });
      throw unauthorizedClient('the client is not allowed to act on behalf of users');
    }
    if (params.requested_subject !== undefined) return validateImpersonation(context, requested);
    return validateDelegation(context, requested);
  },

  async issue(context, exchange) {
    const { client, now, services } = context;
    if (exchange.kind === 'project') {
      const token = await issueProjectToken(services, exchange.subject, { project: exchange.project, scopes: exchange.scopes, expiresAt: exchange.expiresAt }, now);
      audit(services, context, 'success', { kind: 'project', project: exchange.project, scopes: token.scopes });
      return { access_token: token.token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: token.expiresIn, scope: token.scopes.join(' ') };
    }
    // A delegated token ends when its subject token does (which ends with its grant): exchanging
    // again cannot stretch the user's authorization. An impersonation's grant is made with its token.
    const ttl =
      exchange.kind === 'impersonation'
        ? accessTokenTtl({ createdAt: now, expiresAt: null }, now, services.config.tokens)
        : Math.min(services.config.tokens.accessTokenTtlSeconds, (exchange.expiresAt ?? Number.POSITIVE_INFINITY) - now);
    // An impersonation derives from no grant of the user's, so it is given one of its own, ending
    // with its one token as a password grant without refresh token does: the operator finds it
    // among the user's grants and can revoke it, and what is derived from the token (project
    // tokens, delegation) names it and ends with it.
    const grantId = exchange.kind === 'impersonation' ? randomUUID() : exchange.grantId;
    if (exchange.kind === 'impersonation') {
      // Stored before the token is signed: a user deleted since validation gets no token.
      const stored = await services.storage.grants.create({ id: grantId!, clientId: client.id, userId: exchange.userId, kind: 'impersonation', scopes: exchange.scopes, authTime: null, createdAt: now, expiresAt: now + ttl, revokedAt: null });
      if (!stored) throw invalidGrant('the requested subject is not an active user');
    }
    // RFC 7009 §2.1: what is exchanged for a token (or API key) ends when that token is revoked, as it ends with its grant.
    const token = await services.accessTokens.issue({ sub: exchange.userId, clientId: client.id, scopes: exchange.scopes, grantId, derivedFrom: exchange.derivedFrom, apiKeyIds: exchange.apiKeyIds, extra: { act: exchange.act } }, now, ttl);
    audit(services, context, 'success', { kind: exchange.kind, subject: exchange.userId, scopes: exchange.scopes, jti: token.jti, ...(grantId !== undefined ? { grant_id: grantId } : {}) });
    return { access_token: token.token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: token.expiresIn, scope: exchange.scopes.join(' ') };
  },
};

/**
 * Refused here, before anything is issued, with the token endpoint's errors (RFC 6749 §5.2: 400
 * `invalid_scope`), where `POST /projects/…` answers a resource server's 403 for the same rules.
 */
async function validateProjectToken(context: GrantContext, project: string, requested: string[] | undefined): Promise<Exchange> {
  const { client, now, services } = context;
  const subject = await subjectCaller(context, 'subject_token');
  if (subject.clientId !== client.id) throw invalidGrant('the subject token was not issued to this client');
  const scopes = requested ?? subject.scopes.filter((s) => services.scopes.definition(s)?.project);
  if (scopes.length === 0) throw invalidScope('the subject token holds no scope that can be put into a project token');
  const refusal = projectScopeRefusal(services, subject.scopes, scopes);
  if (refusal?.reason === 'not_project') throw invalidScope(`the scope "${refusal.scope.slice(0, 64)}" cannot be put into a project token`);
  if (refusal?.reason === 'not_held') throw invalidScope(`the subject token does not hold the scope "${refusal.scope.slice(0, 64)}"`);
  const { defaultTtlSeconds, maxTtlSeconds } = services.config.projectTokens;
  const expiresAt = Math.min(now + Math.min(defaultTtlSeconds, maxTtlSeconds), subject.expiresAt ?? Number.POSITIVE_INFINITY);
  return { kind: 'project', subject, project, scopes, expiresAt };
}

async function validateImpersonation(context: GrantContext, requested: string[] | undefined): Promise<Exchange> {
  const { client, params, services } = context;
  const requestedSubject = params.requested_subject!;
  // The client acts here on its own authority, shown by its authentication (and, if sent, its own
  // token as subject_token): an actor token would name an actor the token could not record.
  if (params.actor_token !== undefined) throw invalidRequest('actor_token has no part in impersonation (requested_subject); the client\'s own token goes in subject_token');
  const user = requestedSubject.length <= 64 ? await services.storage.users.findById(requestedSubject) : undefined;
  if (!user || user.disabledAt !== null) throw invalidGrant('the requested subject is not an active user');
  const own = params.subject_token === undefined ? undefined : await subjectCaller(context, 'subject_token');
  if (own && (own.clientId !== client.id || own.kind === 'user')) throw invalidGrant('with requested_subject, the subject token must be the client\'s own');
  return {
    kind: 'impersonation',
    userId: user.id,
    scopes: scopesFor(services, client, requested, undefined),
    act: actClaim(client.id, undefined),
    expiresAt: undefined,
    grantId: undefined,
    derivedFrom: own?.lineage ?? [],
    apiKeyIds: own?.apiKeyIds ?? [],
  };
}

async function validateDelegation(context: GrantContext, requested: string[] | undefined): Promise<Exchange> {
  const { client, params, services } = context;
  const subject = await subjectCaller(context, 'subject_token');
  if (subject.kind !== 'user') throw invalidGrant('the subject token must be a user\'s access token');
  if (params.actor_token === undefined) throw invalidRequest('actor_token is required for delegation');
  const actor = await subjectCaller(context, 'actor_token');
  if (actor.clientId !== client.id || actor.kind === 'user') throw invalidGrant('the actor token must be the client\'s own token');
  const act = actClaim(client.id, subject.act);
  // Like its lifetime, its grant is the subject token's: revoking the user's grant stops the delegated token too.
  return {
    kind: 'delegation',
    userId: subject.sub,
    scopes: scopesFor(services, client, requested, subject.scopes),
    act,
    expiresAt: subject.expiresAt,
    grantId: subject.grantId,
    derivedFrom: [...new Set([...subject.lineage, ...actor.lineage])],
    apiKeyIds: [...new Set([...actor.apiKeyIds, ...subject.apiKeyIds])],
  };
}

async function subjectCaller({ params, now, services }: GrantContext, name: 'subject_token' | 'actor_token'): Promise<Caller> {
  const token = params[name];
  const type = params[`${name}_type`];
  if (!token) throw invalidRequest(`${name} is required`);
  if (type !== ACCESS_TOKEN_TYPE && type !== API_KEY_TYPE) throw invalidRequest(`${name}_type must be ${ACCESS_TOKEN_TYPE} or ${API_KEY_TYPE}`);
  let caller: Caller;
  try {
    caller = await authenticateCaller(services, `${type === API_KEY_TYPE ? 'ApiKey' : 'Bearer'} ${token}`, now);
  } catch (error) {
    if (error instanceof OAuthError) throw invalidGrant(`the ${name} is invalid, expired or revoked`);
    throw error;
  }
  // authenticateCaller has refused a token whose client or user is gone or disabled: an access
  // token outlives them by up to its lifetime (DESIGN §3), but nothing new is derived from it.
  // DESIGN §1: a project token is for a browser viewer and mints nothing, whatever the exchange
  // (delegating one would even shed its project binding).
  if (caller.project !== undefined) throw invalidGrant(`the ${name} is a project token, which cannot be exchanged`);
  return caller;
}

/**
 * RFC 8693 §4.1: "A chain of delegation can be expressed by nesting one act claim within another.
 * The outermost act claim represents the current actor while nested act claims represent prior
 * actors." Bounded by MAX_ACTOR_DEPTH.
 */
function actClaim(clientId: string, prior: Record<string, unknown> | undefined): ActClaim {
  if (prior === undefined) return { sub: clientId, client_id: clientId };
  let depth = 0;
  for (let actor: unknown = prior; typeof actor === 'object' && actor !== null && depth < MAX_ACTOR_DEPTH; actor = (actor as Record<string, unknown>).act) depth++;
  if (depth >= MAX_ACTOR_DEPTH) throw invalidGrant(`the subject token has passed through ${MAX_ACTOR_DEPTH} actors already and cannot be delegated further`);
  return { sub: clientId, client_id: clientId, act: prior };
}

function scopesFor(services: GrantServices, client: GrantContext['client'], requested: string[] | undefined, ceiling: string[] | undefined): string[] {
  const scopes = services.scopes.resolve({ requested: requested ?? ceiling, client, userPresent: true, ...(ceiling ? { ceiling } : {}) });
  if (scopes.length === 0) throw invalidScope('no scope to grant');
  return scopes;
}

/**
 * The project named by `resource` (RFC 8707) and `audience` (RFC 8693 §2.1); undefined when
 * neither is given. Both may be given only if they name the same project: quietly preferring one
 * would issue a token for a target the client did not mean.
 */
function projectTarget(resource: string | undefined, audience: string | undefined, issuer: string): string | undefined {
  const fromResource = resource === undefined ? undefined : projectOf(resource, 'resource', issuer);
  const fromAudience = audience === undefined ? undefined : projectOf(audience, 'audience', issuer);
  if (fromResource !== undefined && fromAudience !== undefined && fromResource !== fromAudience) {
    throw invalidTarget('resource and audience name different projects');
  }
  return fromResource ?? fromAudience;
}

/** `project:<id>` or `<issuer>/projects/<id>`: the only targets this server issues exchanged tokens for. */
function projectOf(value: string, name: 'resource' | 'audience', issuer: string): string {
  const id = value.startsWith('project:') ? value.slice(8) : value.startsWith(`${issuer}/projects/`) ? value.slice(issuer.length + 10) : undefined;
  if (id === undefined) throw invalidTarget(`${name} must name a project: project:<id>`);
  if (!PROJECT_ID.test(id)) throw invalidTarget(`the project id in ${name} is malformed`);
  return id;
}

function audit(services: GrantServices, { client, now }: GrantContext, outcome: 'success' | 'failure', data: Record<string, unknown>): void {
  services.audit.record({ at: now, kind: 'token.exchanged', outcome, clientId: client.id, userId: typeof data.subject === 'string' ? data.subject : null, data });
}
