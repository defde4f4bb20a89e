export interface RevocationRepository {
  /** Records a revoked access-token `jti` until the token would have expired anyway. */
  revokeJti(jti: string, expiresAt: number): Promise<void>;
  isJtiRevoked(jti: string): Promise<boolean>;
}
