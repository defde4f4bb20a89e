import type { FastifyRequest } from 'fastify';

/**
 * Where a request carries a NUL character: the name of the path parameter, query parameter or body
 * field (`redirect_uris[0]`), or undefined. No input of Gatehouse may hold one — PostgreSQL text
 * cannot even store it — so such a request is refused before any route looks at it.
 */
export function fieldWithNul(request: FastifyRequest): string | undefined {
  return find(request.params, '') ?? find(request.query, '') ?? find(request.body, '');
}

function find(value: unknown, path: string, depth = 0): string | undefined {
  if (typeof value === 'string') return value.includes('\0') ? path || 'the request' : undefined;
  // Bodies are at most 64 KiB and Fastify's JSON parser limits nesting; this bounds the walk anyway.
  if (typeof value !== 'object' || value === null || depth > 32) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = find(value[i], `${path}[${i}]`, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  for (const [name, member] of Object.entries(value)) {
    if (name.includes('\0')) return path ? `${path}.${name.replaceAll('\0', '\\0')}` : name.replaceAll('\0', '\\0');
    const found = find(member, path ? `${path}.${name}` : name, depth + 1);
    if (found) return found;
  }
  return undefined;
}
