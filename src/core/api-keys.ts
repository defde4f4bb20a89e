import { randomUUID } from 'node:crypto';
import type { Storage } from '../storage/repositories.ts';
import type { ApiKey } from '../storage/repositories/api-keys.ts';
import type { Client, ExpectedClient } from '../storage/repositories/clients.ts';
import { insertOnce } from './applications.ts';
import { HIDDEN_IN_NAME } from './client-validation.ts';
import { ValidationError } from './validation.ts';
import type { ClientRegistry } from './clients.ts';
import { heldScopes, type ScopePolicy } from './scopes.ts';
import { createOpaqueToken, digestOf, isWellFormed } from './tokens/opaque.ts';

/** What an API key is made with: a name, scopes (default: the application's that an API key may hold) and an expiry (default: never). */
export interface KeyInput {
  name: string;
  scopes?: string[] | undefined;
  expiresAt?: number | null | undefined;
  /** The key's id: a new random one unless given; one that is taken fails with AlreadyCreatedError. */
  id?: string | undefined;
}

/**
 * API keys (`Authorization: ApiKey <key>`): long-lived credentials of an application, acting as
 * it with the key's scopes (never a user-only one). Shown once; only the digest is kept. Revocation
 * takes effect at once here (every use reads the key); last-use times are collected in memory and
 * written in batches, so a use costs no database write.
 */
export class ApiKeyService {
  #storage: Storage;
  #clients: ClientRegistry;
  #scopes: ScopePolicy;
  #uses = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(storage: Storage, clients: ClientRegistry, scopes: ScopePolicy) {
    this.#storage = storage;
    this.#clients = clients;
    this.#scopes = scopes;
  }

  /**
   * Makes a key for `client` (as read: its scopes bound the key's). With `expected`, the key is
   * stored only while the client is as expected (ApiKeyRepository.create): undefined, and nothing
   * stored, when it is not. With `limit`, only while the client holds fewer live keys than that:
   * TooManyApiKeysError otherwise.
   */
  async create(client: Client, input: KeyInput, now: number): Promise<{ key: ApiKey; value: string }>;
  async create(client: Client, input: KeyInput, now: number, expected: ExpectedClient, limit?: number): Promise<{ key: ApiKey; value: string } | undefined>;
  async create(client: Client, input: KeyInput, now: number, expected?: ExpectedClient, limit?: number): Promise<{ key: ApiKey; value: string } | undefined> {
    // A key is a secret of the application: a public one (a browser or mobile app) cannot keep it.
    if (client.type === 'public') throw new ValidationError('type', 'API keys are for confidential applications: a public application cannot keep a secret');
    const name = input.name?.trim();
    if (!name) throw new ValidationError('name', 'an API key needs a name');
    if (name.length > 200) throw new ValidationError('name', 'the name is longer than 200 characters');
    if (HIDDEN_IN_NAME.test(name)) throw new ValidationError('name', 'the name must not hold a control or invisible character');
    if (input.expiresAt !== undefined && input.expiresAt !== null && input.expiresAt <= now) throw new ValidationError('expires_at', 'the expiry must be in the future');
    // An empty list asks for a key that can do nothing, which is surely a mistake; leaving scopes out asks for the defaults.
    if (input.scopes?.length === 0) throw new ValidationError('scopes', 'list at least one scope, or leave scopes out for the application’s default scopes');
    let scopes: string[];
    try {
      scopes = this.#scopes.resolve({ requested: input.scopes, client, userPresent: false });
    } catch (error) {
      throw new ValidationError('scopes', (error as Error).message);
    }
    if (scopes.length === 0) throw new ValidationError('scopes', 'an API key needs at least one scope the application holds');
    const value = createOpaqueToken('ak');
    const key: ApiKey = {
      id: input.id ?? randomUUID(),
      clientId: client.id,
      name,
      digest: digestOf(value),
      prefix: value.slice(0, 12),
      scopes,
      createdAt: now,
      expiresAt: input.expiresAt ?? null,
      revokedAt: null,
      lastUsedAt: null,
    };
    const stored = await insertOnce(() => this.#storage.apiKeys.create(key, expected, limit), async () => (await this.#storage.apiKeys.findById(key.id)) !== undefined, `the API key ${key.id}`);
    return stored ? { key, value } : undefined;
  }

  /**
   * The live key and its application, or undefined (malformed, unknown, revoked, expired, application
   * gone). The key acts as its application, so it holds only those of its scopes the application
   * still holds: a scope an operator took from the application stops working for its keys at once,
   * as it does for its refresh tokens. `visibleTo` says whether the asker may see a key of that
   * application (introspection by a client that is not the key's): one it may not is undefined
   * too, and not recorded as a use.
   */
  async authenticate(value: string, now: number, visibleTo: (clientId: string) => boolean = () => true): Promise<{ key: ApiKey; client: Client } | undefined> {
    if (!isWellFormed(value, 'ak')) return undefined;
    const key = await this.#storage.apiKeys.findByDigest(digestOf(value));
    if (!key || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt <= now) || !visibleTo(key.clientId)) return undefined;
    const entry = await this.#clients.get(key.clientId);
    // An application made public since has no secrets any more, keys included (updateClient revokes them).
    if (!entry || entry.client.type === 'public') return undefined;
    this.#recordUse(key.id, now);
    const { client } = entry;
    const scopes = heldScopes(key.scopes, client);
    return { key: scopes === key.scopes ? key : { ...key, scopes }, client };
  }

  /** Writes the collected last-use times; runs on a timer and at shutdown. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#uses.size === 0) return;
    const uses = this.#uses;
    this.#uses = new Map();
    await this.#storage.apiKeys.recordUse(uses);
  }

  #recordUse(id: string, now: number): void {
    this.#uses.set(id, now);
    if (!this.#timer) {
      this.#timer = setTimeout(() => void this.flush().catch(() => {}), 5000);
      this.#timer.unref();
    }
  }
}
