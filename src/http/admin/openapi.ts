import type { FastifyInstance, FastifySchema } from 'fastify';
import type { Gatehouse } from '../../gatehouse.ts';
import { PAGE_HEADERS } from '../pages/security.ts';
import { renderReference } from './docs.ts';
import { PROBLEM_KINDS, problemSchema, type ProblemKind } from './problems.ts';
import { operation, type AdminOperation, type AdminScope } from './support.ts';

/** A route of the admin API as registered, with what the document says about it. */
export interface AdminRoute {
  method: string;
  url: string;
  schema: FastifySchema | undefined;
  operation: AdminOperation;
  /** The route accepts a request without a body. */
  optionalBody: boolean;
}

type Json = Record<string, unknown>;

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description: string };
  servers: { url: string }[];
  tags: { name: string }[];
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: { securitySchemes: Json; schemas: Record<string, Json>; responses: Record<string, Json> };
}

export interface OpenApiOperation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security: Record<string, string[]>[];
  parameters?: { name: string; in: 'path' | 'query'; required: boolean; description?: string; schema: Json }[];
  requestBody?: { required: boolean; content: { 'application/json': { schema: Json } } };
  responses: Record<string, Json>;
}

export const SECURITY_SCHEME = 'adminToken';
const ADMIN_SCOPES: AdminScope[] = ['admin:clients', 'admin:users', 'admin:tokens'];

// Which problem each status is, and the shared response it is documented by.
const PROBLEM_RESPONSES: Record<number, { name: string; kind: ProblemKind }> = {
  400: { name: 'InvalidRequest', kind: 'invalid-request' },
  401: { name: 'InvalidToken', kind: 'invalid-token' },
  403: { name: 'InsufficientScope', kind: 'insufficient-scope' },
  404: { name: 'NotFound', kind: 'not-found' },
  409: { name: 'Conflict', kind: 'conflict' },
  413: { name: 'PayloadTooLarge', kind: 'payload-too-large' },
  415: { name: 'UnsupportedMediaType', kind: 'unsupported-media-type' },
  503: { name: 'Unavailable', kind: 'unavailable' },
};

// Headers a shared response always has: the Bearer challenge of a refused token (RFC 6750 §3), and
// when to come back from an outage (RFC 9110 §10.2.3).
const CHALLENGE = { 'WWW-Authenticate': { description: 'The RFC 6750 Bearer challenge (for 403, `error="insufficient_scope"` and the scope needed).', required: true, schema: { type: 'string' } } };
const RESPONSE_HEADERS: Record<string, Json> = {
  401: CHALLENGE,
  403: CHALLENGE,
  503: { 'Retry-After': { description: 'Seconds to wait before trying again.', required: true, schema: { type: 'string' } } },
};

// Methods whose requests may carry a body (RFC 9110 §9.3): their operations read one whether or not
// they take one, so each can answer that it is too large (413), not JSON (415), or not taken (400).
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * The OpenAPI 3.1 document of the admin API, made from the routes as they were registered: their
 * JSON schemas (the ones that validate requests and serialize responses) and their operation
 * metadata. A route cannot be added without appearing here.
 */
export function buildOpenApiDocument(routes: readonly AdminRoute[], options: { issuer: string; scopeDescriptions: Record<string, string> }): OpenApiDocument {
  const issuer = options.issuer.replace(/\/+$/, '');
  const schemas: Record<string, Json> = {};
  const document: OpenApiDocument = {
    openapi: '3.1.0',
    info: {
      title: 'Gatehouse admin API',
      version: '1',
      description:
        'Manage clients, their secrets and API keys, users, grants, signing keys, and read the audit log. ' +
        'Every operation (but these documentation routes) needs `Authorization: Bearer <access token>` of an **admin client**, ' +
        'obtained with the client credentials grant at `/token`, holding the admin scope the operation names. ' +
        'Bodies are JSON, and unknown members are refused, as are query parameters an operation does not take; errors are RFC 9457 problems (`application/problem+json`). ' +
        'Lists answer a page at a time: at most `limit` records, and `next_cursor`, to pass as `cursor` for the next page (null on the last). ' +
        'While the database does not answer, every operation behind a token answers 503 with `Retry-After`; the admin API has no rate limits of its own (no 429).',
    },
    servers: [{ url: issuer }],
    tags: [],
    paths: {},
    components: {
      securitySchemes: {
        [SECURITY_SCHEME]: {
          type: 'oauth2',
          description: 'An access token of an admin client, sent as `Authorization: Bearer <token>`. User tokens, API keys and tokens of other clients are refused.',
          flows: { clientCredentials: { tokenUrl: `${issuer}/token`, scopes: Object.fromEntries(ADMIN_SCOPES.map((scope) => [scope, options.scopeDescriptions[scope] ?? scope])) } },
        },
      },
      schemas,
      responses: {},
    },
  };
  schemas.Problem = documentSchema(problemSchema, schemas, false);
  for (const [status, { name, kind }] of Object.entries(PROBLEM_RESPONSES)) {
    document.components.responses[name] = {
      description: `${PROBLEM_KINDS[kind].title} (${status}).`,
      ...(RESPONSE_HEADERS[status] ? { headers: RESPONSE_HEADERS[status] } : {}),
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    };
  }

  for (const route of routes) {
    const { operation: op, schema = {} } = route;
    if (!document.tags.some((t) => t.name === op.tag)) document.tags.push({ name: op.tag });
    const path = route.url.replace(/:(\w+)/g, '{$1}');
    const parameters = [...parametersOf(schema.params, 'path', schemas), ...parametersOf(schema.querystring, 'query', schemas)];
    const responses: Record<string, Json> = {};
    for (const [status, responseSchema] of Object.entries((schema.response ?? {}) as Record<string, Json>)) {
      const { description, ...body } = responseSchema;
      responses[status] = { description: typeof description === 'string' ? description : 'Success.', ...(body.type === 'null' ? {} : { content: { 'application/json': { schema: documentSchema(body, schemas) } } }) };
    }
    if (op.produces) responses[String(op.produces.status)] = { description: op.produces.description, content: { [op.produces.contentType]: { schema: op.produces.schema } } };
    const problems = new Set(op.problems ?? []);
    // Every operation behind a token refuses a query parameter it does not take (knownQueryParameters).
    if (op.scope || schema.params || schema.querystring || schema.body) problems.add(400);
    if (BODY_METHODS.has(route.method)) problems.add(400).add(413).add(415);
    // Authorizing the caller reads the database (the token's client, its revocation), so every operation behind a token can meet an outage.
    if (op.scope) problems.add(401).add(403).add(503);
    if (schema.params) problems.add(404);
    for (const status of [...problems].sort()) {
      const shared = PROBLEM_RESPONSES[status];
      if (shared) responses[String(status)] = { $ref: `#/components/responses/${shared.name}` };
    }

    const documented: OpenApiOperation = {
      operationId: op.operationId,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [op.tag],
      security: op.scope ? [{ [SECURITY_SCHEME]: [op.scope] }] : [],
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(schema.body ? { requestBody: { required: !route.optionalBody, content: { 'application/json': { schema: documentSchema(schema.body as Json, schemas) } } } } : {}),
      responses,
    };
    (document.paths[path] ??= {})[route.method.toLowerCase()] = documented;
  }
  return document;
}

function parametersOf(schema: unknown, where: 'path' | 'query', schemas: Record<string, Json>): NonNullable<OpenApiOperation['parameters']> {
  if (!schema || typeof schema !== 'object') return [];
  const { properties = {}, required = [] } = schema as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(properties).map(([name, property]) => {
    const { description, ...rest } = property;
    return { name, in: where, required: where === 'path' || required.includes(name), ...(typeof description === 'string' ? { description } : {}), schema: documentSchema(rest, schemas) };
  });
}

/**
 * A route's JSON schema as the document shows it: schemas with a `title` become named components
 * (referenced), and request bodies' `propertyNames` list (how unknown fields are refused) reads as
 * the equivalent `additionalProperties: false`.
 */
function documentSchema(schema: Json, schemas: Record<string, Json>, hoist = true): Json {
  const out: Json = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'propertyNames') {
      out.additionalProperties = false;
    } else if (key === 'properties' && value && typeof value === 'object') {
      out.properties = Object.fromEntries(Object.entries(value as Record<string, Json>).map(([name, sub]) => [name, documentSchema(sub, schemas)]));
    } else if (key === 'items' && value && typeof value === 'object' && !Array.isArray(value)) {
      out.items = documentSchema(value as Json, schemas);
    } else {
      out[key] = Array.isArray(value) ? [...value] : value;
    }
  }
  const title = out.title;
  if (hoist && typeof title === 'string') {
    schemas[title] ??= out;
    return { $ref: `#/components/schemas/${title}` };
  }
  return out;
}

/** `GET /admin/v1/openapi.json` and the reference page made from it, `GET /admin/v1/docs`; both public. */
export async function documentationRoutes(app: FastifyInstance, gatehouse: Gatehouse, routes: readonly AdminRoute[]): Promise<void> {
  let document: OpenApiDocument | undefined;
  let json: string | undefined;
  let html: string | undefined;
  const build = (): OpenApiDocument => {
    const scopeDescriptions = Object.fromEntries(ADMIN_SCOPES.map((scope) => [scope, gatehouse.scopes.definition(scope)?.description ?? scope]));
    return (document ??= buildOpenApiDocument(routes, { issuer: gatehouse.config.issuer, scopeDescriptions }));
  };

  app.get(
    '/openapi.json',
    operation('Documentation', null, 'getOpenApiDocument', 'This OpenAPI document', { produces: { status: 200, description: 'The OpenAPI 3.1 document.', contentType: 'application/json', schema: { type: 'object', additionalProperties: true } } }),
    async (_request, reply) => reply.type('application/json; charset=utf-8').send((json ??= JSON.stringify(build()))),
  );

  app.get(
    '/docs',
    operation('Documentation', null, 'getReferencePage', 'The reference page', { produces: { status: 200, description: 'This API’s reference, as an HTML page.', contentType: 'text/html', schema: { type: 'string' } } }),
    async (_request, reply) => reply.headers(PAGE_HEADERS).type('text/html; charset=utf-8').send((html ??= renderReference(build(), PROBLEM_KINDS))),
  );
}
