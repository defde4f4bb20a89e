import type { IssuedAccessToken } from './jwt.ts';

interface Entry {
  /** The client record the token was issued for: a changed or reloaded client never reuses it. */
  owner: object;
  kid: string;
  token: IssuedAccessToken;
  issuedAt: number;
}

/**
 * Client-credentials tokens handed again to identical requests for a few seconds.
 *
 * A client that fetches a token before every API call (common, and the load that hurts
 * authorization servers most) costs one signature per window instead of one per request. The
 * token is exactly what a fresh request would get — same client, same scopes, same key — with
 * `expires_in` counting down from when it was signed. Never used when a user is involved.
 */
export class ClientTokenReuse {
  #windowSeconds: number;
  #maxEntries: number;
  #entries = new Map<string, Entry>();

  constructor(windowSeconds: number, maxEntries = 10_000) {
    this.#windowSeconds = windowSeconds;
    this.#maxEntries = maxEntries;
  }

  get enabled(): boolean {
    return this.#windowSeconds > 0;
  }

  find(key: string, owner: object, kid: string, now: number): IssuedAccessToken | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.owner !== owner || entry.kid !== kid || now - entry.issuedAt >= this.#windowSeconds) {
      this.#entries.delete(key);
      return undefined;
    }
    return { ...entry.token, expiresIn: entry.token.expiresAt - now };
  }

  remember(key: string, owner: object, kid: string, token: IssuedAccessToken, now: number): void {
    if (this.#entries.size >= this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, { owner, kid, token, issuedAt: now });
  }

  /** A revoked token must never be handed out again. */
  forget(jti: string): void {
    for (const [key, entry] of this.#entries) if (entry.token.jti === jti) this.#entries.delete(key);
  }
}
