export interface RevocationRepository {
  /** Records a revoked access-token `jti` until the token would have expired anyway. */
  revokeJti(jti: string, expiresAt: number): Promise<void>;
  isJtiRevoked(jti: string): Promise<boolean>;
  /** Whether any of `jtis` is revoked (false for none): a token and those it was derived from, in one read. */
  isAnyJtiRevoked(jtis: readonly string[]): Promise<boolean>;
}
