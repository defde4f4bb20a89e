import { hash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * Opaque credentials: 256 bits from the CSPRNG, a prefix naming the kind (so secret scanners and
 * logs can recognize them) and a CRC-32 checksum, so a mistyped or forged value is rejected
 * without a database read. Only `digestOf(value)` is ever stored.
 *
 *   gate_rt_<43 base64url chars of randomness><6 base64url chars of CRC-32>
 */
export type OpaqueKind =
  | 'rt' // refresh token
  | 'ac' // authorization code
  | 'cs' // client secret
  | 'ak' // API key
  | 'ss' // browser session
  | 'pr' // password reset link
  | 'ev' // email verification link
  | 'ec'; // email change link

const BODY_LENGTH = 43; // 32 bytes in base64url
const CHECKSUM_LENGTH = 6; // 4 bytes in base64url
const PATTERN = /^gate_(rt|ac|cs|ak|ss|pr|ev|ec)_([A-Za-z0-9_-]{43})([A-Za-z0-9_-]{6})$/;

const checksum = (prefixAndBody: string): string => {
  // From Node's shared pool rather than a fresh ArrayBuffer for every credential checked; all four
  // bytes are written.
  const buffer = Buffer.allocUnsafe(4);
  buffer.writeUInt32BE(crc32(prefixAndBody));
  return buffer.toString('base64url');
};

export function createOpaqueToken(kind: OpaqueKind): string {
  const prefixAndBody = `gate_${kind}_${randomBytes(32).toString('base64url')}`;
  return prefixAndBody + checksum(prefixAndBody);
}

/** True when `value` is well formed for `kind` and its checksum matches. */
export function isWellFormed(value: unknown, kind: OpaqueKind): value is string {
  if (typeof value !== 'string' || value.length !== 8 + BODY_LENGTH + CHECKSUM_LENGTH) return false;
  const match = PATTERN.exec(value);
  if (!match || match[1] !== kind) return false;
  return checksum(value.slice(0, -CHECKSUM_LENGTH)) === match[3];
}

/** The kind named by a well-formed token's prefix, or undefined. */
export function kindOf(value: string): OpaqueKind | undefined {
  const match = PATTERN.exec(value);
  if (!match) return undefined;
  const kind = match[1] as OpaqueKind;
  return isWellFormed(value, kind) ? kind : undefined;
}

/** SHA-256, base64url: what is stored and looked up in place of the credential. */
export function digestOf(value: string): string {
  return hash('sha256', value, 'base64url');
}

/** The last characters of a credential: enough for a person to tell two apart, useless to an attacker. */
export const hintOf = (value: string): string => value.slice(-4);
