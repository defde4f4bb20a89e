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
  if (target.responseMode === 'query') return { kind: 'redirect', url: withQueryParameters(target.redirectUri, fields), fields };
  const url = new URL(target.redirectUri);
  url.hash = new URLSearchParams(fields).toString();
  return { kind: 'redirect', url: url.toString(), fields };
}

/**
 * `uri` with `fields` added to its query. RFC 6749 §3.1.2: the query of a redirection endpoint "MUST
 * be retained when adding additional query parameters": it is kept as registered, not decoded and
 * encoded again, which would turn `caf%E9` (not UTF-8) into `caf%EF%BF%BD` and `flag` into `flag=`.
 * Only a parameter named as one of `fields` is left out, so that the client reads one `state`, the
 * one sent back, and not one it registered.
 */
export function withQueryParameters(uri: string, fields: Record<string, string>): string {
  const url = new URL(uri);
  const added = new URLSearchParams(fields).toString();
  if (added === '') return url.toString();
  const query = url.search.slice(1);
  const kept = query === '' ? [] : query.split('&').filter((pair) => ![...new URLSearchParams(pair).keys()].some((name) => Object.hasOwn(fields, name)));
  url.search = [...kept, added].join('&');
  return url.toString();
}
