import { authenticateCaller, type Caller } from '../callers.ts';
import { invalidGrant, invalidRequest, invalidScope, OAuthError, unauthorizedClient } from '../errors.ts';
import { issueProjectToken, PROJECT_ID } from '../project-tokens.ts';
import type { GrantContext, GrantHandler } from '../token-endpoint.ts';
import type { GrantServices } from './services.ts';

const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const API_KEY_TYPE = 'urn:gatehouse:token-type:api_key';

type Exchange =
  /** A project token derived from the subject token (DESIGN §1, the standard way to ask for one). */
  | { kind: 'project'; subject: Caller; project: string; scopes: string[] }
  /** The client acts for a user: `sub` is the user, `act` names the client (RFC 8693 §4.1). */
  | { kind: 'delegation' | 'impersonation'; userId: string; scopes: string[]; subjectScopes: string[] | undefined };

/**
 * RFC 8693 token exchange, for three things:
 * - a project token: `subject_token` = the caller's token, `resource` or `audience` = `project:<id>`
 *   (or `<issuer>/projects/<id>`);
 * - delegation: `subject_token` = a user's access token, `actor_token` = the client's own token;
 * - impersonation by a trusted back office: `requested_subject` = a user id.
 * Delegation and impersonation need the operator-granted impersonation privilege; every exchange
 * is audited.
 */
export const tokenExchangeGrant: GrantHandler<Exchange> = {
  grantType: 'urn:ietf:params:oauth:grant-type:token-exchange',
  parameters: ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_subject', 'requested_token_type', 'resource', 'audience'],
  allowsPublicClients: false,

  async validate(context) {
    const { client, params, now, services } = context;
    if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw invalidRequest('only access tokens can be requested (requested_token_type)');
    }
    const project = projectOf(params.resource ?? params.audience, services.config.issuer);
    const requested = services.scopes.parse(params.scope);

    if (project !== undefined) {
      const subject = await subjectCaller(context, 'subject_token');
      if (subject.clientId !== client.id) throw invalidGrant('the subject token was not issued to this client');
      const scopes = requested ?? subject.scopes.filter((s) => services.scopes.definition(s)?.project);
      return { kind: 'project', subject, project, scopes };
    }

    if (!client.allowImpersonation) {
      audit(services, context, 'failure', { reason: 'no impersonation privilege' });
      throw unauthorizedClient('the client is not allowed to act on behalf of users');
    }
    if (params.requested_subject !== undefined) {
      const user = params.requested_subject.length <= 64 ? await services.storage.users.findById(params.requested_subject) : undefined;
      if (!user || user.disabledAt !== null) throw invalidGrant('the requested subject is not an active user');
      if (params.subject_token !== undefined) {
        const own = await subjectCaller(context, 'subject_token');
        if (own.clientId !== client.id || own.kind === 'user') throw invalidGrant('with requested_subject, the subject token must be the client\'s own');
      }
      return { kind: 'impersonation', userId: user.id, scopes: scopesFor(services, client, requested, undefined), subjectScopes: undefined };
    }

    const subject = await subjectCaller(context, 'subject_token');
    if (subject.kind !== 'user') throw invalidGrant('the subject token must be a user\'s access token');
    if (params.actor_token === undefined) throw invalidRequest('actor_token is required for delegation');
    const actor = await subjectCaller(context, 'actor_token');
    if (actor.clientId !== client.id || actor.kind === 'user') throw invalidGrant('the actor token must be the client\'s own token');
    return { kind: 'delegation', userId: subject.sub, scopes: scopesFor(services, client, requested, subject.scopes), subjectScopes: subject.scopes };
  },

  async issue(context, exchange) {
    const { client, now, services } = context;
    if (exchange.kind === 'project') {
      const ttl = services.config.projectTokens.defaultTtlSeconds;
      const expiresAt = Math.min(now + ttl, exchange.subject.expiresAt ?? now + ttl);
      const token = await issueProjectToken(services, exchange.subject, { project: exchange.project, scopes: exchange.scopes, expiresAt }, now);
      audit(services, context, 'success', { kind: 'project', project: exchange.project, scopes: token.scopes });
      return { access_token: token.token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: token.expiresIn, scope: token.scopes.join(' ') };
    }
    const token = await services.accessTokens.issue({ sub: exchange.userId, clientId: client.id, scopes: exchange.scopes, extra: { act: { sub: client.id, client_id: client.id } } }, now);
    audit(services, context, 'success', { kind: exchange.kind, subject: exchange.userId, scopes: exchange.scopes, jti: token.jti });
    return { access_token: token.token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: token.expiresIn, scope: exchange.scopes.join(' ') };
  },
};

async function subjectCaller({ params, now, services }: GrantContext, name: 'subject_token' | 'actor_token'): Promise<Caller> {
  const token = params[name];
  const type = params[`${name}_type`];
  if (!token) throw invalidRequest(`${name} is required`);
  if (type !== ACCESS_TOKEN_TYPE && type !== API_KEY_TYPE) throw invalidRequest(`${name}_type must be ${ACCESS_TOKEN_TYPE} or ${API_KEY_TYPE}`);
  try {
    return await authenticateCaller(services, `${type === API_KEY_TYPE ? 'ApiKey' : 'Bearer'} ${token}`, now);
  } catch (error) {
    if (error instanceof OAuthError) throw invalidGrant(`the ${name} is invalid, expired or revoked`);
    throw error;
  }
}

function scopesFor(services: GrantServices, client: GrantContext['client'], requested: string[] | undefined, ceiling: string[] | undefined): string[] {
  const scopes = services.scopes.resolve({ requested: requested ?? ceiling, client, userPresent: true, ...(ceiling ? { ceiling } : {}) });
  if (scopes.length === 0) throw invalidScope('no scope to grant');
  return scopes;
}

/** `project:<id>` or `<issuer>/projects/<id>`. */
function projectOf(value: string | undefined, issuer: string): string | undefined {
  if (value === undefined) return undefined;
  const id = value.startsWith('project:') ? value.slice(8) : value.startsWith(`${issuer}/projects/`) ? value.slice(issuer.length + 10) : undefined;
  if (id === undefined) throw invalidRequest('resource and audience must name a project: project:<id>');
  if (!PROJECT_ID.test(id)) throw invalidRequest('the project id is malformed');
  return id;
}

function audit(services: GrantServices, { client, now }: GrantContext, outcome: 'success' | 'failure', data: Record<string, unknown>): void {
  services.audit.record({ at: now, kind: 'token.exchanged', outcome, clientId: client.id, userId: typeof data.subject === 'string' ? data.subject : null, data });
}
