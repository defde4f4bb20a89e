import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ClientChangedError } from '../../core/applications.ts';
import { UserChangedError } from '../../core/users.ts';
import { ValidationError } from '../../core/validation.ts';
import { OAuthError } from '../../core/errors.ts';
import { EmailTakenError } from '../../storage/repositories/users.ts';
import { isUnavailable } from '../oauth/errors.ts';

/** One thing wrong with the request: the field (body member, query or path parameter) and why. */
export interface FieldProblem {
  field: string;
  detail: string;
}

/**
 * The kinds of problem the admin API reports. Each one's `type` URI is an anchor on the reference
 * page (`/admin/v1/docs#problem-<kind>`), where it is explained (RFC 9457 §3.1.1).
 */
export const PROBLEM_KINDS = {
  'invalid-request': { status: 400, title: 'The request is invalid', explanation: 'A field, query or path parameter is missing, malformed or not allowed; `errors` names each field with what is wrong.' },
  'invalid-token': { status: 401, title: 'No valid access token', explanation: 'The request carries no access token, or one that is malformed, expired or revoked. `error` is `invalid_token` (RFC 6750).' },
  'insufficient-scope': { status: 403, title: 'Not allowed', explanation: 'The token is not an admin client’s token, lacks the admin scope the operation needs, or lacks a scope that managing the client in question needs (an admin scope of an admin client, admin:users for one that may impersonate users, admin:tokens for a resource server). `error` is `insufficient_scope` (RFC 6750).' },
  'not-found': { status: 404, title: 'Not found', explanation: 'There is no such resource (or no such route).' },
  'method-not-allowed': { status: 405, title: 'Method not allowed', explanation: 'The route exists, but not with this method; the `Allow` header lists the methods it takes.' },
  conflict: { status: 409, title: 'Conflict', explanation: 'The request conflicts with the state of the resource, e.g. an email address registered already, or a client or user that concurrent requests kept changing meanwhile (read it and try again).' },
  'payload-too-large': { status: 413, title: 'The body is too large', explanation: 'Request bodies are limited to 64 KiB.' },
  'unsupported-media-type': { status: 415, title: 'Unsupported media type', explanation: 'Request bodies must be `application/json`.' },
  'too-many-requests': { status: 429, title: 'Too many requests', explanation: 'A limit Gatehouse keeps was reached; `Retry-After` says in how many seconds to try again. The admin API has no rate limits of its own: this comes only from a limit of the work an operation does.' },
  'server-error': { status: 500, title: 'Server error', explanation: 'The server could not complete the request; the failure is logged.' },
  unavailable: { status: 503, title: 'Temporarily unavailable', explanation: 'The database does not answer right now; retry shortly.' },
} as const;

export type ProblemKind = keyof typeof PROBLEM_KINDS;

/** An RFC 9457 problem; rendered by `sendProblem` as `application/problem+json`. */
export class ProblemError extends Error {
  override name = 'ProblemError';
  readonly kind: ProblemKind;
  readonly errors: FieldProblem[];
  readonly headers: Record<string, string>;
  /** Extension members, e.g. `error` for RFC 6750 codes. */
  readonly extensions: Record<string, unknown>;

  constructor(kind: ProblemKind, detail: string, options: { errors?: FieldProblem[]; headers?: Record<string, string>; extensions?: Record<string, unknown> } = {}) {
    super(detail);
    this.kind = kind;
    this.errors = options.errors ?? [];
    this.headers = options.headers ?? {};
    this.extensions = options.extensions ?? {};
  }

  get status(): number {
    return PROBLEM_KINDS[this.kind].status;
  }
}

export const invalidField = (field: string, detail: string): ProblemError => new ProblemError('invalid-request', detail, { errors: [{ field, detail }] });
export const notFound = (detail: string): ProblemError => new ProblemError('not-found', detail);
export const conflict = (detail: string, field?: string): ProblemError => new ProblemError('conflict', detail, field ? { errors: [{ field, detail }] } : {});

/** The JSON Schema of a problem body, for the OpenAPI document. */
export const problemSchema = {
  title: 'Problem',
  type: 'object',
  description: 'An RFC 9457 problem (`application/problem+json`).',
  required: ['type', 'title', 'status', 'detail'],
  properties: {
    type: { type: 'string', format: 'uri', description: 'What kind of problem: an anchor in this reference.' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string', description: 'What went wrong with this request.' },
    instance: { type: 'string', description: 'The request path.' },
    errors: {
      type: 'array',
      description: 'For `invalid-request` (and some conflicts): each offending field.',
      items: { type: 'object', required: ['field', 'detail'], properties: { field: { type: 'string' }, detail: { type: 'string' } } },
    },
    error: { type: 'string', description: 'For 401 and 403: the RFC 6750 error code (`invalid_token`, `insufficient_scope`).' },
  },
} as const;

/**
 * Renders every failure of the admin API as an RFC 9457 problem. Bad input of any kind (schema
 * violations, core validation, unreadable bodies) is a 4xx naming the field; only a real failure is
 * a 500, logged, without a stack trace in the answer.
 */
export function problemHandler(typeBase: string) {
  return (error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const problem = toProblem(error);
    if (problem.status >= 500) request.log.error({ req: request, err: error }, 'admin request failed');
    return sendProblem(reply, typeBase, problem, request.url.split('?')[0]!);
  };
}

export function sendProblem(reply: FastifyReply, typeBase: string, problem: ProblemError, instance: string): FastifyReply {
  const body = {
    type: `${typeBase}#problem-${problem.kind}`,
    title: PROBLEM_KINDS[problem.kind].title,
    status: problem.status,
    detail: problem.message,
    instance,
    ...(problem.errors.length > 0 ? { errors: problem.errors } : {}),
    ...problem.extensions,
  };
  return reply
    .code(problem.status)
    .headers({ ...problem.headers, 'cache-control': 'no-store' })
    .type('application/problem+json')
    .send(JSON.stringify(body));
}

function toProblem(error: FastifyError | Error): ProblemError {
  if (error instanceof ProblemError) return error;
  if (error instanceof ValidationError) return invalidField(error.field, error.message);
  if (error instanceof EmailTakenError) return conflict(error.message, 'email');
  if (error instanceof ClientChangedError) return conflict(error.message);
  if (error instanceof UserChangedError) return conflict(error.message);
  if (error instanceof OAuthError) return problemOf(error);
  const { code, statusCode, validation, validationContext } = error as FastifyError;
  if (validation) {
    const described = validation.map((failure) => describeFailure(failure as AjvFailure, validationContext ?? 'body'));
    // Ajv reports some failures twice (a property name, then the rule it broke): one entry each.
    const errors = described.filter((e, i) => described.findIndex((other) => other.field === e.field && other.detail === e.detail) === i);
    return new ProblemError('invalid-request', errors[0]?.detail ?? 'the request is invalid', { errors });
  }
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new ProblemError('payload-too-large', 'the request body is larger than 64 KiB');
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || code === 'FST_ERR_CTP_INVALID_TYPE') return new ProblemError('unsupported-media-type', 'the body must be application/json');
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return invalidField('body', 'the JSON body is empty');
  if (error instanceof SyntaxError || code === 'FST_ERR_CTP_INVALID_JSON_BODY') return invalidField('body', 'the body is not valid JSON');
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) return new ProblemError('invalid-request', 'the request is malformed');
  if (isUnavailable(error as Error)) return new ProblemError('unavailable', 'the service is temporarily unavailable, try again shortly', { headers: { 'retry-after': '1' } });
  return new ProblemError('server-error', 'the server could not complete the request');
}

/**
 * An OAuthError keeps its status: a limit reached (429) or an outage (503) met by the core below a
 * route is no fault of the request, and a client told 400 would not retry. Each carries when to
 * come back (RFC 9110 §10.2.3), a 503 that names no time the second every other 503 here gives.
 */
function problemOf(error: OAuthError): ProblemError {
  const extensions = { error: error.error };
  switch (error.status) {
    case 401:
      return new ProblemError('invalid-token', error.message, { headers: error.headers, extensions });
    case 403:
      return new ProblemError('insufficient-scope', error.message, { headers: error.headers, extensions });
    case 413:
      return new ProblemError('payload-too-large', error.message, { headers: error.headers, extensions });
    case 429:
      return new ProblemError('too-many-requests', error.message, { headers: error.headers, extensions });
    case 503:
      return new ProblemError('unavailable', error.message, { headers: { 'retry-after': '1', ...error.headers }, extensions });
    default:
      // A server_error's description is for the log, not the caller, as for any other failure.
      if (error.status >= 500) return new ProblemError('server-error', 'the server could not complete the request');
      return new ProblemError('invalid-request', error.message, { headers: error.headers, extensions });
  }
}

interface AjvFailure {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
  propertyName?: string;
}

/** Turns one JSON Schema failure into the top-level field it concerns and a sentence about it. */
function describeFailure(failure: AjvFailure, context: string): FieldProblem {
  const path = failure.instancePath
    .split('/')
    .slice(1)
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'));
  const where = path.length > 0 ? path.map((segment, i) => (i > 0 && /^\d+$/.test(segment) ? `[${segment}]` : i > 0 ? `.${segment}` : segment)).join('') : undefined;
  const unknown = failure.propertyName ?? (failure.params.propertyName as string | undefined) ?? (failure.params.additionalProperty as string | undefined);
  if (unknown !== undefined) return { field: unknown, detail: `unknown field "${unknown}"` };
  if (failure.keyword === 'required') {
    const missing = String(failure.params.missingProperty);
    return { field: path[0] ?? missing, detail: `${where ? `${where}.` : ''}${missing} is required` };
  }
  const field = path[0] ?? context;
  const subject = where ?? (context === 'body' ? 'the body' : context);
  if (failure.keyword === 'enum') return { field, detail: `${subject} must be one of: ${(failure.params.allowedValues as unknown[]).join(', ')}` };
  if (failure.keyword === 'format') return { field, detail: `${subject} must be ${failure.params.format === 'date-time' ? 'an ISO 8601 date-time' : `a valid ${String(failure.params.format)}`}` };
  return { field, detail: `${subject} ${failure.message ?? 'is invalid'}` };
}
