import type { FastifyBodyParser, FastifyInstance } from 'fastify';
import { invalidRequest } from '../../core/errors.ts';

/**
 * The protocol endpoints' JSON body parser: Fastify's own (secure-json-parse, with the instance's
 * `__proto__` and `constructor.prototype` settings, and its errors for an empty or malformed body),
 * then a refusal of any member of the top-level object given more than once.
 *
 * RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once." JSON.parse
 * keeps only the last of repeated names (RFC 8259 §4: names "SHOULD be unique", and receivers differ
 * on what a repeat means), so the token, introspection and revocation endpoints would take one of
 * two values silently; a form body keeps repeats as arrays, which they refuse. A body that is an
 * object costs one more pass over its text, reading its top-level member names.
 */
export function jsonBodyParser(app: FastifyInstance): FastifyBodyParser<string> {
  const { onProtoPoisoning = 'error', onConstructorPoisoning = 'error' } = app.initialConfig as { onProtoPoisoning?: 'error'; onConstructorPoisoning?: 'error' };
  const parse = app.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning);
  return (request, text, done) => {
    parse(request, text, (error, body) => {
      if (error) return done(error);
      if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
        const repeated = repeatedMember(text);
        if (repeated !== undefined) return done(invalidRequest(`the parameter ${printable(repeated)} is included more than once`));
      }
      done(null, body);
    });
  };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * The first member name of the top-level object of `text` given twice, decoded (`"sc\u006fpe"` is
 * `scope`). `text` is JSON that JSON.parse accepted, so outside strings each member of that object
 * has exactly one colon at depth 1, just after its name, and nothing else there is a colon.
 */
function repeatedMember(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  let lastString = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = closingQuote(text, i);
      if (depth === 1) lastString = text.slice(i, end + 1);
      i = end;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth += 1;
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth -= 1;
    else if (c === COLON && depth === 1) {
      // The string just before a colon at depth 1 is the member's name.
      const name = JSON.parse(lastString) as string;
      if (seen.has(name)) return name;
      seen.add(name);
    }
  }
  return undefined;
}

/** Where the string opened at `open` ends: the next quote not escaped by an odd run of backslashes. */
function closingQuote(text: string, open: number): number {
  let close = text.indexOf('"', open + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(close - 1 - backslashes) === BACKSLASH) backslashes += 1;
    if (backslashes % 2 === 0) return close;
    close = text.indexOf('"', close + 1);
  }
}

/** RFC 6749 §5.2: an error description holds printable ASCII other than `"` and `\`. */
const printable = (name: string): string =>
  name === '' ? 'with an empty name' : (name.length > 64 ? `${name.slice(0, 64)}...` : name).replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?');
