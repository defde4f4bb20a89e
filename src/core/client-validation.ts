import type { Client, ClientType, JsonWebKeySet, NewClient } from '../storage/repositories/clients.ts';
import { internalRange } from './addresses.ts';
import { checkJwks } from './client-jwks.ts';
import type { GatehouseConfig } from './config.ts';
import type { ScopePolicy } from './scopes.ts';
import { ValidationError } from './validation.ts';

/** Grant types a client can be registered for. */
export const GRANT_TYPES = [
  'client_credentials',
  'authorization_code',
  'refresh_token',
  'password',
  'implicit',
  'urn:ietf:params:oauth:grant-type:token-exchange',
] as const;

export interface ClientInput {
  name: string;
  description?: string;
  type: ClientType;
  ownerUserId?: string | null;
  baseUrl?: string | null;
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  grantTypes: string[];
  scopes: string[];
  /** Defaults to all of `scopes`. */
  defaultScopes?: string[];
  isAdmin?: boolean;
  firstParty?: boolean;
  allowImpersonation?: boolean;
  isResourceServer?: boolean;
  /** Public keys for `private_key_jwt` (RFC 7523); null removes them. Confidential clients only. */
  jwks?: JsonWebKeySet | null;
  /** Where Logout Tokens are posted (Back-Channel Logout 1.0 §2.2); null removes it. */
  backchannelLogoutUri?: string | null;
  backchannelLogoutSessionRequired?: boolean;
}

/**
 * Who registers or changes a client. Operators (admin API, command line) run the server and are
 * trusted with its network; a developer in the portal is anyone with an account, and the
 * back-channel logout URI they register is one Gatehouse's own server posts to (see
 * checkBackchannelLogoutUri).
 */
export type Registrant = 'operator' | 'developer';

/**
 * Characters that are not seen but change how the text around them reads: control characters,
 * line and paragraph separators, and format characters — bidi overrides, embeddings and isolates
 * (U+202A–U+202E, U+2066–U+2069), direction marks, zero-width spaces. A client's name and
 * description are shown on the consent page, where "Trusted App" followed by U+202E would show
 * "wants to access your account" reversed, and a zero-width space makes a look-alike of a known
 * name (Unicode TR #36 §2). The zero-width non-joiner and joiner stay: Persian and Indic writing and
 * emoji sequences need them. A description may have line breaks and tabs.
 */
export const HIDDEN_IN_NAME = /(?![\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const HIDDEN_IN_DESCRIPTION = /(?![\u200C\u200D\t\n\r])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

function checkVisible(field: 'name' | 'description', value: string, hidden: RegExp): void {
  const found = hidden.exec(value)?.[0];
  if (found === undefined) return;
  const code = `U+${found.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
  throw new ValidationError(field, `the ${field} contains an invisible or control character (${code}), which could disguise it on the consent page`);
}

/**
 * The longest values a client takes, whoever registers it (the admin API's schema states them too,
 * for its document; the command line and the portal reach only these). Each is shown on a page or
 * kept in every cached copy of the client, and a URI is compared on every authorization request.
 */
export const CLIENT_LIMITS = { name: 200, description: 2000, url: 2000, uris: 100 } as const;

/**
 * A client as it is stored, from what was asked for, checked as it is wherever a client is registered
 * or changed. `held`: what the client has now, on a change (nothing for a new client): kept even
 * where today's rules would refuse it.
 */
export function validateClient(
  { scopes, config }: { scopes: ScopePolicy; config: Pick<GatehouseConfig, 'implicit'> },
  input: ClientInput & { id: string },
  registrant: Registrant,
  held: Pick<Client, 'grantTypes' | 'redirectUris' | 'postLogoutRedirectUris' | 'name' | 'description' | 'baseUrl' | 'backchannelLogoutUri'> = {
    grantTypes: [],
    redirectUris: [],
    postLogoutRedirectUris: [],
    name: '',
    description: '',
    baseUrl: null,
    backchannelLogoutUri: null,
  },
): NewClient {
  const name = input.name?.trim();
  if (!name) throw new ValidationError('name', 'a client needs a name');
  if (name.length > CLIENT_LIMITS.name) throw new ValidationError('name', `the name is longer than ${CLIENT_LIMITS.name} characters`);
  if (name !== held.name) checkVisible('name', name, HIDDEN_IN_NAME);
  const description = input.description?.trim() ?? '';
  if (description !== held.description) {
    if (description.length > CLIENT_LIMITS.description) throw new ValidationError('description', `the description is longer than ${CLIENT_LIMITS.description} characters`);
    checkVisible('description', description, HIDDEN_IN_DESCRIPTION);
  }
  if (input.type !== 'confidential' && input.type !== 'public') throw new ValidationError('type', 'type must be confidential or public');

  const grantTypes = [...new Set(input.grantTypes)];
  for (const grantType of grantTypes) {
    if (!(GRANT_TYPES as readonly string[]).includes(grantType)) throw new ValidationError('grant_types', `unknown grant type "${grantType}"`);
  }
  if (input.type === 'public') {
    // RFC 6749 §4.4 and §4.3: these grants authenticate the client, which a public client cannot do.
    for (const grantType of ['client_credentials', 'password']) {
      if (grantTypes.includes(grantType)) throw new ValidationError('grant_types', `a public client cannot use ${grantType}`);
    }
  }
  // With the flow off, /authorize answers response_type=token with unsupported_response_type
  // (RFC 6749 §4.2.2.1) whatever the client holds: say so now, not to the developer's first user.
  if (grantTypes.includes('implicit') && !config.implicit.enabled && !held.grantTypes.includes('implicit')) {
    throw new ValidationError(
      'grant_types',
      'the implicit flow is turned off on this server; an operator turns it on with "implicit": {"enabled": true} (implicit.enabled) in the configuration file',
    );
  }

  const isAdmin = input.isAdmin ?? false;
  // A developer manages the secrets and keys of the applications they own in the portal: owning a
  // back office would hand its admin scopes to whoever can sign in as its owner.
  if (isAdmin && input.ownerUserId) throw new ValidationError('owner_user_id', 'an admin client has no owner: back offices are managed by operators, not in the developer portal');
  const allowed = [...new Set(input.scopes)];
  const scopeProblem = scopes.checkClientScopes(allowed, isAdmin);
  if (scopeProblem) throw new ValidationError('scopes', scopeProblem);
  const defaultScopes = [...new Set(input.defaultScopes ?? allowed)];
  const notAllowed = defaultScopes.find((s) => !allowed.includes(s));
  if (notAllowed) throw new ValidationError('default_scopes', `the default scope "${notAllowed}" is not among the client's scopes`);

  // A URI the client already holds is kept as it is, as a held grant type is: one stored before the
  // current rule keeps working, and does not stand in the way of other changes (removing a leaked
  // key, narrowing scopes). Every URI added is checked.
  // A URI listed twice is registered once, as a repeated grant type or scope is.
  const redirectUris = checkUriCount('redirect_uris', [...new Set(input.redirectUris ?? [])], held.redirectUris).map((uri) =>
    held.redirectUris.includes(uri) ? uri : checkRedirectUri('redirect_uris', uri),
  );
  const postLogoutRedirectUris = checkUriCount('post_logout_redirect_uris', [...new Set(input.postLogoutRedirectUris ?? [])], held.postLogoutRedirectUris).map((uri) =>
    held.postLogoutRedirectUris.includes(uri) ? uri : checkRedirectUri('post_logout_redirect_uris', uri),
  );
  if ((grantTypes.includes('authorization_code') || grantTypes.includes('implicit')) && redirectUris.length === 0) {
    throw new ValidationError('redirect_uris', 'authorization_code and implicit need at least one redirect URI');
  }
  const baseUrl = !input.baseUrl ? null : input.baseUrl === held.baseUrl ? input.baseUrl : checkUrl('base_url', input.baseUrl);
  const backchannelLogoutUri =
    input.backchannelLogoutUri === undefined || input.backchannelLogoutUri === null || input.backchannelLogoutUri === held.backchannelLogoutUri
      ? (input.backchannelLogoutUri ?? null)
      : checkBackchannelLogoutUri(input.backchannelLogoutUri, registrant);
  const jwks = checkJwks(input.jwks);
  if (jwks && input.type === 'public') throw new ValidationError('jwks', 'a public client cannot authenticate, so it has no keys');

  return {
    id: input.id,
    name,
    description,
    ownerUserId: input.ownerUserId ?? null,
    type: input.type,
    baseUrl,
    redirectUris,
    postLogoutRedirectUris,
    grantTypes,
    scopes: allowed,
    defaultScopes,
    isAdmin,
    firstParty: input.firstParty ?? false,
    allowImpersonation: input.allowImpersonation ?? false,
    isResourceServer: input.isResourceServer ?? false,
    jwks,
    backchannelLogoutUri,
    backchannelLogoutSessionRequired: input.backchannelLogoutSessionRequired ?? false,
  };
}

/**
 * The one rule for back-channel logout URIs, wherever a client is registered or changed. Back-Channel
 * Logout 1.0 §2.2: "an absolute URI ... MAY contain port, path, and query parameter components.
 * However, it MUST NOT include a fragment component." Checked as a redirect URI is (https; plain
 * http on loopback only; no user name, no wildcard, no fragment), save that only http and https
 * will do: Gatehouse itself posts to it, where a private-use scheme means nothing.
 *
 * Gatehouse's server makes that request, from inside its network: a URI registered by a developer
 * in the portal must not turn it against that network (server-side request forgery, OWASP API7).
 * For them it must be https, and its host must not be `localhost` or a name under `.localhost`
 * (RFC 6761 §6.3: they resolve to loopback) nor an IP literal in a loopback, private, shared,
 * link-local, unique-local, multicast, documentation or other special-purpose range that is not
 * globally reachable (see internalRange), IPv6 addresses that carry an IPv4 one judged by it.
 * The WHATWG URL parser has already read `https://2130706433/` or `https://0x7f.1/` as
 * 127.0.0.1. A DNS name that resolves to such an address is not caught here, since what it
 * resolves to may change: it is resolved and judged when a Logout Token is posted
 * (BackChannelLogout).
 */
export function checkBackchannelLogoutUri(uri: string, registrant: Registrant): string {
  const field = 'backchannel_logout_uri';
  const what = 'the back-channel logout URI';
  if (uri.length > CLIENT_LIMITS.url) throw new ValidationError(field, `${what} is longer than ${CLIENT_LIMITS.url} characters`);
  const url = URL.parse(uri);
  if (url && url.protocol !== 'https:' && (url.protocol !== 'http:' || registrant === 'developer')) {
    const http = registrant === 'developer' ? '' : ' (plain http is only for 127.0.0.1, [::1] and localhost)';
    throw new ValidationError(field, `${what} "${uri}" must use https${http}`);
  }
  checkRedirectUri(field, uri);
  if (registrant === 'developer' && url) {
    const host = url.hostname.replace(/\.$/, '');
    if (host === 'localhost' || host.endsWith('.localhost')) {
      throw new ValidationError(field, `${what} "${uri}" must not be on localhost: Gatehouse's server posts to it, and would post to itself`);
    }
    const range = internalRange(host);
    if (range !== undefined) {
      const address = range === 'this host' ? 'an address of this host' : `a ${range} address`;
      throw new ValidationError(field, `${what} "${uri}" must not be on ${address}: Gatehouse's server posts to it, and only to addresses on the internet, never into its own network`);
    }
  }
  return uri;
}

const LOOPBACK_HOSTS = ['127.0.0.1', '[::1]', 'localhost'];
// RFC 8252 §7.1: "a URI scheme based on a domain name under their control, expressed in reverse
// order", such as com.example.app — a dot is what tells it from a scheme some other app may claim.
const PRIVATE_USE_SCHEME = /^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+:$/;

/**
 * The one rule for redirect URIs and post-logout redirect URIs, wherever a client is registered or
 * changed — admin API, command line, developer portal. A post-logout redirect URI sends the browser
 * back to the client just as a redirect URI does (RP-Initiated Logout 1.0 §3.1: it "SHOULD use the
 * https scheme"), so it gets no more leeway. Returns the URI as given: it is compared as an exact string.
 *
 * - https; plain http only on the loopback interface (RFC 8252 §7.3), where nothing crosses a
 *   network; or a private-use scheme in reverse-domain form for native apps (RFC 8252 §7.1). Any
 *   other scheme (ftp:, blob:, javascript:, …) has no business receiving an authorization response.
 * - No userinfo: `https://app.example@evil.example/` reads as one host and sends to another.
 * - No `*` in the host: redirect URIs are matched exactly (RFC 9700 §2.1, §4.1.3), so a wildcard
 *   is never a pattern, and a URI that looks like one only misleads whoever reads the registration.
 * - Nothing but ASCII, no space or control character (see checkNoSpaceOrControl), no backslash,
 *   the host of an http or https URI right after `//`, and no percent-encoding in the host: the URI
 *   registered is the one redirected to.
 * - RFC 6749 §3.1.2: it "MUST NOT include a fragment component". Any '#' is refused, an empty
 *   fragment too: URL.hash is '' for a bare '#', which would be stored and compared as given.
 *
 * A client stored before this rule keeps its URIs and keeps working, and its other fields stay
 * editable: validateClient checks only the URIs a change adds.
 */
export function checkRedirectUri(field: string, uri: string): string {
  const what = field === 'post_logout_redirect_uris' ? 'the post-logout redirect URI' : field === 'backchannel_logout_uri' ? 'the back-channel logout URI' : 'the redirect URI';
  if (uri.length > CLIENT_LIMITS.url) throw new ValidationError(field, `${what} is longer than ${CLIENT_LIMITS.url} characters`);
  const url = URL.parse(uri);
  if (!url) throw new ValidationError(field, `"${uri}" is not an absolute URL`);
  checkNoSpaceOrControl(field, what, uri);
  // RFC 3986 §2: a URI is ASCII. Browsers read a host written otherwise through UTS #46, which drops
  // invisible characters (U+200B, U+00AD) and reads look-alikes as what they resemble (U+3002 as
  // "."), so `https://app.example\u3002evil.example/` goes to a host under evil.example.
  const unicode = /[^\x00-\x7f]/u.exec(uri)?.[0];
  if (unicode !== undefined) {
    const code = `U+${unicode.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    throw new ValidationError(field, `${what} "${uri}" must be written in ASCII, as a URI is: it holds ${code}; write a host in its xn-- form, and percent-encode other characters`);
  }
  if (uri.includes('#')) throw new ValidationError(field, `${what} "${uri}" must not have a fragment (no "#")`);
  if (url.protocol === 'http:') {
    if (!LOOPBACK_HOSTS.includes(url.hostname)) {
      throw new ValidationError(field, `${what} "${uri}" must use https (plain http is only for 127.0.0.1, [::1] and localhost)`);
    }
  } else if (url.protocol !== 'https:' && !PRIVATE_USE_SCHEME.test(url.protocol)) {
    throw new ValidationError(field, `${what} "${uri}" must use https, http on the loopback address, or a private-use scheme such as com.example.app:/callback`);
  }
  // RFC 3986 has no backslash in a URI; browsers read one in an http or https URI as "/", so
  // `https://app.example\@evil.example/` would be registered as one address and redirect to another.
  if (uri.includes('\\')) throw new ValidationError(field, `${what} "${uri}" must not hold a backslash ("\\"), which browsers read as "/"`);
  // RFC 9110 §4.2: an http or https URI has its host after "//". Browsers find the host after any run
  // of slashes, or none: `https:///evil.example/` reads as a path and goes to evil.example.
  if ((url.protocol === 'https:' || url.protocol === 'http:') && !/^[a-z]+:\/\/[^/]/i.test(uri)) {
    throw new ValidationError(field, `${what} "${uri}" must name its host right after "${url.protocol}//"`);
  }
  // The authority as written, not as parsed: `https://@host/` has an empty userinfo that URL drops.
  const authority = /^[^:]*:\/\/([^/?#]*)/.exec(uri)?.[1] ?? '';
  if (url.username !== '' || url.password !== '' || authority.includes('@')) {
    throw new ValidationError(field, `${what} "${uri}" must not hold a user name or password (nothing before "@" in the host)`);
  }
  // A non-special scheme keeps its host percent-encoded, so %2A is a star too.
  if (/\*|%2a/i.test(url.host)) throw new ValidationError(field, `${what} "${uri}" must not have a wildcard ("*") in the host: redirect URIs are matched exactly`);
  // Browsers decode a percent-encoded host (WHATWG URL's host parser), then read it through UTS #46
  // as a host written in Unicode: `https://app.example%E3%80%82evil.example/` is the ASCII spelling
  // of the U+3002 refused above, and goes to a host under evil.example. A host never needs it (an
  // internationalized one has its xn-- form), so no `%` in the authority as written.
  if (authority.includes('%')) {
    throw new ValidationError(field, `${what} "${uri}" must not percent-encode its host ("%"), which browsers decode into another host; write a host in its xn-- form`);
  }
  return uri;
}

/**
 * RFC 3986 §2 leaves no room in a URI for a space or a control character, and the WHATWG URL
 * parser, which builds the redirect, drops tabs and line breaks anywhere and spaces and controls at
 * either end: `https://app.exa\tmple/cb` would be registered and shown as one thing and send the
 * browser to `https://app.example/cb`, and `https://app.example/cb\n` is not what a client sends.
 */
function checkNoSpaceOrControl(field: string, what: string, uri: string): void {
  if (/[\x00-\x20\x7f-\x9f]/.test(uri)) throw new ValidationError(field, `${what} ${JSON.stringify(uri)} must not hold a space or a control character`);
}

/** At most CLIENT_LIMITS.uris of a kind; a client holding more from before may keep them, or drop some, but add none. */
function checkUriCount(field: 'redirect_uris' | 'post_logout_redirect_uris', uris: string[], held: readonly string[]): string[] {
  if (uris.length > CLIENT_LIMITS.uris && uris.some((uri) => !held.includes(uri))) {
    throw new ValidationError(field, `a client has at most ${CLIENT_LIMITS.uris} ${field === 'redirect_uris' ? 'redirect URIs' : 'post-logout redirect URIs'}`);
  }
  return uris;
}

function checkUrl(field: string, value: string): string {
  if (value.length > CLIENT_LIMITS.url) throw new ValidationError(field, `the ${field === 'base_url' ? 'base URL' : 'URL'} is longer than ${CLIENT_LIMITS.url} characters`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(field, `"${value}" is not an absolute URL`);
  }
  checkNoSpaceOrControl(field, 'the URL', value);
  if (['javascript:', 'data:', 'vbscript:', 'file:'].includes(url.protocol)) throw new ValidationError(field, `"${value}" uses a forbidden scheme`);
  return value;
}
