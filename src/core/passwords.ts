import { argon2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const argon2Async = promisify(argon2);

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
  const tag = await argon2Async('argon2id', { message: normalizedPassword(password), nonce, ...PARAMETERS });
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
  if (await matches(form)) {
    const current = Number(m) === PARAMETERS.memory && Number(t) === PARAMETERS.passes && Number(p) === PARAMETERS.parallelism && expectedTag.length === PARAMETERS.tagLength;
    return { valid: true, rehash: !current };
  }
  const asTyped = form !== password && (await matches(password));
  return { valid: asTyped, rehash: asTyped };
}

/**
 * Verified against when the account does not exist, so an unknown email costs the same time as a
 * wrong password and the answer's timing does not tell whether an email is registered.
 */
let decoyHash: Promise<string> | undefined;
export function decoyPasswordHash(): Promise<string> {
  decoyHash ??= hashPassword(randomBytes(16).toString('hex'));
  return decoyHash;
}

// PHC strings use base64 without padding.
const b64 = (buffer: Buffer): string => buffer.toString('base64').replace(/=+$/, '');
