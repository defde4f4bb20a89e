import type { RevocationRepository } from '../../storage/repositories/revocations.ts';
import { withDeadline } from '../deadline.ts';
import type { IssuedAccessToken } from './jwt.ts';

interface Entry {
  /** The client record the token was issued for: a changed or reloaded client never reuses it. */
  owner: object;
  kid: string;
  token: IssuedAccessToken;
  issuedAt: number;
  /** When the token was last known not to be revoked: when it was signed, or the last re-check. */
  confirmedAt: number;
  /** The revocation read in flight, shared by the requests that arrive while it runs. */
  confirming: Promise<boolean> | undefined;
}

/**
 * Client-credentials tokens handed again to identical requests for a few seconds.
 *
 * A client that fetches a token before every API call (common, and the load that hurts
 * authorization servers most) costs one signature per window instead of one per request. The
 * token is exactly what a fresh request would get — same client, same scopes, same key — with
 * `expires_in` counting down from when it was signed. Never used when a user is involved.
 *
 * A revoked token is never handed out again (RFC 7009 §2: the token is invalid from then on). The
 * instance that revoked it forgets it at once (`forget`); other instances, and the other workers of
 * one instance, learn of it from the revocation store: an entry not confirmed against it for
 * CONFIRMED_FOR_SECONDS is re-checked before it is served again, and dropped if revoked. So a token
 * revoked elsewhere is handed out for at most one second after its revocation, and the store is
 * read at most once a second per reused token, however many requests share it — never on every
 * request, which would put a database read on the hot path. The requests waiting on that read wait
 * CONFIRM_WAIT_MS at most: a store that is slow, busy or down confirms nothing, and a new token is
 * signed, which needs no database — the token endpoint never waits out a database timeout here.
 */
export class ClientTokenReuse {
  static readonly CONFIRMED_FOR_SECONDS = 1;
  static readonly CONFIRM_WAIT_MS = 100;
  #windowSeconds: number;
  #revocations: Pick<RevocationRepository, 'isJtiRevoked'>;
  #maxEntries: number;
  #entries = new Map<string, Entry>();

  constructor(windowSeconds: number, revocations: Pick<RevocationRepository, 'isJtiRevoked'>, maxEntries = 10_000) {
    this.#windowSeconds = windowSeconds;
    this.#revocations = revocations;
    this.#maxEntries = maxEntries;
  }

  get enabled(): boolean {
    return this.#windowSeconds > 0;
  }

  /**
   * The token remembered for `key`, if it may be handed out again: at once when it was confirmed
   * within the last CONFIRMED_FOR_SECONDS, else a promise settled once the revocation store has
   * been asked (undefined when it was revoked). Undefined when there is none to reuse.
   */
  find(key: string, owner: object, kid: string, now: number): IssuedAccessToken | Promise<IssuedAccessToken | undefined> | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.owner !== owner || entry.kid !== kid || now - entry.issuedAt >= this.#windowSeconds) {
      this.#entries.delete(key);
      return undefined;
    }
    if (now - entry.confirmedAt < ClientTokenReuse.CONFIRMED_FOR_SECONDS) return { ...entry.token, expiresIn: entry.token.expiresAt - now };
    return this.#confirm(key, entry, now);
  }

  remember(key: string, owner: object, kid: string, token: IssuedAccessToken, now: number): void {
    if (this.#entries.size >= this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, { owner, kid, token, issuedAt: now, confirmedAt: now, confirming: undefined });
  }

  /** A revoked token must never be handed out again. */
  forget(jti: string): void {
    for (const [key, entry] of this.#entries) if (entry.token.jti === jti) this.#entries.delete(key);
  }

  async #confirm(key: string, entry: Entry, now: number): Promise<IssuedAccessToken | undefined> {
    entry.confirming ??= withDeadline(this.#revocations.isJtiRevoked(entry.token.jti), ClientTokenReuse.CONFIRM_WAIT_MS, 'the revocation store did not answer in time').then(
      (revoked) => {
        entry.confirming = undefined;
        if (!revoked) entry.confirmedAt = now;
        return !revoked;
      },
      () => {
        // A store that cannot answer (in time) confirms nothing: a new token is signed, which needs no database.
        entry.confirming = undefined;
        return false;
      },
    );
    const valid = await entry.confirming;
    // Forgotten (revoked here) or replaced while the store was asked: not to be handed out.
    if (this.#entries.get(key) !== entry) return undefined;
    if (!valid) {
      this.#entries.delete(key);
      return undefined;
    }
    return { ...entry.token, expiresIn: entry.token.expiresAt - now };
  }
}
