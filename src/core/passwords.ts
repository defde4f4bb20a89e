import { argon2, randomBytes, timingSafeEqual } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';

const argon2Async = promisify(argon2);

/**
 * Argon2id runs on libuv's thread pool (UV_THREADPOOL_SIZE threads, 4 unless set), which the
 * signatures of every token (WebCrypto), DNS lookups and file reads share, first come first served.
 * Unbounded, a flood of sign-ins from many addresses (each under its own limits) queued hundreds of
 * hashes of tens of milliseconds there, and every token request waited behind them: 50 queued hashes
 * held one ES256 signature for 0.66 s. So few passwords are hashed at once — two pool threads are
 * always left to the rest, and hashing takes at most half the cores — and a bounded number wait
 * their turn, some two seconds' worth. Past that a password is not hashed at all: PasswordsBusy,
 * answered 503 with Retry-After, which costs nothing and counts against no account. Raising
 * UV_THREADPOOL_SIZE on a machine with many cores raises the number hashed at once.
 */
export class PasswordsBusy extends Error {
  override name = 'PasswordsBusy';
  /** Read by isUnavailable: the server cannot take this now, and a moment later it can. */
  readonly code = 'GATEHOUSE_PASSWORDS_BUSY';
  constructor() {
    super('too many passwords are being checked at once; try again shortly');
  }
}

/** At most `concurrency` tasks at once, and `maxWaiting` waiting for a turn; PasswordsBusy beyond. */
export class PasswordWork {
  readonly concurrency: number;
  readonly maxWaiting: number;
  #running = 0;
  #waiting: Array<() => void> = [];

  constructor(concurrency: number, maxWaiting: number) {
    this.concurrency = concurrency;
    this.maxWaiting = maxWaiting;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (this.#waiting.length >= this.maxWaiting) throw new PasswordsBusy();
      await new Promise<void>((turn) => this.#waiting.push(turn));
    } else {
      this.#running += 1;
    }
    try {
      return await task();
    } finally {
      // The turn passes straight to the next in line, so a newcomer cannot slip in ahead of it.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running -= 1;
    }
  }
}

const threadPool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
const concurrency = Math.max(1, Math.min(threadPool - 2, Math.ceil(availableParallelism() / 2)));
/** The one line every password hash of the process goes through. */
export const passwordWork = new PasswordWork(concurrency, 32 * concurrency);

/** OWASP's Argon2id baseline: 19 MiB, two passes, one lane. */
const PARAMETERS = { memory: 19456, passes: 2, parallelism: 1, tagLength: 32 };

/**
 * The form a password is hashed in: Unicode Normalization Form KC, as NIST SP 800-63B §5.1.1.2 asks
 * (and RFC 8265's OpaqueString does, with NFC), so that a password is the same password however the
 * keyboard or the system composed it: "ü" as one character or as u and a combining diaeresis, a
 * full-width digit from an East Asian input method or its ASCII digit, a no-break space or a space.
 */
export const normalizedPassword = (password: string): string => password.normalize('NFKC');

/** Argon2id of the normalized password, in the PHC string format: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`. */
export async function hashPassword(password: string): Promise<string> {
  const nonce = randomBytes(16);
  const tag = await passwordWork.run(() => argon2Async('argon2id', { message: normalizedPassword(password), nonce, ...PARAMETERS }));
  const { memory, passes, parallelism } = PARAMETERS;
  return `$argon2id$v=19$m=${memory},t=${passes},p=${parallelism}$${b64(nonce)}$${b64(tag)}`;
}

const PHC = /^\$argon2id\$v=19\$m=(\d{1,7}),t=(\d{1,3}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/** What checking a password against a stored hash tells. */
export interface PasswordCheck {
  valid: boolean;
  /**
   * The password is right, but its hash is not what hashPassword makes today: it was made before
   * passwords were normalized, or with other Argon2id parameters. Hashing the password again makes
   * the next check a single one, with today's parameters.
   */
  rehash: boolean;
}

/**
 * Whether `password`, normalized, is the one `hash` was made of; or, failing that, `password` as
 * typed, which is what hashes made before passwords were normalized hold. That second check is made
 * for every password that normalization changes, whether the account exists or not (the decoy hash
 * too), so it tells nothing about the account.
 */
export async function checkPassword(password: string, hash: string): Promise<PasswordCheck> {
  const match = PHC.exec(hash);
  if (!match) return { valid: false, rehash: false };
  const [, m, t, p, salt, expected] = match;
  const expectedTag = Buffer.from(expected!, 'base64');
  const matches = async (message: string) => {
    const tag = await argon2Async('argon2id', {
      message,
      nonce: Buffer.from(salt!, 'base64'),
      memory: Number(m),
      passes: Number(t),
      parallelism: Number(p),
      tagLength: expectedTag.length,
    });
    return tag.length === expectedTag.length && timingSafeEqual(tag, expectedTag);
  };
  const form = normalizedPassword(password);
  // One turn for both checks: a password that needs the second is not sent to the back of the line.
  return passwordWork.run(async () => {
    if (await matches(form)) {
      const current = Number(m) === PARAMETERS.memory && Number(t) === PARAMETERS.passes && Number(p) === PARAMETERS.parallelism && expectedTag.length === PARAMETERS.tagLength;
      return { valid: true, rehash: !current };
    }
    const asTyped = form !== password && (await matches(password));
    return { valid: asTyped, rehash: asTyped };
  });
}

/**
 * Verified against when the account does not exist, so an unknown email costs the same time as a
 * wrong password and the answer's timing does not tell whether an email is registered.
 */
let decoyHash: Promise<string> | undefined;
export function decoyPasswordHash(): Promise<string> {
  // Not kept when it failed (the hashing was busy): the next sign-in makes it.
  decoyHash ??= hashPassword(randomBytes(16).toString('hex')).catch((error: unknown) => {
    decoyHash = undefined;
    throw error;
  });
  return decoyHash;
}

// PHC strings use base64 without padding.
const b64 = (buffer: Buffer): string => buffer.toString('base64').replace(/=+$/, '');
