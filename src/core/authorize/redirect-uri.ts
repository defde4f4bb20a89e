/**
 * RFC 6749 §3.1.2.3 and RFC 9700 §4.1.3: redirect URIs are compared as exact strings, with one
 * exception. RFC 8252 §7.3: for loopback IP redirect URIs of native apps "the authorization server
 * MUST allow any port to be specified at the time of the request".
 */
export function matchRedirectUri(registered: readonly string[], requested: string): boolean {
  if (registered.includes(requested)) return true;
  const loopback = withoutPort(requested);
  return loopback !== undefined && registered.some((uri) => withoutPort(uri) === loopback);
}

/**
 * A loopback IP redirect URI (`http://127.0.0.1` or `http://[::1]`) written without its port, or
 * undefined for any other URI. Read as written, not as the URL parser reads it: only the port may
 * differ from the registered URI (RFC 9700 §4.1.3, "except for port numbers in loopback redirect
 * URIs"). The parser would take a fragment (RFC 6749 §3.1.2: a redirect URI "MUST NOT include a
 * fragment component"), dot segments, a backslash, a tab, an upper-case scheme, an empty query or
 * `2130706433` for 127.0.0.1 as the registered URI, and none of them is. No user name either: the
 * host must follow `http://` at once.
 */
function withoutPort(uri: string): string | undefined {
  const match = LOOPBACK.exec(uri);
  if (!match) return undefined;
  const [, host, port, rest] = match;
  if (port !== undefined && Number(port) > 65535) return undefined;
  return `http://${host}${rest}`;
}

// After the host, an optional port, then nothing or a path or query: `#`, `\`, `@` and the rest
// cannot follow the host or port, and whatever follows is compared as written.
const LOOPBACK = /^http:\/\/(127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?((?:[/?].*)?)$/s;
