import { invalidClient, invalidRequest } from '../errors.ts';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none';

export interface PresentedCredentials {
  method: ClientAuthMethod;
  clientId: string;
  secret: string | undefined;
}

/**
 * Reads the client's credentials from the `Authorization: Basic` header (RFC 6749 §2.3.1) or the
 * body. RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
 * request" — two methods, or a body `client_id` that contradicts the header, are `invalid_request`.
 */
export function presentedCredentials(authorization: string | undefined, params: Readonly<Record<string, string | undefined>>): PresentedCredentials {
  const bodyId = params.client_id;
  const bodySecret = params.client_secret;

  if (authorization !== undefined && /^basic /i.test(authorization)) {
    if (bodySecret !== undefined) throw invalidRequest('the client authenticated with both the Authorization header and client_secret in the body');
    const { clientId, secret } = decodeBasic(authorization.slice(6).trim());
    if (bodyId !== undefined && bodyId !== clientId) throw invalidRequest('client_id in the body does not match the Authorization header');
    return { method: 'client_secret_basic', clientId, secret };
  }
  if (authorization !== undefined && authorization.trim() !== '') {
    // Another scheme (e.g. Bearer) is not a client authentication method of the token endpoint.
    throw invalidClient('unsupported client authentication scheme in the Authorization header', true);
  }
  if (bodyId === undefined || bodyId === '') throw invalidClient('client authentication is required: send client_id (and client_secret) or use HTTP Basic');
  if (bodySecret !== undefined) return { method: 'client_secret_post', clientId: bodyId, secret: bodySecret };
  return { method: 'none', clientId: bodyId, secret: undefined };
}

function decodeBasic(encoded: string): { clientId: string; secret: string } {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) throw invalidClient('the Basic credentials are not valid base64', true);
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) throw invalidClient('the Basic credentials must be client_id:client_secret', true);
  try {
    return { clientId: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    throw invalidClient('the Basic credentials are not correctly form-encoded (RFC 6749 §2.3.1)', true);
  }
}

// RFC 6749 §2.3.1: the client identifier and password are encoded with application/x-www-form-urlencoded.
// Generated ids and secrets contain neither `%` nor `+`: they skip the decoding.
const formDecode = (value: string): string =>
  value.includes('%') || value.includes('+') ? decodeURIComponent(value.replace(/\+/g, ' ')) : value;
