import { argon2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { BoundedWork, HASHING_THREADS } from './thread-pool.ts';

const argon2Async = promisify(argon2);

/**
 * A password that found the line of passwords to hash full, and was not checked: answered 503 with
 * Retry-After, counting against no account. Passwords are hashed a few at a time (HASHING_THREADS,
 * see thread-pool.ts) so that a flood of sign-ins from many addresses, each within its own limits,
 * does not hold every token signature behind hundreds of hashes; some two seconds' worth wait their
 * turn, and the rest cost nothing.
 */
export class PasswordsBusy extends Error {
  override name = 'PasswordsBusy';
  /** Read by isUnavailable: the server cannot take this now, and a moment later it can. */
  readonly code = 'GATEHOUSE_PASSWORDS_BUSY';
  constructor() {
    super('too many passwords are being checked at once; try again shortly');
  }
}

/** The one line every password hash of the process goes through. */
export const passwordWork = new BoundedWork(HASHING_THREADS, 32 * HASHING_THREADS, () => new PasswordsBusy());

/** OWASP's Argon2id baseline: 19 MiB, two passes, one lane. */
const PARAMETERS = { memory: 19456, passes: 2, parallelism: 1, tagLength: 32 };

/**
 * The form a password is hashed in: Unicode Normalization Form KC, as NIST SP 800-63B §5.1.1.2 asks
 * (and RFC 8265's OpaqueString does, with NFC), so that a password is the same password however the
 * keyboard or the system composed it: "ü" as one character or as u and a combining diaeresis, a
 * full-width digit from an East Asian input method or its ASCII digit, a no-break space or a space.
 */
export const normalizedPassword = (password: string): string => password.normalize('NFKC');

/**
 * The longest password that can be set, in UTF-16 units as typed. A longer one is never normalized:
 * NFKC takes time quadratic in the length of a run of combining marks (ICU orders them one by one),
 * and 64 KiB of them held the event loop for a second.
 */
export const MAX_PASSWORD_LENGTH = 1024;

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
