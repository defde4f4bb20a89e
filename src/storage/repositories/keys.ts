export type KeyUse = 'access' | 'id';
export type KeyState = 'next' | 'active' | 'retired';

export interface SigningKeyRecord {
  kid: string;
  use: KeyUse;
  alg: string;
  state: KeyState;
  publicJwk: string;
  privateJwk: string;
  createdAt: number;
  activatedAt: number | null;
  retiredAt: number | null;
  expiresAt: number | null;
}

/** A key's private part encrypted again: `from` as stored, `to` in its place. */
export interface PrivatePartChange {
  kid: string;
  from: string;
  to: string;
}

export interface SigningKeyRepository {
  /** Keys in the JWKS at `now`: next, active, and retired ones that have not yet expired. */
  listPublished(now: number): Promise<SigningKeyRecord[]>;
  listAll(): Promise<SigningKeyRecord[]>;
  /** Publishes a key; false (storing nothing) when the use already has a key in that state. */
  insert(key: SigningKeyRecord): Promise<boolean>;
  /**
   * Rotation for one use, in one transaction: the `next` key becomes `active`, the active key
   * becomes `retired` until `retiredExpiresAt`, and `newNext` is published. Returns false (changing
   * nothing) when another rotation won the race, or when the next key was published after
   * `publishedBefore` (its `createdAt`): a key must be published a while before it signs.
   */
  rotate(use: KeyUse, newNext: SigningKeyRecord, now: number, retiredExpiresAt: number, publishedBefore?: number): Promise<boolean>;
  /**
   * Withdraws a key at once (it leaked), in one transaction: it leaves the JWKS (a retired key
   * whose publication ended at `now`), and a withdrawn `active` key is replaced by the `next` key
   * of its use; a withdrawn `active` or `next` key is followed by `newNext` as the next key. Returns
   * false (changing nothing) when the key is no longer in `state`, or has no next key to promote.
   */
  withdraw(kid: string, state: KeyState, newNext: SigningKeyRecord | undefined, now: number): Promise<boolean>;
  /**
   * Replaces the `next` key of `newNext.use` with `newNext` when the next key is of another
   * algorithm (the configured one changed). The replaced key never signed anything: it is deleted.
   * Returns false (changing nothing) when the next key has the algorithm already, or another
   * instance replaced it first.
   */
  replaceNextOfOtherAlgorithm(newNext: SigningKeyRecord): Promise<boolean>;
  /**
   * Stores each change in one transaction: the key `kid` gets `to` as its private part if it still
   * holds `from`. Returns how many keys changed; one swept, or re-encrypted by another process
   * meanwhile, is left as it is and not counted.
   */
  replacePrivateParts(changes: PrivatePartChange[]): Promise<number>;
}
