import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Storage } from '../storage/repositories.ts';
import type { Client, ClientSecret } from '../storage/repositories/clients.ts';
import { isWithinBounds } from './client-auth/assertion.ts';

export interface ClientEntry {
  client: Client;
  secrets: ClientSecret[];
  /** Secret digests decoded once, for constant-time comparison on every request. */
  secretDigests: Buffer[];
  /** The client's registered public keys, made ready for jose once (`private_key_jwt`); none without keys. */
  assertionKeys: JWTVerifyGetKey | undefined;
  /** How many registered keys are never tried: RSA keys stored before the bounds of isWithinBounds were set. */
  keysSetAside: number;
  /**
   * Secrets presented and found to match, with the registered secret each matched: a client that
   * asks again within the entry's lifetime (`clients.cacheTtlSeconds`) is not hashed again. At most
   * one per registered secret; gone with the entry, so a secret deleted through this instance is
   * refused at once, and one deleted elsewhere within the cache lifetime, as before.
   */
  verifiedSecrets: Map<string, ClientSecret>;
}

/** A client id and secret as read from an `Authorization: Basic` header (RFC 6749 §2.3.1). */
export interface BasicCredentials {
  clientId: string;
  secret: string;
}

/**
 * Client records cached in process for a few seconds (DESIGN §6), so the client-credentials path
 * reads nothing from the database. A change made through this instance invalidates at once; one
 * made elsewhere (another instance, the CLI) is seen within `ttlSeconds`. Concurrent misses for one
 * client share a single database read.
 *
 * An application registered in the developer portal is suspended while its owner's account is
 * disabled: it is not found here, so it cannot authenticate, its API keys and tokens are refused,
 * and it is back as it was once the account is enabled again.
 */
export class ClientRegistry {
  #storage: Pick<Storage, 'clients' | 'users'>;
  #ttlMs: number;
  #cache = new Map<string, { expires: number; entry: Promise<ClientEntry | undefined> }>();
  #maxEntries: number;
  #basic = new Map<string, BasicCredentials>();

  constructor(storage: Pick<Storage, 'clients' | 'users'>, ttlSeconds: number, maxEntries = 10_000) {
    this.#storage = storage;
    this.#ttlMs = ttlSeconds * 1000;
    this.#maxEntries = maxEntries;
  }

  get(clientId: string): Promise<ClientEntry | undefined> {
    const now = Date.now();
    const cached = this.#cache.get(clientId);
    if (cached && cached.expires > now) return cached.entry;
    const entry = this.#load(clientId);
    if (this.#ttlMs > 0) {
      if (this.#cache.size >= this.#maxEntries) this.#evictExpired(now);
      this.#cache.set(clientId, { expires: now + this.#ttlMs, entry });
      // Unknown and suspended clients are not remembered: a client created, or an owner enabled, a
      // moment later must work at once.
      entry.then(
        (found) => (found ? undefined : this.#cache.delete(clientId)),
        () => this.#cache.delete(clientId),
      );
    }
    return entry;
  }

  invalidate(clientId: string): void {
    this.#cache.delete(clientId);
    for (const [authorization, credentials] of this.#basic) if (credentials.clientId === clientId) this.#basic.delete(authorization);
  }

  /**
   * What an `Authorization: Basic` header that authenticated a client before reads as, so a client
   * that sends the same header on every request is not decoded again. Only the reading is kept:
   * the secret is checked against the client's registered secrets on every request all the same.
   * Looked up by the header's hash, like `verifiedSecrets`: a header never seen authenticating
   * takes the ordinary path.
   */
  knownBasic(authorization: string): BasicCredentials | undefined {
    return this.#basic.get(authorization);
  }

  /** Keeps the reading of a Basic header that has just authenticated its client (at most `maxEntries`, oldest out first). */
  rememberBasic(authorization: string, credentials: BasicCredentials): void {
    if (!this.#basic.has(authorization) && this.#basic.size >= this.#maxEntries) this.#basic.delete(this.#basic.keys().next().value!);
    this.#basic.set(authorization, credentials);
  }

  async #load(clientId: string): Promise<ClientEntry | undefined> {
    const found = await this.#storage.clients.findWithSecrets(clientId);
    if (!found) return undefined;
    const ownerId = found.client.ownerUserId;
    if (ownerId !== null) {
      const owner = await this.#storage.users.findById(ownerId);
      if (!owner || owner.disabledAt !== null) return undefined;
    }
    const usableKeys = found.client.jwks?.keys.filter(isWithinBounds) ?? [];
    return {
      ...found,
      secretDigests: found.secrets.map((s) => Buffer.from(s.digest, 'base64url')),
      assertionKeys: usableKeys.length > 0 ? createLocalJWKSet({ keys: usableKeys } as JSONWebKeySet) : undefined,
      keysSetAside: (found.client.jwks?.keys.length ?? 0) - usableKeys.length,
      verifiedSecrets: new Map(),
    };
  }

  #evictExpired(now: number): void {
    for (const [id, cached] of this.#cache) if (cached.expires <= now) this.#cache.delete(id);
    // Still full of live entries: drop the oldest insertions.
    for (const id of this.#cache.keys()) {
      if (this.#cache.size < this.#maxEntries) break;
      this.#cache.delete(id);
    }
  }
}
