import { invalidRequest } from './errors.ts';

/**
 * One parameter of a protocol request — at the authorization, token, introspection and revocation
 * endpoints alike — as a single string, or undefined when it was not sent. RFC 6749 §3.1 and §3.2:
 * "Parameters sent without a value MUST be treated as if they were omitted from the request", so an
 * empty one is undefined; and "Request and response parameters MUST NOT be included more than once",
 * so a repeated one (an array from a form body) is refused, as is a value that is no string (a JSON
 * body may carry anything).
 */
export function requestParameter(params: Readonly<Record<string, unknown>>, name: string): string | undefined {
  if (!Object.hasOwn(params, name)) return undefined;
  const value = params[name];
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (Array.isArray(value)) throw invalidRequest(`the parameter ${name} is included more than once`);
  throw invalidRequest(`the parameter ${name} must be a string`);
}
