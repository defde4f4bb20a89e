import type { Client } from '../storage/repositories/clients.ts';
import { clientNetwork } from './addresses.ts';
import { verifyClient, type AuthenticatedClient } from './client-auth/authenticate.ts';
import { presentedCredentials, type ClientAuthMethod, type PresentedCredentials } from './client-auth/credentials.ts';
import { invalidRequest, invalidTarget, OAuthError, tooManyRequests, unauthorizedClient, unsupportedGrantType } from './errors.ts';
import type { FailureCounter } from './rate-limit/failures.ts';
import type { RequestLimiter } from './rate-limit/requests.ts';
import type { GrantServices } from './grants/services.ts';
import { requestParameter } from './parameters.ts';

/** The token request as the HTTP adapter hands it over: body parameters and the Authorization header. */
export interface TokenRequest {
  params: Readonly<Record<string, unknown>>;
  authorization: string | undefined;
  /** The client's network address, for throttling failed authentications. */
  address?: string;
}

/** Throttles on the token endpoint: failed client authentications, and requests per client. */
export interface TokenEndpointLimits {
  authFailures: FailureCounter;
  requests: RequestLimiter;
}

/** RFC 6749 §5.1, with the extensions grants add (`id_token`, `issued_token_type`, …). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer' | 'N_A';
  expires_in: number;
  refresh_token?: string;
  scope?: string;
  id_token?: string;
  issued_token_type?: string;
}

export interface GrantContext {
  client: Client;
  authMethod: ClientAuthMethod;
  /** The grant's declared parameters, each a single string; the rest are stripped. */
  params: Readonly<Record<string, string | undefined>>;
  now: number;
  services: GrantServices;
  /** The client's network address. */
  address: string;
}

/**
 * A grant type: declares the parameters it accepts, validates the request, then issues. Built-in
 * grants register through the same `register()` a custom grant would use.
 */
export interface GrantHandler<Validated = unknown> {
  grantType: string;
  parameters: readonly string[];
  /** Public clients (no secret) may use this grant; RFC 6749 §4.4 forbids it for client credentials. */
  allowsPublicClients: boolean;
  /**
   * Parameters naming the targets of the token (RFC 8693 §2.1: `resource`, `audience`), which a
   * client may repeat to ask for a token for several. Gatehouse issues a token for one target, so a
   * repeated one is `invalid_target` (§2.2.2), not the `invalid_request` of another repeated parameter.
   */
  targetParameters?: readonly string[];
  validate(context: GrantContext): Promise<Validated>;
  issue(context: GrantContext, validated: Validated): Promise<TokenResponse>;
}

/** A hook on every successful token response, e.g. OpenID Connect adding `id_token`. */
export type TokenResponseHook = (context: GrantContext, response: TokenResponse, validated: unknown) => Promise<void> | void;

// Parameters every token request may carry: the grant type and client authentication (RFC 6749 §2.3, §3.2; RFC 7521 §4.2).
const COMMON_PARAMETERS = ['grant_type', 'client_id', 'client_secret', 'client_assertion', 'client_assertion_type', 'scope'];
const MAX_PARAMETER_LENGTH = 8192;

export class TokenEndpoint {
  #grants = new Map<string, { handler: GrantHandler<any>; parameters: string[] }>();
  #hooks: TokenResponseHook[] = [];
  #services: GrantServices;
  #limits: TokenEndpointLimits | undefined;

  constructor(services: GrantServices, limits?: TokenEndpointLimits) {
    this.#services = services;
    this.#limits = limits;
  }

  register(handler: GrantHandler<any>): this {
    if (this.#grants.has(handler.grantType)) throw new Error(`grant type ${handler.grantType} is registered already`);
    this.#grants.set(handler.grantType, { handler, parameters: [...new Set([...COMMON_PARAMETERS, ...handler.parameters])] });
    return this;
  }

  addResponseHook(hook: TokenResponseHook): this {
    this.#hooks.push(hook);
    return this;
  }

  get grantTypes(): string[] {
    return [...this.#grants.keys()];
  }

  /**
   * Client authentication (RFC 6749 §2.3) of the token endpoint and of every endpoint that shares
   * its clients' credentials (introspection, revocation): guessing a client's secret is throttled
   * per client id and address, with one budget across those endpoints, so an attacker cannot lock
   * a client out, nor guess at one endpoint past the throttle of another.
   */
  async authenticateClient(request: Pick<TokenRequest, 'authorization' | 'address'>, params: Readonly<Record<string, string | undefined>>, now: number): Promise<AuthenticatedClient> {
    // Read once; malformed credentials are refused below, after the throttle had its say.
    let presented: PresentedCredentials | undefined;
    let malformed: unknown;
    try {
      presented = presentedCredentials(request.authorization, params, this.#services.clients);
    } catch (error) {
      malformed = error;
    }
    const verify = () => (presented ? verifyClient(this.#services, presented, now) : Promise.reject(malformed));
    const limits = this.#limits;
    if (!limits) return verify();
    // Client ids are at most 256 characters: a longer one, refused later, must not make every
    // counted failure a key of kilobytes (in memory, or in Redis).
    const claimed = presented?.clientId ?? params.client_id ?? basicClientId(request.authorization);
    const failureKey = `${claimed.length > 256 ? claimed.slice(0, 256) : claimed}|${clientNetwork(request.address ?? '')}`;
    const pending = limits.authFailures.blockedFor(failureKey, now);
    const blocked = typeof pending === 'number' ? pending : await pending;
    if (blocked > 0) throw tooManyRequests('too many failed client authentications; try again later', blocked);
    try {
      return await verify();
    } catch (error) {
      if (error instanceof OAuthError && error.error === 'invalid_client') await limits.authFailures.fail(failureKey, now);
      throw error;
    }
  }

  /** Answers a token request; every refusal is recorded in the audit log by its RFC error code. */
  async handle(request: TokenRequest): Promise<TokenResponse> {
    try {
      return await this.#handle(request);
    } catch (error) {
      if (error instanceof OAuthError) {
        const clientId = presentedClientId(request.params.client_id, request.authorization);
        const grantType = typeof request.params.grant_type === 'string' ? request.params.grant_type.slice(0, 100) : null;
        const address = request.address ?? null;
        // A flood of refusals (throttled ones above all) is one row a minute per client id as
        // presented, address, error and grant type, with its count: not one row per request.
        const key = JSON.stringify([clientId, address, error.error, grantType]);
        this.#services.audit.recordRepeatable(key, { at: this.#services.clock(), kind: 'token.refused', outcome: 'failure', clientId, userId: null, data: { error: error.error, grant_type: grantType, address } });
      }
      throw error;
    }
  }

  async #handle(request: TokenRequest): Promise<TokenResponse> {
    const grantType = singleParameter(request.params, 'grant_type');
    if (grantType === undefined) throw invalidRequest('grant_type is required');
    const registered = this.#grants.get(grantType);
    if (!registered) throw unsupportedGrantType(`the grant type "${truncate(grantType)}" is not supported`);
    const { handler, parameters } = registered;

    // A plain object: its keys are the grant's declared names only, set in the same order on every
    // request, so V8 gives all of a grant's requests one shape (a prototype-less object would be a
    // slow dictionary, each key added through the runtime).
    const params: Record<string, string | undefined> = {};
    for (const name of parameters) params[name] = singleParameter(request.params, name, handler.targetParameters);

    const now = this.#services.clock();
    const { client, method } = await this.authenticateClient(request, params, now);
    // Requests per client are counted here, at the token endpoint only; synchronous without Redis.
    const taken = this.#limits?.requests.take(client.id, now);
    const wait = taken === undefined || typeof taken === 'number' ? taken : await taken;
    if (wait !== undefined && wait > 0) throw tooManyRequests('the client sent too many token requests; slow down', wait);
    if (!client.grantTypes.includes(grantType)) throw unauthorizedClient(`the client is not allowed the grant type "${grantType}"`);
    if (client.type === 'public' && !handler.allowsPublicClients) throw unauthorizedClient(`a public client cannot use the grant type "${grantType}"`);

    const context: GrantContext = { client, authMethod: method, params, now, services: this.#services, address: request.address ?? '' };
    const validated = await handler.validate(context);
    const response = await handler.issue(context, validated);
    for (const hook of this.#hooks) await hook(context, response, validated);
    return response;
  }
}

/**
 * A parameter as requestParameter reads it (RFC 6749 §3.2: sent once, and empty as good as
 * omitted), except that the `targets` of a grant that lets a client ask for several are refused
 * with `invalid_target` when repeated (see GrantHandler.targetParameters). None of the syntaxes of
 * RFC 6749 Appendix A admits a NUL character (PostgreSQL text cannot even hold one).
 */
function singleParameter(params: Readonly<Record<string, unknown>>, name: string, targets?: readonly string[]): string | undefined {
  if (targets?.includes(name) && Object.hasOwn(params, name) && Array.isArray(params[name])) throw invalidTarget(`a token is issued for one target: send ${name} once`);
  const value = requestParameter(params, name);
  if (value === undefined) return undefined;
  if (value.length > MAX_PARAMETER_LENGTH) throw invalidRequest(`the parameter ${name} is too long`);
  if (value.includes('\0')) throw invalidRequest(`the parameter ${name} contains a NUL character`);
  return value;
}

const truncate = (value: string): string => (value.length > 64 ? `${value.slice(0, 64)}...` : value).replace(/[^\x20-\x7e]/g, '?');

/** The client id a request presented (its `client_id` parameter, or else its Basic header), as anyone may send it: for the audit log of refusals. */
export function presentedClientId(parameter: unknown, authorization: string | undefined): string | null {
  return typeof parameter === 'string' ? parameter.slice(0, 256) : basicClientId(authorization) || null;
}

/** The client id inside a Basic header, for keying throttles and the audit log; never trusted for anything else. */
function basicClientId(authorization: string | undefined): string {
  if (!authorization || !/^basic /i.test(authorization)) return '';
  const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
  return decoded.slice(0, Math.max(0, decoded.indexOf(':'))).slice(0, 256);
}
