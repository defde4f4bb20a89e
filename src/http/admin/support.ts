import type { FastifyRequest } from 'fastify';
import { ClientChangedError } from '../../core/applications.ts';
import { insufficientScope } from '../../core/errors.ts';
import { parseIsoInstant } from '../../core/instants.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Client, ClientPowers } from '../../storage/repositories/clients.ts';
import { invalidField, notFound, ProblemError, type FieldProblem } from './problems.ts';

export type AdminScope = 'admin:clients' | 'admin:users' | 'admin:tokens';

/** What the OpenAPI document says about a route, and the scope its callers need. */
export interface AdminOperation {
  /** The admin scope a caller's token must hold; null for the public documentation routes. */
  scope: AdminScope | null;
  tag: string;
  operationId: string;
  summary: string;
  description?: string;
  /** Problem statuses worth documenting beyond the ones every operation of its shape can answer. */
  problems?: number[];
  /** The success response of a route without a response schema (the documentation routes), and the schema of its body. */
  produces?: { status: number; description: string; contentType: string; schema: Record<string, unknown> };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    adminOperation?: AdminOperation;
  }
  interface FastifyRequest {
    /** The admin client whose token the admin API accepted for this request. */
    adminClientId?: string;
    /** The scopes that token holds: its own that its client still holds. */
    adminScopes?: string[];
  }
}

/**
 * The options every admin route shares: its operation. A GET route answers HEAD too (RFC 9110
 * §9.3.2), with the same checks; the document lists the GET only.
 */
export function operation(tag: string, scope: AdminScope | null, operationId: string, summary: string, extra: Pick<AdminOperation, 'description' | 'problems' | 'produces'> = {}) {
  return { config: { adminOperation: { tag, scope, operationId, summary, ...extra } } };
}

/** For POSTs whose body is optional: a missing body is validated as `{}`. */
export async function emptyBodyAsObject(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {};
}

/** Records an admin action: who acted (the admin client) from which address, on what, through the admin API. */
export function recordAdminAction(gatehouse: Gatehouse, request: FastifyRequest, kind: string, target: { userId?: string | null; data?: Record<string, unknown> } = {}): void {
  gatehouse.audit.record({
    at: gatehouse.clock(),
    kind,
    outcome: 'success',
    clientId: request.adminClientId ?? null,
    userId: target.userId ?? null,
    data: { admin_client_id: request.adminClientId ?? null, via: 'admin_api', address: request.ip, ...target.data },
  });
}

/**
 * The rule that keeps `admin:clients` from being a way to every admin power: a token hands out
 * only what it holds (as Keycloak's fine-grained admin permissions and Auth0's management API
 * scopes do). Registering, changing or deleting an admin client, or adding or removing one of its
 * credentials (secret, public keys, API key), needs every admin scope the client has or will have;
 * a client that may impersonate users (RFC 8693), or is being allowed to, needs `admin:users`, the
 * power over every account that impersonation amounts to; a resource server, or a client being made
 * one, needs `admin:tokens`, since it may introspect every client's tokens (RFC 7662: their
 * subject, scopes and client), which is what that scope reads. Without one, `insufficient_scope`
 * naming it (RFC 6750 §3.1).
 */
export const ADMIN_CLIENT_RULE =
  'An admin client (or one being made one) is managed only with a token that holds every admin scope the client has or will have, a client that may impersonate users (or is being allowed to) only with one that holds admin:users, and a resource server (or a client being made one), which may introspect every client’s tokens, only with one that holds admin:tokens; otherwise 403 `insufficient_scope` naming the scope the token lacks.';

/** What a deletion under ADMIN_CLIENT_RULE adds to its description (see actOnCheckedClient). */
export const CHECKED_WHEN_WRITTEN =
  'The rule is checked against the client as it is when the change is written: 409 when concurrent changes kept altering the client’s powers meanwhile (read it and try again).';

/** The scopes a token must hold to manage a client with these powers (see ADMIN_CLIENT_RULE). */
const scopesToManage = (gatehouse: Gatehouse, client: ClientPowers): string[] => [
  // Only admin scopes: a scope that is not one (refused on an admin client) is left to validation's 400.
  ...(client.isAdmin ? client.scopes.filter((scope) => gatehouse.scopes.definition(scope)?.admin === true) : []),
  ...(client.allowImpersonation ? ['admin:users'] : []),
  ...(client.isResourceServer ? ['admin:tokens'] : []),
];

/** Refuses the request (403, audited) unless its token holds every scope needed to manage each of `clients` (see ADMIN_CLIENT_RULE). */
export function requireAdminScopesOf(gatehouse: Gatehouse, request: FastifyRequest, clientId: string | null, ...clients: ClientPowers[]): void {
  const held = request.adminScopes ?? [];
  const missing = clients.flatMap((client) => scopesToManage(gatehouse, client)).find((scope) => !held.includes(scope));
  if (missing === undefined) return;
  gatehouse.audit.record({
    at: gatehouse.clock(),
    kind: 'admin.refused',
    outcome: 'failure',
    clientId: request.adminClientId ?? null,
    userId: null,
    data: { credential: 'client', scope: missing, target_client_id: clientId, route: `${request.method} ${request.routeOptions.url}`, address: request.ip },
  });
  throw insufficientScope(`the token lacks the scope ${missing}, which managing the client ${clientId === null ? 'being registered' : clientId} needs: a token hands out only the powers it holds`, missing);
}

/**
 * Does `act` to a client (deletes it, adds or removes one of its credentials) as ADMIN_CLIENT_RULE
 * allows, and only to the client as it was checked: the client is read and checked, and `act` makes
 * its write conditional on the powers it was checked with (ClientRepository.delete, addSecret,
 * deleteSecret, ApiKeyRepository.create, revoke), so a client made one the token cannot manage
 * between the check and the write neither loses what `act` would have taken nor gets a credential
 * such a token could use. When `act` changed nothing because the client's
 * powers changed meanwhile, the client is read and checked again, once; ClientChangedError (409)
 * if it changes again. False when `act` found nothing to do (what it acts on is gone: of two
 * concurrent deletions, the second); a 404 for a client that is not there.
 */
export async function actOnCheckedClient(gatehouse: Gatehouse, request: FastifyRequest, clientId: string, act: (checked: Client) => Promise<boolean>): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    const checked = await gatehouse.storage.clients.find(clientId);
    if (!checked) throw notFound(`there is no client ${clientId}`);
    requireAdminScopesOf(gatehouse, request, clientId, checked);
    if (await act(checked)) return true;
    const now = await gatehouse.storage.clients.find(clientId);
    if (!now) throw notFound(`there is no client ${clientId}`);
    if (samePowers(now, checked)) return false;
    if (attempt === 2) throw new ClientChangedError(`the client ${clientId} changed meanwhile: read it and try again`);
  }
}

const samePowers = (a: ClientPowers, b: ClientPowers): boolean =>
  a.isAdmin === b.isAdmin &&
  a.allowImpersonation === b.allowImpersonation &&
  a.isResourceServer === b.isResourceServer &&
  a.scopes.length === b.scopes.length &&
  a.scopes.every((scope, i) => scope === b.scopes[i]);

export const iso = (epochSeconds: number | null): string | null => (epochSeconds === null ? null : new Date(epochSeconds * 1000).toISOString());

/** A time given as ISO 8601 or as epoch seconds; 400 naming `field` otherwise. */
export function parseTime(value: string, field: string): number {
  if (/^\d{1,12}$/.test(value)) return Number(value);
  const time = parseIsoInstant(value);
  if (time === undefined) throw invalidField(field, `${field} must be an ISO 8601 date-time or epoch seconds`);
  return time;
}

/** An optional ISO 8601 expiry, in epoch seconds (null: never). */
export function parseExpiry(value: string | null | undefined, field = 'expires_at'): number | null {
  if (value === undefined || value === null) return null;
  const time = parseIsoInstant(value);
  if (time === undefined) throw invalidField(field, `${field} must be an ISO 8601 date-time`);
  return time;
}

// JSON Schema building blocks. Request bodies list their members with `propertyNames` rather than
// `additionalProperties: false`, which Fastify's Ajv would silently strip instead of refusing: a
// misspelt field must be an error, never ignored. (The OpenAPI document shows it as closed.)

export const timestamp = { type: 'string', format: 'date-time' } as const;
export const optionalTimestamp = { type: ['string', 'null'], format: 'date-time' } as const;
export const stringList = (description: string, maxItems = 100) => ({ type: 'array', items: { type: 'string', minLength: 1, maxLength: 2000 }, maxItems, description }) as const;

export function requestBody<P extends Record<string, object>>(properties: P, required: (keyof P & string)[] = []) {
  return { type: 'object', properties, required, propertyNames: { enum: Object.keys(properties) } } as const;
}

export const noContent = { description: 'Done; no body.', type: 'null' } as const;

export const idParams = <K extends string>(...names: K[]) =>
  ({ type: 'object', properties: Object.fromEntries(names.map((name) => [name, { type: 'string', minLength: 1, maxLength: 200 }])), required: names }) as const;

/**
 * An operation refuses a query parameter it does not take, as it refuses an unknown body member: a
 * misspelt filter (`GET /grants?user=…` for `user_id`) would otherwise be dropped, and the list
 * answer with every record, which a back office would take for the filtered ones. The public
 * documentation routes take any.
 */
export async function knownQueryParameters(request: FastifyRequest): Promise<void> {
  if (!request.routeOptions.config.adminOperation?.scope) return;
  const taken = Object.keys((request.routeOptions.schema as { querystring?: { properties?: object } } | undefined)?.querystring?.properties ?? {});
  const unknown = Object.keys((request.query ?? {}) as object).find((name) => !taken.includes(name));
  if (unknown === undefined) return;
  throw invalidField(unknown, `unknown query parameter "${unknown}": this operation takes ${taken.length > 0 ? taken.join(', ') : 'none'}`);
}

/**
 * Fastify's Ajv coerces scalars (`42` → `"42"`, `"true"` → `true`, `"x"` → `["x"]`), which suits
 * query strings but would let a JSON body of the wrong shape through. Bodies are checked for
 * exact JSON types first, so a wrong type is a 400 naming the field.
 */
export async function exactBodyTypes(request: FastifyRequest): Promise<void> {
  const schema = (request.routeOptions.schema as { body?: unknown } | undefined)?.body;
  // An operation without a body (disable, revoke, rotate…) refuses one rather than ignoring what it says; `{}` is no body.
  if (!schema && request.body !== undefined && request.body !== null && !isEmptyObject(request.body)) throw new ProblemError('invalid-request', 'this operation takes no body');
  if (!schema || request.body === undefined || request.body === null || typeof request.body !== 'object' || Array.isArray(request.body)) return;
  const problem = typeProblem(schema as SchemaShape, request.body, []);
  if (problem) throw new ProblemError('invalid-request', problem.detail, { errors: [problem] });
}

interface SchemaShape {
  type?: string | readonly string[];
  properties?: Record<string, SchemaShape>;
  items?: SchemaShape;
}

function typeProblem(schema: SchemaShape, value: unknown, path: (string | number)[]): FieldProblem | undefined {
  const types = schema.type === undefined ? undefined : ([schema.type].flat() as string[]);
  if (types && !types.some((type) => isOfType(type, value))) {
    const where = path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i > 0 ? `.${p}` : p)).join('');
    return { field: String(path[0] ?? 'body'), detail: `${where || 'the body'} must be ${types.map((t) => (t === 'null' ? 'null' : `${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t}`)).join(' or ')}` };
  }
  if (Array.isArray(value) && schema.items) {
    for (const [i, item] of value.entries()) {
      const problem = typeProblem(schema.items, item, [...path, i]);
      if (problem) return problem;
    }
  } else if (value !== null && typeof value === 'object' && schema.properties) {
    for (const [name, property] of Object.entries(schema.properties)) {
      if (!Object.hasOwn(value, name)) continue;
      const problem = typeProblem(property, (value as Record<string, unknown>)[name], [...path, name]);
      if (problem) return problem;
    }
  }
  return undefined;
}

function isOfType(type: string, value: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    default:
      return true;
  }
}

const isEmptyObject = (value: unknown): boolean => typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 0;
