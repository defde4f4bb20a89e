import type { ApiKeyRepository } from './repositories/api-keys.ts';
import type { AuditRepository } from './repositories/audit.ts';
import type { ClientRepository } from './repositories/clients.ts';
import type { AuthorizationCodeRepository } from './repositories/codes.ts';
import type { ConsentRepository } from './repositories/consents.ts';
import type { EmailChangeRepository } from './repositories/email-changes.ts';
import type { EmailVerificationRepository } from './repositories/email-verifications.ts';
import type { GrantRepository } from './repositories/grants.ts';
import type { SigningKeyRepository } from './repositories/keys.ts';
import type { PasswordResetRepository } from './repositories/password-resets.ts';
import type { PendingAuthorizationRepository } from './repositories/pending-authorizations.ts';
import type { RefreshTokenRepository } from './repositories/refresh-tokens.ts';
import type { RevocationRepository } from './repositories/revocations.ts';
import type { SessionRepository } from './repositories/sessions.ts';
import type { UserRepository } from './repositories/users.ts';
/**
 * Narrow repository interfaces, one per record kind, each in a file of its own under
 * `repositories/`, gathered here into the Storage. The protocol core depends on these only;
 * `kysely/` implements them once for SQLite and PostgreSQL. Times are epoch seconds.
 */

/** What the sweep deletes besides rows past their `expires_at`. */
export interface SweepPolicy {
  /**
   * A grant whose last refresh token is deleted ends this long after, when the last access token it
   * issued has expired, and is deleted on a later sweep (a grant that never had a refresh token was
   * given its end when it was created).
   */
  accessTokenTtlSeconds: number;
  /** Audit events older than this are deleted; 0 keeps them forever. */
  auditRetentionSeconds: number;
  /**
   * API keys revoked or expired longer ago than this are deleted; 0 or undefined keeps them forever.
   * A key that is not there is refused as a revoked one is, and so are the tokens derived from it.
   */
  apiKeyRetentionSeconds?: number;
  /**
   * `tokens.refreshTokenMaxLifetimeSeconds`: the refresh tokens of a grant made longer ago are
   * deleted (see grantRefreshEnd), as are those of a revoked or ended grant; 0 or undefined, no bound.
   */
  refreshTokenMaxLifetimeSeconds?: number;
}

export interface Storage {
  clients: ClientRepository;
  users: UserRepository;
  keys: SigningKeyRepository;
  grants: GrantRepository;
  refreshTokens: RefreshTokenRepository;
  codes: AuthorizationCodeRepository;
  revocations: RevocationRepository;
  audit: AuditRepository;
  sessions: SessionRepository;
  consents: ConsentRepository;
  pendingAuthorizations: PendingAuthorizationRepository;
  apiKeys: ApiKeyRepository;
  passwordResets: PasswordResetRepository;
  emailVerifications: EmailVerificationRepository;
  emailChanges: EmailChangeRepository;
  /** Connections of the PostgreSQL pool; undefined for SQLite. */
  poolStats(): { total: number; idle: number; waiting: number } | undefined;
  /** Throws when the database does not answer. */
  ping(): Promise<void>;
  /**
   * Deletes up to `limit` expired rows per table (see SweepPolicy) — refresh tokens of no more use,
   * grants once they have ended and no refresh token of theirs is left — and returns how many went. On
   * PostgreSQL one instance sweeps at a time: while another is sweeping, this deletes nothing (on an
   * engine without advisory locks every instance sweeps).
   */
  sweepExpired(now: number, limit: number, policy: SweepPolicy): Promise<number>;
  close(): Promise<void>;
  readonly dialect: 'sqlite' | 'postgres';
}
