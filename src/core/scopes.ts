import type { ScopeDefinition } from './config.ts';
import { invalidScope } from './errors.ts';

/** The parts of a client that scope policy looks at. */
export interface ScopeHolder {
  scopes: readonly string[];
  defaultScopes: readonly string[];
  isAdmin: boolean;
}

export interface ScopeRequest {
  /** The scopes asked for; undefined or empty means "the client's defaults" (RFC 6749 §3.3). */
  requested: readonly string[] | undefined;
  client: ScopeHolder;
  /** Whether a user is present (authorization code, password): user-only scopes need one. */
  userPresent: boolean;
  /** Scopes the result must stay within, e.g. the original grant on refresh (RFC 6749 §6). */
  ceiling?: readonly string[];
}

/**
 * The scopes of `granted` — a token's, an API key's — that `client` still holds. A credential acts
 * within its application's scopes as they are now: a scope an operator takes from the application
 * stops working at once for the tokens and keys issued before, at Gatehouse's own endpoints (the
 * admin API, project tokens, token exchange, userinfo, introspection), as it does for its refresh
 * tokens (RFC 7662 §2.2: a token is active only while it "has not been revoked by the resource
 * owner"). APIs that verify access tokens locally accept them as signed until they expire.
 */
export function heldScopes(granted: string[], client: Pick<ScopeHolder, 'scopes'>): string[] {
  return granted.every((scope) => client.scopes.includes(scope)) ? granted : granted.filter((scope) => client.scopes.includes(scope));
}

// RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_PARAMETER = /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/;

/**
 * Every rule about who may hold which scope, from the operator's catalogue (DESIGN §2): grant code
 * asks this policy and never special-cases a scope.
 */
export class ScopePolicy {
  readonly catalogue: Readonly<Record<string, ScopeDefinition>>;

  constructor(catalogue: Record<string, ScopeDefinition>) {
    this.catalogue = catalogue;
  }

  /** Splits a `scope` parameter; undefined when absent. Malformed → `invalid_scope`. */
  parse(parameter: string | undefined): string[] | undefined {
    if (parameter === undefined || parameter === '') return undefined;
    if (parameter.length > 4096 || !SCOPE_PARAMETER.test(parameter)) throw invalidScope('the scope parameter is malformed');
    return [...new Set(parameter.split(' '))];
  }

  definition(scope: string): ScopeDefinition | undefined {
    return Object.hasOwn(this.catalogue, scope) ? this.catalogue[scope] : undefined;
  }

  /**
   * The scopes to grant, or `invalid_scope` naming the first scope that may not be granted. With
   * nothing requested, the client's defaults that fit the situation are granted.
   */
  resolve({ requested, client, userPresent, ceiling }: ScopeRequest): string[] {
    if (requested === undefined || requested.length === 0) {
      return client.defaultScopes.filter((scope) => this.#refusal(scope, client, userPresent, ceiling) === undefined);
    }
    for (const scope of requested) {
      const refusal = this.#refusal(scope, client, userPresent, ceiling);
      if (refusal) throw invalidScope(refusal);
    }
    return [...requested];
  }

  /** Checks an operator's or developer's list of allowed scopes for a client. */
  checkClientScopes(scopes: readonly string[], isAdmin: boolean): string | undefined {
    for (const scope of scopes) {
      const definition = this.definition(scope);
      if (!definition) return `unknown scope "${scope}"`;
      if (definition.admin && !isAdmin) return `the admin scope "${scope}" is only for admin clients`;
      if (!definition.admin && isAdmin) return `an admin client can only hold admin scopes, not "${scope}"`;
    }
    return undefined;
  }

  #refusal(scope: string, client: ScopeHolder, userPresent: boolean, ceiling: readonly string[] | undefined): string | undefined {
    const definition = this.definition(scope);
    if (!definition) return `unknown scope "${scope}"`;
    if (!client.scopes.includes(scope)) return `the client is not allowed the scope "${scope}"`;
    if (definition.admin && !client.isAdmin) return `the scope "${scope}" is only granted to admin clients`;
    if (!definition.admin && client.isAdmin) return `admin clients are granted only admin scopes, not "${scope}"`;
    if (definition.userOnly && !userPresent) return `the scope "${scope}" needs a user and cannot be granted without one`;
    if (ceiling && !ceiling.includes(scope)) return `the scope "${scope}" was not part of the original grant`;
    return undefined;
  }
}
