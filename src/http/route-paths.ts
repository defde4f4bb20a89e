/**
 * A pattern matching the request paths a Fastify route URL serves: each `:name` segment stands for
 * one path segment, everything else is literal.
 */
export const pathPattern = (url: string): RegExp =>
  new RegExp(`^${url.split(/(:\w+)/).map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('')}$`);
