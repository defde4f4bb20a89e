/**
 * An authentication or authorization failure of a protected resource, rendered as RFC 6750 §3:
 * status, a `WWW-Authenticate: Bearer` challenge and a JSON body. `code` is stable for callers.
 */
export class ResourceError extends Error {
  override name = 'ResourceError';
  readonly error: 'invalid_request' | 'invalid_token' | 'insufficient_scope';
  readonly status: number;
  /** The scopes that would have been enough (for `insufficient_scope`). */
  readonly scope: string | undefined;
  readonly code: string;
  /** The request carried no credentials at all (RFC 6750 §3.1). */
  readonly credentialsMissing: boolean;

  constructor(error: ResourceError['error'], description: string, scope?: string, options: { credentialsMissing?: boolean } = {}) {
    super(description);
    this.error = error;
    this.status = error === 'invalid_request' ? 400 : error === 'invalid_token' ? 401 : 403;
    this.scope = scope;
    this.code = `ERR_${error.toUpperCase()}`;
    this.credentialsMissing = options.credentialsMissing ?? false;
  }

  /**
   * RFC 6750 §3. A request with no credentials at all gets a bare challenge (§3.1: "the resource
   * server SHOULD NOT include an error code or other error information"); the body still says why.
   */
  get wwwAuthenticate(): string {
    if (this.credentialsMissing) return 'Bearer realm="api"';
    const quote = (value: string) => value.replace(/["\\]/g, '').replace(/[^\x20-\x7e]/g, '?');
    const parts = [`Bearer realm="api"`, `error="${this.error}"`, `error_description="${quote(this.message)}"`];
    if (this.scope) parts.push(`scope="${quote(this.scope)}"`);
    return parts.join(', ');
  }

  toJSON(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.message };
  }
}

export const missingCredentials = () =>
  new ResourceError('invalid_token', 'send an access token (Authorization: Bearer …) or an API key (Authorization: ApiKey …)', undefined, { credentialsMissing: true });
