import type { ResponseMode } from './request.ts';

/**
 * How the authorization response reaches the client: a redirect, or a self-submitting form. Both
 * carry the response parameters (`fields`), which a redirect has in its URL too.
 */
export type AuthorizationResponse =
  | { kind: 'redirect'; url: string; fields: Record<string, string> }
  | { kind: 'form_post'; action: string; fields: Record<string, string> };

/**
 * Puts the response parameters where the response mode says (RFC 6749 §4.1.2 query, §4.2.2
 * fragment; OAuth 2.0 Form Post Response Mode), always with `iss` (RFC 9207) and the `state`
 * echoed exactly as received.
 */
export function authorizationResponse(
  target: { redirectUri: string; responseMode: ResponseMode; state: string | undefined },
  issuer: string,
  params: Record<string, string | undefined>,
): AuthorizationResponse {
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(params)) if (value !== undefined) fields[name] = value;
  if (target.state !== undefined) fields.state = target.state;
  fields.iss = issuer;

  if (target.responseMode === 'form_post') return { kind: 'form_post', action: target.redirectUri, fields };
  const url = new URL(target.redirectUri);
  if (target.responseMode === 'query') {
    for (const [name, value] of Object.entries(fields)) url.searchParams.set(name, value);
    return { kind: 'redirect', url: url.toString(), fields };
  }
  url.hash = new URLSearchParams(fields).toString();
  return { kind: 'redirect', url: url.toString(), fields };
}
