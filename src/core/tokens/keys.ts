import { hkdfSync, KeyObject, type webcrypto } from 'node:crypto';
import { CompactEncrypt, calculateJwkThumbprint, compactDecrypt, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type { GatehouseConfig, SigningAlgorithm } from '../config.ts';
import { revocationWindowSeconds } from '../revocation.ts';
import type { KeyUse, PrivatePartChange, SigningKeyRecord, SigningKeyRepository } from '../../storage/repositories/keys.ts';

export interface SigningKey {
  kid: string;
  alg: string;
  key: KeyObject;
}

/**
 * How long the JWKS may be kept by resource servers and the caches between (its `Cache-Control`
 * max-age). A key must have been published this long, plus an instance's reload interval, before it
 * signs: only then has every resource server that honours the header been able to fetch it.
 */
export const JWKS_MAX_AGE_SECONDS = 60;

/** Why a key operation was refused; `code` is stable, the message is for people. */
export class KeyOperationError extends Error {
  override name = 'KeyOperationError';
  readonly code: 'next_key_too_young' | 'rotation_raced' | 'unknown_key';
  constructor(code: KeyOperationError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

interface PublishedKey {
  record: SigningKeyRecord;
  publicKey: KeyObject;
}

/**
 * The signing keys, loaded from the database with their private parts decrypted under the master
 * secret. Each use (access tokens, ID tokens) has one `active` key that signs, one `next` key that
 * is published before it ever signs (so resource servers have it cached by the time it does) and
 * `retired` keys that stay published until the last token they signed has expired.
 */
export class KeyStore {
  #repository: SigningKeyRepository;
  /** Derived from the master secret: encrypts every key stored from now on. */
  #encryptionKey: Uint8Array;
  /** Derived from the master secret, then from each previous one: a key stored under any of them decrypts. */
  #decryptionKeys: Uint8Array[];
  /** Which secrets were tried, for the operator to check when a key cannot be decrypted. */
  #secretsTried: string;
  #algorithms: Record<KeyUse, SigningAlgorithm>;
  #retiredLifetimeSeconds: number;
  #minimumNextKeyAgeSeconds: number;
  #active = new Map<KeyUse, SigningKey>();
  #published = new Map<string, PublishedKey>();
  #jwksJson = '{"keys":[]}';
  #timer: NodeJS.Timeout | undefined;
  /** The reload the timer started that is running now, if any: a shutdown waits for it. */
  #periodicReload: Promise<void> | undefined;
  #fingerprint = '';
  static readonly UNKNOWN_KID_RELOAD_MS = 1000;
  #unknownKidReloadAt = Number.NEGATIVE_INFINITY;
  #unknownKidReload: Promise<void> | undefined;

  private constructor(repository: SigningKeyRepository, config: GatehouseConfig) {
    this.#repository = repository;
    this.#decryptionKeys = [config.secret, ...config.previousSecrets].map((secret) => new Uint8Array(hkdfSync('sha256', secret, 'gatehouse', 'signing-key-encryption', 32)));
    this.#encryptionKey = this.#decryptionKeys[0]!;
    const source = config.secretGeneratedAt ? `the master secret in ${config.secretGeneratedAt}` : 'GATEHOUSE_SECRET';
    this.#secretsTried =
      config.previousSecrets.length === 0 ? `${source} is not the secret it was stored under` : `neither ${source} nor any of GATEHOUSE_SECRET_PREVIOUS is the secret it was stored under`;
    this.#algorithms = { access: config.tokens.accessTokenAlgorithm, id: config.tokens.idTokenAlgorithm };
    // A retired key must verify every token it signed: the longest lifetime, plus clock skew — and an
    // access token still for the revocation window after it expired, since revoking it ends the
    // tokens derived from it (see revoke), and only a token that verifies is revoked. Other instances
    // sign with it until they next re-read the keys (startReloading), up to an interval after the
    // rotation, so that interval is added too. Project tokens live no longer than that window.
    this.#retiredLifetimeSeconds =
      Math.max(config.tokens.accessTokenTtlSeconds + revocationWindowSeconds(config), config.tokens.idTokenTtlSeconds) + 300 + Math.ceil(config.keys.reloadIntervalSeconds);
    // Every instance serves a new key from its next reload on; every resource server that honours
    // the JWKS's max-age has fetched it one max-age after that.
    this.#minimumNextKeyAgeSeconds = Math.ceil(config.keys.reloadIntervalSeconds) + JWKS_MAX_AGE_SECONDS;
  }

  /** How long a `next` key must have been published before a rotation may make it sign (unless forced). */
  get minimumNextKeyAgeSeconds(): number {
    return this.#minimumNextKeyAgeSeconds;
  }

  /** Loads the keys, generating the first active and next key of each use on an empty database. */
  static async open(repository: SigningKeyRepository, config: GatehouseConfig, now: number): Promise<KeyStore> {
    const store = new KeyStore(repository, config);
    await store.#ensureKeys(now);
    await store.reload(now);
    return store;
  }

  signingKey(use: KeyUse): SigningKey {
    const key = this.#active.get(use);
    if (!key) throw new Error(`no active ${use} signing key`);
    return key;
  }

  /**
   * The algorithms `use` signs with: its active key's, and its next key's, which signs after the
   * next rotation. They differ from a change of the configured algorithm until that rotation.
   */
  signingAlgorithms(use: KeyUse): string[] {
    const algorithms = new Set<string>();
    for (const state of ['active', 'next'] as const) {
      for (const { record } of this.#published.values()) if (record.use === use && record.state === state) algorithms.add(record.alg);
    }
    return [...algorithms];
  }

  /** A published public key by `kid`, for verifying tokens this server issued. */
  publicKey(kid: string): { alg: string; use: KeyUse; key: KeyObject } | undefined {
    const published = this.#published.get(kid);
    return published && { alg: published.record.alg, use: published.record.use, key: published.publicKey };
  }

  /**
   * A published public key by `kid`, for verifying what this server issued — what any instance
   * issued. A key unknown here may be one another instance signs with already: rotated twice
   * within `keys.reloadIntervalSeconds` (the second rotation promoting a key this instance has not
   * read yet), or replaced by an instance restarted with another algorithm. So the keys are re-read
   * at once, rather than refusing that instance's tokens until the next reload — at most once per
   * UNKNOWN_KID_RELOAD_MS, so that tokens with made-up `kid`s cost the database one read a second.
   */
  async findPublicKey(kid: string, now: number): Promise<{ alg: string; use: KeyUse; key: KeyObject } | undefined> {
    const known = this.publicKey(kid);
    if (known) return known;
    if (!this.#unknownKidReload) {
      if (Date.now() - this.#unknownKidReloadAt < KeyStore.UNKNOWN_KID_RELOAD_MS) return undefined;
      this.#unknownKidReloadAt = Date.now();
      this.#unknownKidReload = this.reload(now).finally(() => (this.#unknownKidReload = undefined));
    }
    // Requests that bring the key while it is being read wait for that one read.
    await this.#unknownKidReload;
    return this.publicKey(kid);
  }

  /** The JWKS document (RFC 7517), serialized once per reload. */
  get jwksJson(): string {
    return this.#jwksJson;
  }

  async reload(now: number): Promise<void> {
    const records = await this.#repository.listPublished(now);
    const fingerprint = records.map((r) => `${r.kid}:${r.state}`).join(',');
    if (fingerprint === this.#fingerprint) return;

    const active = new Map<KeyUse, SigningKey>();
    const published = new Map<string, PublishedKey>();
    const jwks: JWK[] = [];
    for (const record of records) {
      const publicJwk = JSON.parse(record.publicJwk) as JWK;
      published.set(record.kid, { record, publicKey: await importKey(publicJwk, record.alg) });
      jwks.push({ ...publicJwk, kid: record.kid, alg: record.alg, use: 'sig' });
      const current = active.get(record.use);
      // Several instances may race to create the first key; the latest activation wins everywhere.
      if (record.state === 'active' && (!current || (record.activatedAt ?? 0) >= (published.get(current.kid)?.record.activatedAt ?? 0))) {
        active.set(record.use, { kid: record.kid, alg: record.alg, key: await this.#decrypt(record) });
      }
    }
    this.#active = active;
    this.#published = published;
    this.#jwksJson = JSON.stringify({ keys: jwks });
    this.#fingerprint = fingerprint;
  }

  /**
   * Re-reads the keys periodically, so a rotation made by another instance or the CLI is picked up.
   * A reload still running when the next is due (a database slow to answer) is not doubled.
   */
  startReloading(intervalSeconds: number, onError: (error: unknown) => void): void {
    void this.stopReloading();
    const timer = setInterval(() => {
      if (this.#periodicReload) return;
      this.#periodicReload = this.reload(Math.floor(Date.now() / 1000))
        // A reload failing once it was stopped (the shutdown closes the database under it) has nothing to tell.
        .catch((error) => void (this.#timer === timer && onError(error)))
        .finally(() => (this.#periodicReload = undefined));
    }, intervalSeconds * 1000);
    timer.unref();
    this.#timer = timer;
  }

  /** Stops the periodic reload; settles (never rejects) once the reload in flight, if any, has ended. */
  stopReloading(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    return this.#periodicReload ?? Promise.resolve();
  }

  /**
   * Promotes the `next` key of each use to `active`, retires the active one and publishes a new
   * `next`. Tokens signed before keep verifying: the retired key stays in the JWKS.
   *
   * A next key published less than `minimumNextKeyAgeSeconds` ago is refused, changing nothing:
   * instances that have not re-read the keys leave it out of their JWKS, and resource servers that
   * cached the JWKS before it was published would refuse what it signs (two rotations in a row made
   * a key sign seconds after it appeared). `force` promotes it anyway, for an emergency such as a
   * leaked active key: better some tokens refused for a minute than a leaked key signing on.
   */
  async rotate(now: number, options: { uses?: KeyUse[]; force?: boolean } = {}): Promise<void> {
    const uses = options.uses ?? ['access', 'id'];
    const publishedBefore = options.force ? Number.POSITIVE_INFINITY : now - this.#minimumNextKeyAgeSeconds;
    if (!options.force) {
      // Checked for every use before any changes, so that a refusal leaves all of them as they were.
      const records = await this.#repository.listPublished(now);
      for (const use of uses) {
        const next = records.find((r) => r.use === use && r.state === 'next');
        if (next && next.createdAt > publishedBefore) throw this.#tooYoung(next, now);
      }
    }
    for (const use of uses) {
      const next = await this.#generate(use, 'next', now);
      if (!(await this.#repository.rotate(use, next, now, now + this.#retiredLifetimeSeconds, publishedBefore))) {
        throw new KeyOperationError('rotation_raced', `no next ${use} key old enough to promote: another rotation may have run meanwhile`);
      }
    }
    await this.reload(now);
  }

  /**
   * Withdraws a published key at once, for a key that leaked: it leaves the JWKS, and every token it
   * signed fails verification here (introspection, userinfo, the admin API) at once, on the other
   * instances from their next reload, and at resource servers once their cached JWKS expires. A
   * withdrawn active key is replaced by the next key of its use even though resource servers may
   * not have fetched it yet (a leaked key must not sign on); a new next key is published. Returns
   * the withdrawn key as it was.
   */
  async withdraw(kid: string, now: number): Promise<SigningKeyRecord> {
    const key = (await this.#repository.listPublished(now)).find((record) => record.kid === kid);
    if (!key) throw new KeyOperationError('unknown_key', `no published signing key has the kid ${kid}`);
    const newNext = key.state === 'retired' ? undefined : await this.#generate(key.use, 'next', now);
    if (!(await this.#repository.withdraw(kid, key.state, newNext, now))) {
      throw new KeyOperationError('rotation_raced', `the signing keys changed while ${kid} was being withdrawn (another rotation or withdrawal): list them and try again`);
    }
    await this.reload(now);
    return key;
  }

  #tooYoung(next: SigningKeyRecord, now: number): KeyOperationError {
    const age = Math.max(0, now - next.createdAt);
    const ready = new Date((next.createdAt + this.#minimumNextKeyAgeSeconds) * 1000).toISOString();
    return new KeyOperationError(
      'next_key_too_young',
      `the next ${next.use} key ${next.kid} was published ${age} s ago, and may sign only once resource servers can have fetched it, ${this.#minimumNextKeyAgeSeconds} s after it was published ` +
        `(keys.reloadIntervalSeconds plus the JWKS's ${JWKS_MAX_AGE_SECONDS} s cache time): rotate after ${ready}`,
    );
  }

  /**
   * Generates the first active and next key of each use on an empty database. When the configured
   * algorithm of a use changed, its `next` key is replaced by one of the new algorithm: published
   * from now on, it signs after the next rotation (the active key signs until then).
   */
  async #ensureKeys(now: number): Promise<void> {
    const records = await this.#repository.listPublished(now);
    // The master secret is checked before anything is written: an instance given another one must
    // not publish a next key that the others cannot decrypt once a rotation makes it sign. The next
    // key is checked too: one stored under a previous secret dropped too early would stop signing
    // everywhere at the next rotation.
    for (const record of records) if (record.state !== 'retired') await this.#decrypt(record);
    for (const use of ['access', 'id'] as const) {
      if (!records.some((r) => r.use === use && r.state === 'active')) {
        await this.#repository.insert(await this.#generate(use, 'active', now));
      }
      const next = records.find((r) => r.use === use && r.state === 'next');
      if (!next) {
        await this.#repository.insert(await this.#generate(use, 'next', now));
      } else if (next.alg !== this.#algorithms[use]) {
        await this.#repository.replaceNextOfOtherAlgorithm(await this.#generate(use, 'next', now));
      }
    }
  }

  /** Uses whose active key signs with another algorithm than the configured one, until the next rotation. */
  algorithmsAwaitingRotation(): { use: KeyUse; signing: string; configured: SigningAlgorithm }[] {
    return (['access', 'id'] as const)
      .map((use) => ({ use, signing: this.signingKey(use).alg, configured: this.#algorithms[use] }))
      .filter(({ signing, configured }) => signing !== configured);
  }

  async #generate(use: KeyUse, state: 'active' | 'next', now: number): Promise<SigningKeyRecord> {
    const alg = this.#algorithms[use];
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) });
    const publicJwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(publicJwk);
    return {
      kid,
      use,
      alg,
      state,
      publicJwk: JSON.stringify(publicJwk),
      privateJwk: await this.#encrypt(kid, new TextEncoder().encode(JSON.stringify(await exportJWK(privateKey)))),
      createdAt: now,
      activatedAt: state === 'active' ? now : null,
      retiredAt: null,
      expiresAt: null,
    };
  }

  /**
   * Stores every private key that a previous master secret encrypted under the current one, in one
   * transaction, so that the previous secrets can be dropped. Retired and withdrawn keys are
   * included: a copy of the database holds them too. Keys under the current secret already are left
   * as they are, so running it again changes nothing; a key no secret decrypts stops it before
   * anything is written. The public keys, and so every token signed, stay as they were. Returns how
   * many keys were re-encrypted.
   */
  async reencrypt(): Promise<number> {
    const changes: PrivatePartChange[] = [];
    for (const record of await this.#repository.listAll()) {
      const { plaintext, underCurrentSecret } = await this.#decryptPrivateJwk(record);
      if (!underCurrentSecret) changes.push({ kid: record.kid, from: record.privateJwk, to: await this.#encrypt(record.kid, plaintext) });
    }
    return changes.length === 0 ? 0 : this.#repository.replacePrivateParts(changes);
  }

  /**
   * How many stored keys (retired and withdrawn ones included, as reencrypt takes them) only a
   * previous master secret decrypts: none once reencrypt has run, when the previous secrets are no
   * longer needed for the keys. A key no secret decrypts is not counted.
   */
  async countUnderPreviousSecrets(): Promise<number> {
    let count = 0;
    for (const record of await this.#repository.listAll()) {
      const decrypted = await this.#decryptPrivateJwk(record).catch(() => undefined);
      if (decrypted && !decrypted.underCurrentSecret) count += 1;
    }
    return count;
  }

  #encrypt(kid: string, privateJwk: Uint8Array): Promise<string> {
    return new CompactEncrypt(privateJwk).setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid }).encrypt(this.#encryptionKey);
  }

  async #decrypt(record: SigningKeyRecord): Promise<KeyObject> {
    const { plaintext } = await this.#decryptPrivateJwk(record);
    return importKey(JSON.parse(new TextDecoder().decode(plaintext)) as JWK, record.alg);
  }

  /** The private JWK, under the current master secret or else under the first previous one that decrypts it. */
  async #decryptPrivateJwk(record: SigningKeyRecord): Promise<{ plaintext: Uint8Array; underCurrentSecret: boolean }> {
    for (const key of this.#decryptionKeys) {
      try {
        const { plaintext } = await compactDecrypt(record.privateJwk, key);
        return { plaintext, underCurrentSecret: key === this.#encryptionKey };
      } catch {
        // AES-GCM's tag does not match: another secret encrypted it.
      }
    }
    throw new Error(`signing key ${record.kid} cannot be decrypted: ${this.#secretsTried}`);
  }
}

/** jose imports Web Crypto keys; Node signs a little faster with the equivalent KeyObject. */
async function importKey(jwk: JWK, alg: string): Promise<KeyObject> {
  return KeyObject.from((await importJWK(jwk, alg, { extractable: true })) as webcrypto.CryptoKey);
}
