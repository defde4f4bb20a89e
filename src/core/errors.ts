/**
 * One error class for every OAuth error, made by one factory per RFC error code and rendered in
 * one place (the HTTP adapters). `error` is the RFC code sent to clients; `status` the HTTP status
 * RFC 6749 §5.2 / RFC 6750 §3.1 / RFC 7009 prescribe for it.
 */
export class OAuthError extends Error {
  readonly error: string;
  readonly status: number;
  /** Extra response headers, e.g. `WWW-Authenticate` for `invalid_client` over HTTP Basic. */
  readonly headers: Record<string, string>;

  constructor(error: string, description: string, status = 400, headers: Record<string, string> = {}) {
    super(description);
    this.name = 'OAuthError';
    this.error = error;
    this.status = status;
    this.headers = headers;
  }

  get description(): string {
    return this.message;
  }

  toJSON(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.message };
  }
}

const make =
  (error: string, status = 400) =>
  (description: string, headers?: Record<string, string>): OAuthError =>
    new OAuthError(error, description, status, headers);

// RFC 6749 §5.2
export const invalidRequest = make('invalid_request');
export const invalidGrant = make('invalid_grant');
export const unauthorizedClient = make('unauthorized_client');
export const unsupportedGrantType = make('unsupported_grant_type');
export const invalidScope = make('invalid_scope');

/**
 * RFC 6749 §5.2: "If the client attempted to authenticate via the Authorization request header
 * field, the authorization server MUST respond with an HTTP 401 (Unauthorized) status code and
 * include the WWW-Authenticate response header field matching the authentication scheme used".
 */
export function invalidClient(description: string, usedBasic = false): OAuthError {
  return new OAuthError(
    'invalid_client',
    description,
    401,
    usedBasic ? { 'www-authenticate': 'Basic realm="gatehouse", charset="UTF-8"' } : {},
  );
}

// RFC 6749 §4.1.2.1
export const accessDenied = make('access_denied', 403);
export const unsupportedResponseType = make('unsupported_response_type');
export const serverError = make('server_error', 500);
export const temporarilyUnavailable = make('temporarily_unavailable', 503);

// RFC 6750 §3.1
export const invalidToken = make('invalid_token', 401);
export const insufficientScope = make('insufficient_scope', 403);

// RFC 7009 §2.2.1
export const unsupportedTokenType = make('unsupported_token_type');

/** 413 for an oversized body, still with an RFC 6749 error body. */
export const requestTooLarge = make('invalid_request', 413);

export function isOAuthError(value: unknown): value is OAuthError {
  return value instanceof OAuthError;
}
