/**
 * RFC 6749 §3.1.2.3 and RFC 9700 §4.1.3: redirect URIs are compared as exact strings, with one
 * exception. RFC 8252 §7.3: for loopback IP redirect URIs of native apps "the authorization server
 * MUST allow any port to be specified at the time of the request".
 */
export function matchRedirectUri(registered: readonly string[], requested: string): boolean {
  if (registered.includes(requested)) return true;
  const loopback = parseLoopback(requested);
  if (!loopback) return false;
  return registered.some((uri) => {
    const candidate = parseLoopback(uri);
    return candidate !== undefined && candidate.withoutPort === loopback.withoutPort;
  });
}

function parseLoopback(uri: string): { withoutPort: string } | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' || (url.hostname !== '127.0.0.1' && url.hostname !== '[::1]')) return undefined;
  // Only the port may differ; userinfo would be a way to smuggle another host past a reader.
  if (url.username || url.password) return undefined;
  return { withoutPort: `${url.protocol}//${url.hostname}${url.pathname}${url.search}` };
}
