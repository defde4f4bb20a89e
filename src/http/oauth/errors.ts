import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { OAuthError, invalidRequest, requestTooLarge, serverError, temporarilyUnavailable } from '../../core/errors.ts';
import type { Metrics } from '../metrics.ts';
import { PasswordsBusy } from '../../core/passwords.ts';
import { isQueryTimeout } from '../../storage/prepared-statements.ts';

// Codes of errors that mean the database is unreachable right now, not that the request was bad:
// besides lost connections and shutdowns, PostgreSQL's class 53, insufficient resources — above all
// 53300, a server that refuses new connections because it has `max_connections` already, as it does
// when the instances' pools together outgrow it — and a transaction PostgreSQL aborted for a
// conflict with another (40001 serialization_failure, 40P01 deadlock_detected, which it breaks by
// aborting one side): nothing was wrong with the request, and the same request a moment later goes
// through, which Retry-After tells. So does a server with as many passwords to hash as it takes at
// once (PasswordsBusy).
const UNAVAILABLE = new Set([
  'GATEHOUSE_PASSWORDS_BUSY',
  '40001',
  '40P01',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  '53000',
  '53100',
  '53200',
  '53300',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08006',
  'ERR_SQLITE_ERROR_BUSY',
]);
// pg reports a connection lost in the middle of a query (the database crashed or was stopped with
// `-m immediate`), a pool that could not connect in time, and a use of a dead client without a code;
// a statement unanswered within `database.queryTimeoutSeconds` (isQueryTimeout) is no different.
const UNAVAILABLE_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable)/;

// RFC 6749 §5.1: "The authorization server MUST include the HTTP "Cache-Control" response header
// field with a value of "no-store" in any response containing tokens or other sensitive information".
export const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' };

const METHODS: HTTPMethods[] = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];

/**
 * RFC 9110 §15.5.6: a protocol endpoint asked with a method it does not take answers 405 with
 * `Allow` and an RFC 6749 error body, not the 404 page of an unknown address.
 */
export function refuseOtherMethods(app: FastifyInstance, url: string, allowed: HTTPMethods[], endpoint: string): void {
  const allow = allowed.join(', ');
  app.route({
    method: METHODS.filter((method) => !allowed.includes(method)),
    url,
    handler: async (_request, reply) =>
      reply
        .code(405)
        .headers({ allow, ...NO_STORE })
        .send({ error: 'invalid_request', error_description: `the ${endpoint} accepts ${allowed.join(' and ')} only` }),
  });
}

/** Does `error` mean that the database cannot be reached right now, or the server is too busy (rather than a bug)? */
export function isUnavailable(error: Error): boolean {
  const { code } = error as { code?: unknown };
  return (typeof code === 'string' && UNAVAILABLE.has(code)) || UNAVAILABLE_MESSAGES.test(error.message ?? '') || isQueryTimeout(error);
}

/** What the log says of an error isUnavailable accepts. */
export const unavailableLogMessage = (error: Error): string => (error instanceof PasswordsBusy ? 'too many passwords to check' : 'database unavailable');

/**
 * Renders every failure on the protocol endpoints as an RFC 6749 §5.2 JSON error. Requests the
 * framework refused (body too large, wrong content type, malformed JSON) are `invalid_request`;
 * a database that does not answer is `temporarily_unavailable`; anything else is logged and answered
 * with a bare `server_error` — never a stack trace.
 */
export function oauthErrorHandler(error: FastifyError | OAuthError | Error, request: FastifyRequest, reply: FastifyReply, metrics?: Metrics): void {
  const oauthError = toOAuthError(error);
  metrics?.oauthErrors.inc({ error: oauthError.error });
  // An unreachable database is an outage, not a bug: one short warning per request, no stack trace.
  // Each line names its request (method and address, secrets redacted: see logging.ts), since
  // without request logging nothing else in the log says which request failed.
  if (oauthError.status === 503) request.log.warn({ req: request, code: (error as { code?: unknown }).code, reason: error.message }, unavailableLogMessage(error));
  else if (oauthError.status >= 500) request.log.error({ req: request, err: error }, 'request failed');
  reply
    .code(oauthError.status)
    .headers({ ...oauthError.headers, ...NO_STORE })
    .send(oauthError.toJSON());
}

function toOAuthError(error: FastifyError | OAuthError | Error): OAuthError {
  if (error instanceof OAuthError) return error;
  const { code, statusCode } = error as FastifyError;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return requestTooLarge('the request body is larger than 64 KiB');
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || code === 'FST_ERR_CTP_INVALID_TYPE') {
    return invalidRequest('the body must be application/x-www-form-urlencoded or application/json');
  }
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return invalidRequest('the JSON body is empty');
  if (error instanceof SyntaxError || code === 'FST_ERR_CTP_INVALID_JSON_BODY') return invalidRequest('the body is not valid JSON');
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) return invalidRequest('the request is malformed');
  if (isUnavailable(error)) return temporarilyUnavailable('the service is temporarily unavailable, try again shortly', { 'retry-after': '1' });
  return serverError('the server could not complete the request');
}
