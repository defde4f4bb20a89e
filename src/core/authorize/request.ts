import type { Client } from '../../storage/repositories/clients.ts';
import { OAuthError, invalidRequest, invalidScope, registrationNotSupported, requestNotSupported, requestUriNotSupported, unauthorizedClient, unsupportedResponseType } from '../errors.ts';
import { requestParameter } from '../parameters.ts';
import type { ScopePolicy } from '../scopes.ts';
import type { IdTokenHint } from '../tokens/id-token.ts';
import { matchRedirectUri } from './redirect-uri.ts';

export type ResponseType = 'code' | 'token' | 'id_token' | 'id_token token';
export type ResponseMode = 'query' | 'fragment' | 'form_post';

/** An authorization request that passed every check; stored as JSON while the person signs in. */
export interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  redirectUriExplicit: boolean;
  responseType: ResponseType;
  responseMode: ResponseMode;
  scopes: string[];
  state: string | undefined;
  nonce: string | undefined;
  codeChallenge: string | undefined;
  codeChallengeMethod: 'S256' | 'plain' | undefined;
  prompt: string[];
  maxAge: number | undefined;
  loginHint: string | undefined;
  /**
   * The user an `id_token_hint` names, or the `sub` value the `claims` parameter asks for: only they
   * may be signed in to answer the request.
   */
  idTokenHintSubject: string | undefined;
}

/** Before the redirect URI is trusted, errors are shown to the person and never redirected (§4.1.2.1). */
export class AuthorizationPageError extends Error {
  override name = 'AuthorizationPageError';
  readonly code = 'ERR_AUTHORIZATION_PAGE';
}

/** After it is trusted, errors go back to the client at the redirect URI. */
export class AuthorizationRedirectError extends Error {
  override name = 'AuthorizationRedirectError';
  readonly error: OAuthError;
  readonly target: { redirectUri: string; responseMode: ResponseMode; state: string | undefined };
  constructor(error: OAuthError, target: AuthorizationRedirectError['target']) {
    super(error.message);
    this.error = error;
    this.target = target;
  }
}

export interface ValidationInputs {
  params: Readonly<Record<string, unknown>>;
  findClient: (id: string) => Promise<Client | undefined>;
  scopes: ScopePolicy;
  allowPlainPkce: boolean;
  implicitEnabled: boolean;
  /** Reads an ID token this server issued, sent back as `id_token_hint`; undefined when it is not one. */
  readIdTokenHint: (hint: string) => Promise<IdTokenHint | undefined>;
}

interface Draft extends Partial<AuthorizationRequest> {
  client?: Client;
}

type Step = (draft: Draft, inputs: ValidationInputs, param: (name: string) => string | undefined) => Promise<void> | void;

const RESPONSE_TYPES: Record<string, ResponseType> = { code: 'code', token: 'token', id_token: 'id_token', 'id_token token': 'id_token token', 'token id_token': 'id_token token' };
/**
 * RFC 7636 §4.2: a `plain` challenge is the verifier itself, 43*128unreserved (§4.1); an S256 one
 * is BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), unpadded: 32 bytes in 43 characters, the last
 * of which carries the digest's final 4 bits and two zero bits. The token endpoint compares the
 * verifier's digest with the challenge as strings, so no verifier could redeem any other challenge:
 * it is refused here, where the client can still be told, rather than as an unredeemable code.
 */
const PKCE_CHALLENGE: Record<'S256' | 'plain', RegExp> = {
  S256: /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/,
  plain: /^[A-Za-z0-9\-._~]{43,128}$/,
};
const PROMPTS = ['none', 'login', 'consent', 'select_account'];
/**
 * RFC 6749 §4.1.1 sets no length on `state`, but it is stored with a request waiting for the
 * person and sent back in the redirect. Keycloak's limit on every standard authorization parameter
 * (4,000 characters) is generous: clients that pack their own data into state (ASP.NET Core's
 * protected properties, a signed JWT) stay well within it, and a request cannot make a row larger.
 */
export const MAX_STATE_LENGTH = 4000;

/**
 * The checks of the authorization endpoint, in order, each named (stack traces say which failed).
 * The first two establish whom to answer; every later failure is answered at the redirect URI.
 */
export const steps: ReadonlyArray<readonly [string, Step]> = [
  [
    'check_client',
    async (draft, { findClient }, param) => {
      const clientId = param('client_id');
      if (!clientId) throw new AuthorizationPageError('The request does not name an application (client_id is missing).');
      const client = clientId.length <= 256 ? await findClient(clientId) : undefined;
      if (!client) throw new AuthorizationPageError('The application that sent you here is not registered.');
      draft.client = client;
      draft.clientId = client.id;
    },
  ],
  [
    'check_redirect_uri',
    (draft, _inputs, param) => {
      const client = draft.client!;
      const requested = param('redirect_uri');
      if (requested === undefined) {
        // RFC 6749 §3.1.2.3: with one registered URI the parameter may be omitted — but not from an
        // OpenID Connect request, where OpenID Connect Core §3.1.2.1 makes it REQUIRED (Keycloak
        // refuses it alike). One is a request whose scope, or else the client's default scope, has
        // openid: it would be answered with an ID token.
        const scope = param('scope');
        const openId = (scope ? scope.split(' ') : client.defaultScopes).includes('openid');
        if (client.redirectUris.length !== 1 || openId) throw new AuthorizationPageError('The request does not say where to send you back (redirect_uri is missing).');
        draft.redirectUri = client.redirectUris[0]!;
        draft.redirectUriExplicit = false;
        return;
      }
      if (!matchRedirectUri(client.redirectUris, requested)) {
        throw new AuthorizationPageError('The application asked to send you back to an address it has not registered. For your safety you were not redirected.');
      }
      draft.redirectUri = requested;
      draft.redirectUriExplicit = true;
    },
  ],
  [
    'check_response_type',
    (draft, { implicitEnabled }, param) => {
      const raw = param('response_type');
      if (!raw) throw invalidRequest('response_type is required');
      // Own members only: `toString` or `constructor` would find the object's prototype instead.
      const responseType = Object.hasOwn(RESPONSE_TYPES, raw) ? RESPONSE_TYPES[raw] : undefined;
      if (!responseType || (responseType !== 'code' && !implicitEnabled)) throw unsupportedResponseType(`the response type "${raw.slice(0, 40)}" is not supported`);
      draft.responseType = responseType;
      draft.responseMode = defaultResponseMode(responseType);
    },
  ],
  [
    'check_response_mode',
    (draft, _inputs, param) => {
      const mode = param('response_mode');
      if (mode === undefined) return;
      if (!isResponseMode(mode)) throw invalidRequest(`the response mode "${mode.slice(0, 40)}" is not supported`);
      if (!modeAllowed(mode, draft.responseType!)) throw invalidRequest('tokens cannot be returned in the query string');
      draft.responseMode = mode;
    },
  ],
  [
    // After the response mode: a client that asked for form_post gets this refusal posted too
    // (Multiple Response Types §2.1: response_mode is how "Authorization Response parameters" return).
    'check_flow_allowed',
    (draft) => checkFlowAllowed(draft.client!, draft.responseType!),
  ],
  [
    'check_request_object',
    (_draft, _inputs, param) => {
      // OpenID Connect Core §3.1.2.6, §6.1, §6.2, §7.2.1: an OP that does not support them "MUST
      // return" these errors rather than act on the other parameters alone, which the request object
      // may contradict, or for a client that is not the one it registered.
      if (param('request') !== undefined) throw requestNotSupported('request objects (the request parameter) are not supported');
      if (param('request_uri') !== undefined) throw requestUriNotSupported('the request_uri parameter is not supported');
      if (param('registration') !== undefined) throw registrationNotSupported('the registration parameter is not supported');
    },
  ],
  [
    'check_scope',
    (draft, { scopes }, param) => {
      const requested = scopes.parse(param('scope'));
      draft.scopes = scopes.resolve({ requested, client: draft.client!, userPresent: true });
      if (draft.scopes.length === 0) throw invalidScope('no scope was requested and the client has no default scope');
      if (draft.responseType !== 'code' && draft.responseType !== 'token' && !draft.scopes.includes('openid')) {
        throw invalidScope('an ID token needs the openid scope');
      }
    },
  ],
  [
    'check_nonce',
    (draft, _inputs, param) => {
      draft.nonce = param('nonce');
      if (draft.nonce !== undefined && draft.nonce.length > 512) throw invalidRequest('nonce is too long');
      // OpenID Connect Core §3.2.2.1: REQUIRED for the implicit flow.
      if (draft.responseType?.startsWith('id_token') && !draft.nonce) throw invalidRequest('nonce is required when an ID token is returned from the authorization endpoint');
    },
  ],
  [
    'check_pkce',
    (draft, { allowPlainPkce }, param) => {
      const challenge = param('code_challenge');
      const method = param('code_challenge_method') ?? (challenge ? 'plain' : undefined);
      if (draft.responseType !== 'code') {
        if (challenge) throw invalidRequest('PKCE applies to the authorization code flow only');
        return;
      }
      if (!challenge) {
        if (draft.client!.type === 'public') throw publicClientWithoutPkce();
        if (method) throw invalidRequest('code_challenge_method without code_challenge');
        return;
      }
      if (method !== 'S256' && !(method === 'plain' && allowPlainPkce)) throw invalidRequest('code_challenge_method must be S256');
      if (!PKCE_CHALLENGE[method].test(challenge)) {
        throw invalidRequest(method === 'S256' ? 'code_challenge is malformed: an S256 challenge is the base64url SHA-256 of the verifier, 43 characters without padding' : 'code_challenge is malformed');
      }
      draft.codeChallenge = challenge;
      draft.codeChallengeMethod = method;
    },
  ],
  [
    'check_prompt',
    (draft, _inputs, param) => {
      // Each value once: repeated, a long prompt would be stored as a long list.
      const prompt = [...new Set((param('prompt') ?? '').split(' ').filter(Boolean))];
      if (prompt.some((p) => !PROMPTS.includes(p))) throw invalidRequest('prompt has an unknown value');
      if (prompt.includes('none') && prompt.length > 1) throw invalidRequest('prompt=none cannot be combined with other values');
      draft.prompt = prompt;
      const maxAge = param('max_age');
      if (maxAge !== undefined) {
        if (!/^\d{1,9}$/.test(maxAge)) throw invalidRequest('max_age must be a number of seconds');
        draft.maxAge = Number(maxAge);
      }
      const hint = param('login_hint');
      draft.loginHint = hint && hint.length <= 320 ? hint : undefined;
    },
  ],
  [
    'check_id_token_hint',
    async (draft, { readIdTokenHint }, param) => {
      const hint = param('id_token_hint');
      if (hint === undefined) return;
      // OpenID Connect Core §3.1.2.1: "ID Token previously issued by the Authorization Server being
      // passed as a hint about the End-User's current or past authenticated session with the Client".
      const read = await readIdTokenHint(hint);
      if (!read) throw invalidRequest('id_token_hint is not an ID token issued by this server');
      if (!read.audience.includes(draft.clientId!)) throw invalidRequest('id_token_hint was issued to another client');
      draft.idTokenHintSubject = read.subject;
    },
  ],
  [
    'check_claims_subject',
    (draft, _inputs, param) => {
      // The claims parameter is not supported (discovery says so) and is otherwise ignored, but
      // OpenID Connect Core §3.1.2.2: "If the sub (subject) Claim is requested with a specific value
      // for the ID Token, the Authorization Server MUST only send a positive response if the
      // End-User identified by that sub value has an active session with the Authorization Server."
      const subject = requestedSubject(param('claims'));
      if (subject === undefined) return;
      if (draft.idTokenHintSubject !== undefined && draft.idTokenHintSubject !== subject) throw invalidRequest('claims asks for another user than id_token_hint names');
      draft.idTokenHintSubject = subject;
    },
  ],
];

const RESPONSE_MODES: readonly string[] = ['query', 'fragment', 'form_post'] satisfies ResponseMode[];
const isResponseMode = (mode: string): mode is ResponseMode => RESPONSE_MODES.includes(mode);

/**
 * OAuth 2.0 Multiple Response Type Encoding Practices §2.1, §5: the query for `code` (and `none`),
 * the fragment for every response type that returns a token (`token`, `id_token`, the hybrid ones),
 * which must never sit in a query string — as node-oidc-provider reads it, by the word "token".
 */
const defaultResponseMode = (responseType: string): ResponseMode => (responseType.includes('token') ? 'fragment' : 'query');

/** Multiple Response Types §5: tokens never in the query; any mode else may carry any answer. */
const modeAllowed = (mode: ResponseMode, responseType: string): boolean => mode !== 'query' || defaultResponseMode(responseType) === 'query';

/**
 * How an error found before the response type and mode were settled is answered: in the response
 * mode the client asked for when that is one it may use (OpenID Connect Core §3.1.2.6: the error
 * response is returned as the authentication response would be; Form Post Response Mode §2: with
 * form_post, "Authorization Response parameters" are posted, and an error response is one), or the
 * default of the response type asked for (the fragment for `token`, even an unsupported one); each
 * read without refusing anything, a parameter that is repeated or not a string taken as not sent.
 */
function errorResponseMode(params: Readonly<Record<string, unknown>>): ResponseMode {
  const read = (name: string): string | undefined => {
    try {
      return requestParameter(params, name);
    } catch {
      return undefined;
    }
  };
  const responseType = read('response_type') ?? '';
  const mode = read('response_mode');
  return mode !== undefined && isResponseMode(mode) && modeAllowed(mode, responseType) ? mode : defaultResponseMode(responseType);
}

/** The state an error answer echoes: as sent, unless it is missing, empty, repeated or too long to echo. */
function echoableState(params: Readonly<Record<string, unknown>>): string | undefined {
  try {
    const state = requestParameter(params, 'state');
    return state !== undefined && state.length <= MAX_STATE_LENGTH ? state : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The claims parameter is read up to this length. A longer one is refused rather than ignored: it
 * may ask for a `sub`, and ignoring it would answer for whoever is signed in.
 */
const MAX_CLAIMS_LENGTH = 8192;

/** The `sub` value a `claims` parameter asks for (OpenID Connect Core §5.5.1), if it can be read. */
function requestedSubject(claims: string | undefined): string | undefined {
  if (claims === undefined) return undefined;
  if (claims.length > MAX_CLAIMS_LENGTH) throw invalidRequest(`claims is longer than ${MAX_CLAIMS_LENGTH} characters`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(claims);
  } catch {
    return undefined;
  }
  const member = (object: unknown, name: string): unknown =>
    typeof object === 'object' && object !== null && Object.hasOwn(object, name) ? (object as Record<string, unknown>)[name] : undefined;
  const values = ['id_token', 'userinfo'].map((target) => member(member(member(parsed, target), 'sub'), 'value')).filter((value) => typeof value === 'string');
  if (values.length === 2 && values[0] !== values[1]) throw invalidRequest('claims asks for two different users');
  return values[0];
}

/** RFC 9700 §2.1.1 and DESIGN §1: PKCE is mandatory for public clients, which have no secret. */
const publicClientWithoutPkce = () => invalidRequest('code_challenge is required for public clients (PKCE, RFC 7636)');

function checkFlowAllowed(client: Client, responseType: ResponseType): void {
  if (responseType === 'code' && !client.grantTypes.includes('authorization_code')) throw unauthorizedClient('the client is not allowed the authorization code flow');
  if (responseType !== 'code' && !client.grantTypes.includes('implicit')) throw unauthorizedClient('the client is not allowed the implicit flow');
}

/**
 * Checks a request that waited for the person against the client as registered now: an operator or
 * its developer may have changed the client meanwhile (a request waits up to half an hour), and an
 * answer must go only where, and carry only what, the client is allowed at the moment it is sent. A
 * redirect URI no longer registered is an error page (it may be in someone else's hands now); a
 * flow or scope no longer allowed is answered at the redirect URI, as it would be for a new request.
 */
export function recheckWaitingRequest(request: AuthorizationRequest, client: Client, { scopes, implicitEnabled }: Pick<ValidationInputs, 'scopes' | 'implicitEnabled'>): void {
  if (!matchRedirectUri(client.redirectUris, request.redirectUri)) {
    throw new AuthorizationPageError('The application no longer accepts answers at the address this request came from. For your safety you were not redirected. Go back to the application and start again.');
  }
  try {
    if (request.responseType !== 'code' && !implicitEnabled) throw unsupportedResponseType('the implicit flow is no longer enabled');
    checkFlowAllowed(client, request.responseType);
    // A client made public meanwhile: its code could never be exchanged without the challenge.
    if (request.responseType === 'code' && !request.codeChallenge && client.type === 'public') throw publicClientWithoutPkce();
    scopes.resolve({ requested: request.scopes, client, userPresent: true });
  } catch (error) {
    if (error instanceof OAuthError) throw new AuthorizationRedirectError(error, { redirectUri: request.redirectUri, responseMode: request.responseMode, state: request.state });
    throw error;
  }
}

/** Runs the checks and returns the validated request, or throws a page or redirect error. */
export async function validateAuthorizationRequest(inputs: ValidationInputs): Promise<{ request: AuthorizationRequest; client: Client }> {
  const draft: Draft = {};
  const param = (name: string): string | undefined => {
    try {
      return requestParameter(inputs.params, name);
    } catch (error) {
      // Until the redirect URI is trusted, a malformed request is shown to the person (§4.1.2.1).
      if (error instanceof OAuthError && (name === 'client_id' || name === 'redirect_uri' || draft.redirectUri === undefined)) throw new AuthorizationPageError(`The request is malformed: ${error.message}.`);
      throw error;
    }
  };
  for (const [, step] of steps) {
    try {
      await step(draft, inputs, param);
    } catch (error) {
      if (error instanceof OAuthError) {
        const state = echoableState(inputs.params);
        throw new AuthorizationRedirectError(error, { redirectUri: draft.redirectUri!, responseMode: draft.responseMode ?? errorResponseMode(inputs.params), state });
      }
      throw error;
    }
  }
  let state: string | undefined;
  try {
    state = param('state');
    if (state !== undefined && state.length > MAX_STATE_LENGTH) throw invalidRequest(`state is longer than ${MAX_STATE_LENGTH} characters`);
  } catch (error) {
    // A repeated or over-long state is refused at the redirect URI like any other bad parameter
    // (never a 500), without the state: it is what is wrong, and could not be echoed as sent.
    if (error instanceof OAuthError) throw new AuthorizationRedirectError(error, { redirectUri: draft.redirectUri!, responseMode: draft.responseMode!, state: undefined });
    throw error;
  }
  return {
    client: draft.client!,
    request: {
      clientId: draft.clientId!,
      redirectUri: draft.redirectUri!,
      redirectUriExplicit: draft.redirectUriExplicit!,
      responseType: draft.responseType!,
      responseMode: draft.responseMode!,
      scopes: draft.scopes!,
      state,
      nonce: draft.nonce,
      codeChallenge: draft.codeChallenge,
      codeChallengeMethod: draft.codeChallengeMethod,
      prompt: draft.prompt ?? [],
      maxAge: draft.maxAge,
      loginHint: draft.loginHint,
      idTokenHintSubject: draft.idTokenHintSubject,
    },
  };
}
