import { readFileSync } from 'node:fs';
import { describeClient } from '../../core/applications.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Client, ClientSecret, JsonWebKeySet } from '../../storage/repositories/clients.ts';
import { isoTime, optionalIsoTime, printable, type Output } from '../output.ts';

/** The client with this id; an error naming `id` when there is none. */
export async function findClient(gatehouse: Gatehouse, id: string): Promise<Client> {
  const client = await gatehouse.storage.clients.find(id);
  if (!client) throw new Error(`no client ${id}`);
  return client;
}

/** A client as `client show` prints it: as the admin API shows it, with its secrets' hints; `secret`, a new one, is printed this once. */
export async function printClient(gatehouse: Gatehouse, client: Client, out: Output, secret?: string): Promise<void> {
  const secrets = await gatehouse.storage.clients.listSecrets(client.id);
  const described = { ...describeClient(client), secrets: secrets.map(describeSecret) };
  const shown = { ...described, secrets: described.secrets.map((s) => ({ ...s, expires_at: s.expires_at ?? '-' })) };
  out.print(secret === undefined ? described : { ...described, client_secret: secret }, () =>
    [
      ...Object.entries(shown).map(([k, v]) => `${k.padEnd(26)} ${printable(typeof v === 'string' ? v : JSON.stringify(v))}`),
      ...(secret === undefined ? [] : [`${'client_secret'.padEnd(26)} ${secret}   (the client's first secret: shown once; store it now)`]),
    ].join('\n'),
  );
}

/** As the admin API shows a secret: never the secret itself, only its last characters. */
export const describeSecret = (s: ClientSecret) => ({ id: s.id, hint: `…${s.hint}`, created_at: isoTime(s.createdAt), expires_at: optionalIsoTime(s.expiresAt) });

/**
 * A JWK Set from a file; what it holds is checked when the client is saved. A file holding `null`
 * is refused here: to the core, null means "no keys", and only --none may say that.
 */
export function readJwks(path: string): JsonWebKeySet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ValidationError('jwks', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ValidationError('jwks', `${path} is not JSON`);
  }
  if (parsed === null) throw new ValidationError('jwks', `${path} holds null, not a JWK Set: {"keys": [ … ]} (set-jwks --none removes a client's keys)`);
  return parsed as JsonWebKeySet;
}

export const words = (value: string | undefined): string[] => (value ?? '').split(/[\s,]+/).filter(Boolean);

