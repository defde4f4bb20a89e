import { createHash } from 'node:crypto';
import { createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, jwtVerify, type FetchImplementation, type JWTPayload } from 'jose';
import { isWellFormed } from '../core/tokens/opaque.ts';
import { missingCredentials, ResourceError } from './errors.ts';

export interface AuthenticatorOptions {
  /** Gatehouse's issuer URL, e.g. `https://auth.example.com`. */
  issuer: string;
  /** The `aud` access tokens must carry (Gatehouse's `tokens.audience`, the issuer by default). */
  audience: string;
  /** Credentials of a resource-server client, for checking API keys through introspection. */
  introspection?: { clientId: string; clientSecret: string };
  /**
   * How long an introspection answer for an API key is reused: the delay before a revoked key is
   * refused here (default 30 s, at most 3600). Never past the key's expiry.
   */
  cacheTtlSeconds?: number;
  /** Clock skew tolerated on `exp` (and `nbf`), in seconds (default 30, at most 300); `iat` is not checked. */
  clockToleranceSeconds?: number;
}

/**
 * More skew than this is not skew but accepting expired tokens: five minutes, the bound Kerberos
 * keeps clocks within. Access tokens live an hour by default.
 */
const MAX_CLOCK_TOLERANCE_SECONDS = 300;
/**
 * A revoked API key is refused here at most this long after its revocation: an hour, the default
 * lifetime of an access token, which an API verifying JWTs on its own accepts until it expires.
 */
const MAX_CACHE_TTL_SECONDS = 3600;

/** Who is calling. */
export interface Principal {
  /** `user`: a person through a client; `client`: a client on its own; `api_key`: an application's API key. */
  kind: 'user' | 'client' | 'api_key';
  subject: string;
  clientId: string;
  scopes: string[];
  /** Set on project tokens: the one project the token may touch. */
  project: string | undefined;
  /** RFC 8693 §4.1: who acts on the subject's behalf (impersonation, delegation). */
  actor: { sub: string; client_id?: string } | undefined;
  /** When the credential expires (epoch seconds); undefined for API keys without expiry. */
  expiresAt: number | undefined;
}

export interface RequestLike {
  headers: Record<string, string | string[] | undefined>;
}

export interface Authenticator {
  /** Authenticates the request's `Authorization` header, or throws a ResourceError. */
  authenticate(request: RequestLike): Promise<Principal>;
  /** Throws `insufficient_scope` unless the principal holds every scope. */
  requireScopes(principal: Principal, scopes: readonly string[]): void;
}

const MAX_CACHE_ENTRIES = 10_000;

/**
 * RFC 9068 §2.2: "iss", "exp", "aud", "sub", "client_id", "iat" and "jti" are REQUIRED. Gatehouse
 * signs no access token without them, so a token that lacks one is no access token of Gatehouse's
 * (a token that would never expire, an ID token's claims, one naming no client) and is refused.
 */
const REQUIRED_CLAIMS = ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'];

const invalidToken = () => new ResourceError('invalid_token', 'the access token is invalid or has expired');
const apiKeysNotAccepted = () => new ResourceError('invalid_token', 'API keys are not accepted here');
const invalidApiKey = () => new ResourceError('invalid_token', 'the API key is invalid, expired or revoked');

/**
 * How long a request to Gatehouse (discovery, introspection) may take, as jose allows the JWKS:
 * one that does not answer is an outage (503), not a reason to hold the API's request open.
 */
const REQUEST_TIMEOUT_MS = 5000;

/**
 * After discovery or a JWKS fetch failed, Gatehouse is not asked again for this long (the 503's
 * `Retry-After`): jose's 30 s cooldown on unknown `kid`s counts from the last fetch that succeeded,
 * so while the JWKS endpoint fails every forged `kid` (and, once the keys are 10 minutes old, every
 * token) would make a request to a Gatehouse that is already struggling.
 */
const RETRY_AFTER_FAILURE_MS = 5000;

/** Gatehouse failed to answer moments ago and is not asked again yet; the middleware answers 503. */
class GatehouseUnavailable extends Error {
  override name = 'GatehouseUnavailable';
}

/**
 * Verifies what Gatehouse issues. Bearer JWTs are verified locally against the JWKS found through
 * discovery (cached; an unknown `kid` triggers one refetch at most every 30 s, so key rotation
 * needs nothing from you). API keys are checked through introspection, with answers cached for
 * `cacheTtlSeconds`.
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const issuer = options.issuer.replace(/\/+$/, '');
  const ttlMs = secondsOption('cacheTtlSeconds', options.cacheTtlSeconds, 30, MAX_CACHE_TTL_SECONDS) * 1000;
  const clockTolerance = secondsOption('clockToleranceSeconds', options.clockToleranceSeconds, 30, MAX_CLOCK_TOLERANCE_SECONDS);
  let metadata: Promise<{ jwks: ReturnType<typeof createRemoteJWKSet>; introspectionEndpoint: string | undefined }> | undefined;
  let discoveryFailedAt = Number.NEGATIVE_INFINITY;
  const apiKeyCache = new Map<string, { expires: number; principal: Principal | undefined }>();
  /** Introspections in flight, by the same key as the cache; each ends up in the cache or fails. */
  const introspecting = new Map<string, Promise<Principal | undefined>>();

  const discover = () => {
    if (!metadata && Date.now() - discoveryFailedAt < RETRY_AFTER_FAILURE_MS) return Promise.reject(new GatehouseUnavailable(`discovery at ${issuer} failed moments ago`));
    metadata ??= (async () => {
      const response = await fetch(`${issuer}/.well-known/oauth-authorization-server`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      if (!response.ok) throw new Error(`discovery at ${issuer} answered ${response.status}`);
      const document = (await response.json()) as { issuer?: string; jwks_uri?: string; introspection_endpoint?: string };
      if (document.issuer !== issuer || !document.jwks_uri) throw new Error(`discovery at ${issuer} returned another issuer or no jwks_uri`);
      return {
        jwks: createRemoteJWKSet(new URL(document.jwks_uri), {
          cooldownDuration: 30_000,
          cacheMaxAge: 600_000,
          timeoutDuration: REQUEST_TIMEOUT_MS,
          [customFetch]: fetchRetryingAfterFailure(),
        }),
        introspectionEndpoint: document.introspection_endpoint,
      };
    })();
    // A failed discovery is not remembered: it is tried again once RETRY_AFTER_FAILURE_MS has passed.
    metadata.catch(() => {
      discoveryFailedAt = Date.now();
      metadata = undefined;
    });
    return metadata;
  };

  async function verifyJwt(token: string): Promise<Principal> {
    if (!isCompact(token)) throw invalidToken();
    // Without the keys, only a token that is no JWT at all is known to be invalid: it is refused as
    // such, decoded on this path only, not on the way of every token verified.
    const withoutKeys = (error: unknown): never => {
      if (!isJwt(token)) throw invalidToken();
      throw error;
    };
    const { jwks } = await discover().catch(withoutKeys);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, { issuer, audience: options.audience, typ: 'at+jwt', clockTolerance, requiredClaims: REQUIRED_CLAIMS }));
    } catch (error) {
      if (keySetUnavailable(error)) withoutKeys(error);
      throw invalidToken();
    }
    // jose checks that iss, aud, exp and iat are there and of their types; these three it does not.
    if (!nonEmptyString(payload.sub) || !nonEmptyString(payload.client_id) || !nonEmptyString(payload.jti)) throw invalidToken();
    return principalFrom(payload, 'jwt');
  }

  /**
   * Who an API key belongs to, from the cache or through introspection. A key Gatehouse cannot have
   * issued (its prefix or checksum is wrong) is refused here, so guessed keys cost Gatehouse
   * nothing; requests that arrive with the same key while it is being introspected share that one
   * introspection.
   */
  async function authenticateApiKey(key: string): Promise<Principal> {
    if (!isWellFormed(key, 'ak')) throw invalidApiKey();
    const cacheKey = createHash('sha256').update(key).digest('base64url');
    const cached = apiKeyCache.get(cacheKey);
    let principal: Principal | undefined;
    if (cached && cached.expires > Date.now()) {
      principal = cached.principal;
    } else {
      let pending = introspecting.get(cacheKey);
      if (!pending) {
        pending = introspectApiKey(key, cacheKey).finally(() => introspecting.delete(cacheKey));
        introspecting.set(cacheKey, pending);
      }
      principal = await pending;
    }
    if (!principal) throw invalidApiKey();
    return principal;
  }

  /** Asks Gatehouse about the key and caches the answer; undefined when it is not an active key. */
  async function introspectApiKey(key: string, cacheKey: string): Promise<Principal | undefined> {
    // Without credentials the answer is known before asking Gatehouse anything, even while it is down.
    if (!options.introspection) throw apiKeysNotAccepted();
    const { introspectionEndpoint } = await discover();
    if (!introspectionEndpoint) throw apiKeysNotAccepted();
    const { clientId, clientSecret } = options.introspection;
    const response = await fetch(introspectionEndpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token: key, token_type_hint: 'api_key' }).toString(),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    // An introspection failure is not the caller's fault; nothing is cached and the error says so.
    if (!response.ok) throw new Error(`introspection answered ${response.status}`);
    const answer = (await response.json()) as JWTPayload & { active?: boolean; token_type?: string };
    const principal = answer.active === true && answer.token_type === 'ApiKey' ? principalFrom(answer, 'api_key') : undefined;
    if (apiKeyCache.size >= MAX_CACHE_ENTRIES) apiKeyCache.delete(apiKeyCache.keys().next().value!);
    // RFC 7662 §4: "If the response contains the exp parameter (expiration), the response MUST NOT
    // be cached beyond the time indicated therein."
    const now = Date.now();
    const expires = principal?.expiresAt === undefined ? now + ttlMs : Math.min(now + ttlMs, principal.expiresAt * 1000);
    apiKeyCache.set(cacheKey, { expires, principal });
    return principal;
  }

  return {
    async authenticate(request) {
      const header = request.headers.authorization;
      if (header === undefined) throw missingCredentials();
      if (typeof header !== 'string') throw new ResourceError('invalid_request', 'send one Authorization header');
      // RFC 6750 §3.1: a request "attempted using an unsupported authentication method" lacks
      // authentication information, and gets the bare challenge, as one without the header does.
      if (!/^(?:bearer|apikey)(?: |$)/i.test(header.trimStart())) throw missingCredentials();
      const match = /^(Bearer|ApiKey) +([\x21-\x7e]{1,8192})$/i.exec(header.trim());
      if (!match) throw new ResourceError('invalid_request', 'the Authorization header must be "Bearer <token>" or "ApiKey <key>"');
      return match[1]!.toLowerCase() === 'apikey' ? authenticateApiKey(match[2]!) : verifyJwt(match[2]!);
    },
    requireScopes(principal, scopes) {
      const missing = scopes.filter((scope) => !principal.scopes.includes(scope));
      if (missing.length > 0) throw new ResourceError('insufficient_scope', `this needs the scope ${missing.join(' ')}`, scopes.join(' '));
    },
  };
}

/** jose's JWKS fetch, which does not ask again within RETRY_AFTER_FAILURE_MS of a failed attempt. */
function fetchRetryingAfterFailure(): FetchImplementation {
  let failedAt = Number.NEGATIVE_INFINITY;
  return async (url, init) => {
    if (Date.now() - failedAt < RETRY_AFTER_FAILURE_MS) throw new GatehouseUnavailable(`the JWKS at ${url} could not be fetched moments ago`);
    try {
      const response = await fetch(url, init);
      if (response.status !== 200) failedAt = Date.now();
      return response;
    } catch (error) {
      failedAt = Date.now();
      throw error;
    }
  };
}

/** Three parts, as a compact JWS has. */
function isCompact(token: string): boolean {
  const first = token.indexOf('.');
  const second = first === -1 ? -1 : token.indexOf('.', first + 1);
  return second !== -1 && token.indexOf('.', second + 1) === -1;
}

/**
 * A compact JWS whose header and claims decode: anything else is refused without the keys, so a
 * garbage token is invalid_token even while Gatehouse cannot be reached, not a 503 to retry with it.
 */
function isJwt(token: string): boolean {
  if (!isCompact(token)) return false;
  try {
    decodeProtectedHeader(token);
    decodeJwt(token);
    return true;
  } catch {
    return false;
  }
}

/**
 * The JWKS could not be fetched (Gatehouse unreachable, slow or answering an error): that says
 * nothing about the token, so it is not `invalid_token` (which tells clients to drop the token);
 * the middleware answers 503 instead.
 */
function keySetUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JWKS_INVALID' || code === 'ERR_JOSE_GENERIC' || error instanceof GatehouseUnavailable) return true;
  // fetch() itself failed (connection refused, DNS): jose passes undici's error through.
  return error instanceof TypeError && error.message === 'fetch failed';
}

function principalFrom(claims: JWTPayload & Record<string, unknown>, source: 'jwt' | 'api_key'): Principal {
  const clientId = typeof claims.client_id === 'string' ? claims.client_id : '';
  const subject = typeof claims.sub === 'string' ? claims.sub : clientId;
  const act = claims.act as { sub?: unknown; client_id?: unknown } | undefined;
  return {
    kind: source === 'api_key' ? 'api_key' : subject === clientId ? 'client' : 'user',
    subject,
    clientId,
    scopes: typeof claims.scope === 'string' && claims.scope ? claims.scope.split(' ') : [],
    project: typeof claims.project === 'string' ? claims.project : undefined,
    actor: act && typeof act.sub === 'string' ? { sub: act.sub, ...(typeof act.client_id === 'string' ? { client_id: act.client_id } : {}) } : undefined,
    expiresAt: typeof claims.exp === 'number' ? claims.exp : undefined,
  };
}

function nonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}

/** A duration option: a number of seconds from 0 to `max`; anything else is a mistake to be told at once. */
function secondsOption(name: string, value: number | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > max) {
    throw new RangeError(`${name} must be a number of seconds from 0 to ${max} (got ${String(value)})`);
  }
  return value;
}
