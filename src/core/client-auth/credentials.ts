import { decodeJwt } from 'jose';
import type { ClientRegistry } from '../clients.ts';
import { invalidClient, invalidRequest } from '../errors.ts';
import { CLIENT_ASSERTION_TYPE } from './assertion.ts';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';

export interface PresentedCredentials {
  method: ClientAuthMethod;
  clientId: string;
  secret: string | undefined;
  /** The signed JWT of `private_key_jwt`. */
  assertion?: string;
  /** The `Authorization` header of `client_secret_basic`, for remembering how it reads once it has authenticated. */
  authorization?: string;
}

/**
 * Reads the client's credentials from the `Authorization: Basic` header (RFC 6749 §2.3.1) or the
 * body. RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
 * request" — two methods, or a body `client_id` that contradicts the header, are `invalid_request`.
 */
export function presentedCredentials(
  authorization: string | undefined,
  params: Readonly<Record<string, string | undefined>>,
  /** Where the readings of Basic headers that authenticated before are kept. */
  readings?: Pick<ClientRegistry, 'knownBasic'>,
): PresentedCredentials {
  const bodyId = params.client_id;
  const bodySecret = params.client_secret;

  if (params.client_assertion !== undefined || params.client_assertion_type !== undefined) {
    if ((authorization !== undefined && authorization.trim() !== '') || bodySecret !== undefined) {
      throw invalidRequest('the client authenticated with a client assertion and another method');
    }
    return assertionCredentials(params.client_assertion_type, params.client_assertion, bodyId);
  }

  const known = authorization !== undefined ? readings?.knownBasic(authorization) : undefined;
  if (known !== undefined || (authorization !== undefined && /^basic /i.test(authorization))) {
    if (bodySecret !== undefined) throw invalidRequest('the client authenticated with both the Authorization header and client_secret in the body');
    const { clientId, secret } = known ?? decodeBasic(authorization!.slice(6).trim());
    if (bodyId !== undefined && bodyId !== clientId) throw invalidRequest('client_id in the body does not match the Authorization header');
    return { method: 'client_secret_basic', clientId, secret, authorization };
  }
  if (authorization !== undefined && authorization.trim() !== '') {
    // Another scheme (e.g. Bearer) is not a client authentication method of the token endpoint.
    throw invalidClient('unsupported client authentication scheme in the Authorization header', true);
  }
  if (bodyId === undefined || bodyId === '') throw invalidClient('client authentication is required: send client_id (and client_secret) or use HTTP Basic');
  if (bodySecret !== undefined) return { method: 'client_secret_post', clientId: bodyId, secret: bodySecret };
  return { method: 'none', clientId: bodyId, secret: undefined };
}

/**
 * RFC 7521 §4.2 and RFC 7523 §3: the client is the assertion's `sub` (checked against the signature
 * later); a `client_id` sent beside it must name the same client.
 */
function assertionCredentials(type: string | undefined, assertion: string | undefined, bodyId: string | undefined): PresentedCredentials {
  if (type === undefined || type === '') throw invalidRequest('client_assertion_type is required with client_assertion');
  if (type !== CLIENT_ASSERTION_TYPE) throw invalidClient(`the client assertion type is not supported; use ${CLIENT_ASSERTION_TYPE}`);
  if (assertion === undefined || assertion === '') throw invalidRequest('client_assertion is required with client_assertion_type');
  let subject: unknown;
  try {
    subject = decodeJwt(assertion).sub;
  } catch {
    throw invalidClient('the client assertion is not a JWT');
  }
  if (typeof subject !== 'string' || subject === '') throw invalidClient('the client assertion names no client in sub');
  if (bodyId !== undefined && bodyId !== subject) throw invalidClient('client_id does not match the client assertion');
  return { method: 'private_key_jwt', clientId: subject, secret: undefined, assertion };
}

function decodeBasic(encoded: string): { clientId: string; secret: string } {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) throw invalidClient('the Basic credentials are not valid base64', true);
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) throw invalidClient('the Basic credentials must be client_id:client_secret', true);
  try {
    return { clientId: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    throw invalidClient('the Basic credentials are not correctly form-encoded (RFC 6749, section 2.3.1)', true);
  }
}

// RFC 6749 §2.3.1: the client identifier and password are encoded with application/x-www-form-urlencoded.
// Generated ids and secrets contain neither `%` nor `+`: they skip the decoding.
const formDecode = (value: string): string =>
  value.includes('%') || value.includes('+') ? decodeURIComponent(value.replace(/\+/g, ' ')) : value;
