import { hash, timingSafeEqual } from 'node:crypto';
import type { Client, ClientSecret } from '../../storage/repositories/clients.ts';
import type { ClientRegistry } from '../clients.ts';
import type { ClientAssertions } from './assertion.ts';
import { invalidClient } from '../errors.ts';
import { isWellFormed } from '../tokens/opaque.ts';
import type { ClientAuthMethod, PresentedCredentials } from './credentials.ts';

export interface AuthenticatedClient {
  client: Client;
  method: ClientAuthMethod;
}

/** What client authentication reads: the client registry, and the ledger of client assertions. */
export interface ClientAuthServices {
  clients: ClientRegistry;
  clientAssertions: ClientAssertions;
}

/**
 * Checks credentials read by `presentedCredentials` against the client's registered secrets or
 * keys. Confidential clients must prove their secret; public clients present only their id (and
 * PKCE then protects the flow). Every failure is the same `invalid_client`, so the answer does not
 * tell which part was wrong. Callers go through TokenEndpoint.authenticateClient, which throttles guessing.
 */
export async function verifyClient(services: ClientAuthServices, presented: PresentedCredentials, now: number): Promise<AuthenticatedClient> {
  const usedBasic = presented.method === 'client_secret_basic';
  const failed = () => invalidClient('client authentication failed', usedBasic);

  // No client id is that long or holds a NUL (which PostgreSQL text cannot even hold): no lookup.
  if (presented.clientId.length > 256 || presented.clientId.includes('\0')) throw failed();
  const entry = await services.clients.get(presented.clientId);
  if (!entry) throw failed();
  const { client } = entry;

  if (client.type === 'public') {
    // A public client has no secret to present; one that sends a secret is confused or forged. Its
    // id in a Basic header with an empty password presents none (RFC 6749 §2.3.1 encodes an empty
    // secret so): requests-oauthlib names a client without a secret that way, as Keycloak and Ory
    // Hydra accept.
    if (presented.method !== 'none' && !(presented.method === 'client_secret_basic' && presented.secret === '')) throw failed();
    return { client, method: 'none' };
  }
  if (presented.method === 'private_key_jwt') {
    const refusal = await services.clientAssertions.refusal(entry, presented.assertion!, now);
    if (refusal) throw invalidClient(refusal);
    return { client, method: 'private_key_jwt' };
  }
  if (presented.secret === undefined) throw failed();
  // A secret that matched before, within this entry's few seconds of life: looked up by the string's
  // hash (seeded per process), so a wrong guess takes the path below and learns nothing from timing.
  const verified = entry.verifiedSecrets.get(presented.secret);
  if (verified) {
    if (!isLive(verified, now)) throw failed();
    return { client, method: presented.method };
  }
  if (!isWellFormed(presented.secret, 'cs')) throw failed();

  const digest = hash('sha256', presented.secret, 'buffer');
  let matched: ClientSecret | undefined;
  entry.secrets.forEach((secret, i) => {
    // Every secret is compared, in constant time, whether or not an earlier one matched.
    const equal = timingSafeEqual(digest, entry.secretDigests[i]!);
    if (equal && isLive(secret, now)) matched = secret;
  });
  if (!matched) throw failed();
  if (entry.verifiedSecrets.size < entry.secrets.length) entry.verifiedSecrets.set(presented.secret, matched);
  if (presented.authorization !== undefined) services.clients.rememberBasic(presented.authorization, { clientId: presented.clientId, secret: presented.secret });
  return { client, method: presented.method };
}

const isLive = (secret: ClientSecret, now: number): boolean => secret.expiresAt === null || secret.expiresAt > now;
