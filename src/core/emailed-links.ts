/**
 * What the single-use links Gatehouse sends by email (password reset, email verification) share: the
 * link's address, how its lifetime is told in the mail, and the mail sent after answering.
 */

/** The link to `path` on `issuer` carrying `token`, as the mail shows it. */
export function linkWithToken(issuer: string, path: string, token: string): string {
  return `${issuer}${path}?token=${encodeURIComponent(token)}`;
}

/** A link's lifetime as the mail says it: "30 minutes", "24 hours". */
export function lifetimeText(seconds: number): string {
  if (seconds >= 7200 && seconds % 3600 === 0) return `${seconds / 3600} hours`;
  return `${Math.round(seconds / 60)} minutes`;
}

/**
 * Mail sent after the answer that asked for it: a person waits for no mail server, and an answer
 * that names no account takes no longer when there is one (DESIGN §5). Failures go to `onError`,
 * for the log; `settled()` waits for what is still going (on shutdown, and in tests).
 */
export class MailDeliveries {
  #pending = new Set<Promise<void>>();
  #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  start(delivery: () => Promise<void>): void {
    const pending = delivery().catch(this.#onError);
    this.#pending.add(pending);
    void pending.finally(() => this.#pending.delete(pending));
  }

  /** Resolves once every delivery started so far has been sent, or has failed. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }
}
