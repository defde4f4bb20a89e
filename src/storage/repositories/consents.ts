export interface Consent {
  userId: string;
  clientId: string;
  scopes: string[];
  createdAt: number;
  updatedAt: number;
}

/** What withdrawing a user's authorizations ended. */
export interface Withdrawal {
  /** The clients whose consent was deleted. */
  consents: string[];
  /** The grants revoked (those revoked before are not among them), with their clients. */
  grants: { id: string; clientId: string }[];
  /** How many codes, issued and not yet exchanged, were deleted. */
  codes: number;
}

export interface ConsentRepository {
  find(userId: string, clientId: string): Promise<Consent | undefined>;
  /** Creates or replaces the user's consent for the client. */
  save(consent: Consent): Promise<void>;
  /**
   * Withdraws the consent, revokes every grant of the user to the client (so their refresh tokens
   * stop working) and deletes the codes issued to the client for the user and not yet exchanged (a
   * code exchanged afterwards would start a grant the user can no longer see or withdraw). Returns
   * whether there was anything to withdraw.
   */
  withdraw(userId: string, clientId: string, now: number): Promise<boolean>;
  listForUser(userId: string): Promise<Consent[]>;
}
