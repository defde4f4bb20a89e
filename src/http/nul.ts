import type { FastifyRequest } from 'fastify';

/**
 * Where a request carries a NUL character: the name of the path parameter, query parameter or body
 * field (`redirect_uris[0]`), or undefined. No input of Gatehouse may hold one — PostgreSQL text
 * cannot even store it — so such a request is refused before any route looks at it.
 */
export function fieldWithNul(request: FastifyRequest): string | undefined {
  return fieldWhere(request, (text) => text.includes('\0'));
}

/**
 * Where a request carries a lone surrogate (`"\ud800"` in a JSON body: a string that is not Unicode
 * text), as fieldWithNul. Neither database stores one: each writes U+FFFD in its place, so the
 * record would hold something other than what was asked for (a redirect URI stored as JSON text even
 * keeps it, and matches no URI a browser can send).
 */
export function fieldWithLoneSurrogate(request: FastifyRequest): string | undefined {
  return fieldWhere(request, (text) => !text.isWellFormed());
}

function fieldWhere(request: FastifyRequest, holds: (text: string) => boolean): string | undefined {
  return find(request.params, '', holds) ?? find(request.query, '', holds) ?? find(request.body, '', holds);
}

function find(value: unknown, path: string, holds: (text: string) => boolean, depth = 0): string | undefined {
  if (typeof value === 'string') return holds(value) ? path || 'the request' : undefined;
  // Bodies are at most 64 KiB and Fastify's JSON parser limits nesting; this bounds the walk anyway.
  if (typeof value !== 'object' || value === null || depth > 32) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = find(value[i], `${path}[${i}]`, holds, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  for (const [name, member] of Object.entries(value)) {
    if (holds(name)) return path ? `${path}.${printable(name)}` : printable(name);
    const found = find(member, path ? `${path}.${name}` : name, holds, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** A member name as a problem may name it: a NUL written `\0`, a lone surrogate as its escape. */
const printable = (name: string): string => name.replaceAll('\0', '\\0').replace(/\p{Surrogate}/gu, (unit) => `\\u${unit.charCodeAt(0).toString(16)}`);
