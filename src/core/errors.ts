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
    super(describable(description));
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

/**
 * RFC 6749 §5.2 (and §4.1.2.1 for the authorization endpoint): "Values for the error_description
 * parameter MUST NOT include characters outside the set %x20-21 / %x23-5B / %x5D-7E". Descriptions
 * quote what the client sent (`the grant type "…" is not supported`), so double quotes become
 * single ones, a backslash a slash, and anything else outside the set (a control character, a
 * character beyond ASCII) a question mark.
 */
function describable(description: string): string {
  return description.replace(/"/g, "'").replace(/\\/g, '/').replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?');
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

// OpenID Connect Core §3.1.2.6: prompt=none cannot go on without showing the End-User a page.
export const loginRequired = make('login_required');
export const consentRequired = make('consent_required');

// OpenID Connect Core §3.1.2.6: an OP that does not support these parameters "MUST return" these errors.
export const requestNotSupported = make('request_not_supported');
export const requestUriNotSupported = make('request_uri_not_supported');
export const registrationNotSupported = make('registration_not_supported');

/** RFC 6750 §3: errors of protected resources carry a `WWW-Authenticate: Bearer` challenge. */
export function bearerChallenge(error: string, description: string, scope?: string): string {
  const quoted = (value: string) => value.replace(/["\\]/g, '').replace(/[^\x20-\x7e]/g, '?');
  return `Bearer realm="gatehouse", error="${error}", error_description="${quoted(description)}"${scope ? `, scope="${quoted(scope)}"` : ''}`;
}

// RFC 6750 §3.1
/**
 * "If the request lacks any authentication information (e.g., the client was unaware that
 * authentication is necessary or attempted using an unsupported authentication method), the
 * resource server SHOULD NOT include an error code or other error information" — a bare challenge.
 * The JSON body still says why, as on every protocol endpoint.
 */
export const credentialsRequired = (description: string): OAuthError => new OAuthError('invalid_token', description, 401, { 'www-authenticate': 'Bearer realm="gatehouse"' });
/** A malformed request, or one that sends its token more than once, is `invalid_request` (400). */
export const malformedCredentials = (description: string): OAuthError => invalidRequest(description, { 'www-authenticate': bearerChallenge('invalid_request', description) });
export const invalidToken = (description: string): OAuthError => new OAuthError('invalid_token', description, 401, { 'www-authenticate': bearerChallenge('invalid_token', description) });
export const insufficientScope = (description: string, scope?: string): OAuthError =>
  new OAuthError('insufficient_scope', description, 403, { 'www-authenticate': bearerChallenge('insufficient_scope', description, scope) });

// RFC 7009 §2.2.1
export const unsupportedTokenType = make('unsupported_token_type');

/**
 * RFC 8693 §2.2.2: "If the authorization server is unwilling or unable to issue a token for any
 * target service indicated by the resource or audience parameters, the invalid_target error code
 * SHOULD be used"; RFC 8707 §2 uses it for a resource that is "invalid, missing, unknown, or malformed".
 */
export const invalidTarget = make('invalid_target');

/** 429 with `Retry-After`, still with an RFC 6749 error body. */
export const tooManyRequests = (description: string, retryAfterSeconds: number): OAuthError =>
  new OAuthError('temporarily_unavailable', description, 429, { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) });

/** 413 for an oversized body, still with an RFC 6749 error body. */
export const requestTooLarge = make('invalid_request', 413);

export function isOAuthError(value: unknown): value is OAuthError {
  return value instanceof OAuthError;
}
