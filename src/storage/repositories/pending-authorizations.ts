/** A validated authorization request waiting for the person to sign in or consent. */
export interface PendingAuthorization {
  id: string;
  clientId: string;
  request: Record<string, unknown>;
  createdAt: number;
  expiresAt: number;
}

export interface PendingAuthorizationRepository {
  create(pending: PendingAuthorization): Promise<void>;
  find(id: string): Promise<PendingAuthorization | undefined>;
  /** Removes the request once answered; false when another request answered it first. */
  take(id: string): Promise<boolean>;
}
