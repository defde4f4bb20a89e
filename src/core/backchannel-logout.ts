import { randomUUID } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { SignJWT } from 'jose';
import type { ClientRepository } from '../storage/repositories/clients.ts';
import type { EndedSession } from '../storage/repositories/sessions.ts';
import { internalRange } from './addresses.ts';
import type { AuditTrail } from './audit.ts';
import type { Clock } from './clock.ts';
import { BoundedWork, LOOKUP_THREADS } from './thread-pool.ts';
import type { KeyStore } from './tokens/keys.ts';

/** Back-Channel Logout 1.0 §2.4: the event a Logout Token carries. */
export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/**
 * How long a Logout Token is good for. §2.6 asks the receiver to check `iat`; a token only has to
 * reach it, once, straight after the session ended.
 */
const LOGOUT_TOKEN_TTL_SECONDS = 120;

/** How long a client's back-channel logout URI may take to answer: one attempt, then it is given up. */
export const BACKCHANNEL_LOGOUT_TIMEOUT_MS = 3_000;

/**
 * How many Logout Tokens are being posted at once, at most; the others wait their turn. Thousands of
 * sessions can end at once (an operator disabling or deleting a user who signed in everywhere), and
 * each delivery holds a connection, a database read and a signature: unbounded, they would take the
 * server's sockets and database pool from the requests it is serving.
 */
export const BACKCHANNEL_LOGOUT_CONCURRENCY = 8;

/**
 * How many of those places one client takes at most. A receiver that never answers holds each of its
 * places for the whole timeout: a client whose sessions ended by the hundred (a person signing in
 * and out of it in a loop, then signing out everywhere) held them all, and every other client's
 * Logout Tokens waited behind its, for minutes.
 */
export const BACKCHANNEL_LOGOUT_PER_CLIENT = 2;

/**
 * How many Logout Tokens may wait their turn at once, of every client; one client's may take a tenth
 * of the places. The sessions a person or an operator ends are not limited, and a receiver that
 * never answers is posted to once every few seconds: the waiting ones would otherwise grow in
 * memory for as long as people sign out faster, and one client's would take every place. A Logout
 * Token with no place is not sent, and audited so.
 */
export const MAX_LOGOUTS_WAITING = 10_000;

export interface LogoutTokenInput {
  clientId: string;
  userId: string;
  sid: string | null;
}

/**
 * OpenID Connect Back-Channel Logout 1.0: when a browser session ends, every client the
 * authorization endpoint answered through it that registered a `backchannel_logout_uri` is sent a
 * Logout Token there (§2.5), so that it can end its own session of the person.
 *
 * Delivery happens after the session has ended, off the path of the request that ended it: a
 * client that answers slowly, with an error, or not at all, neither delays nor undoes the sign-out.
 * One attempt each, with a timeout, following no redirect (§2.5 leaves retries to the OP, and a
 * redirect would send the token somewhere the client never registered). Each outcome is audited as
 * `backchannel_logout.delivered`, never with the token.
 */
export class BackChannelLogout {
  #clients: ClientRepository;
  #keys: KeyStore;
  #audit: AuditTrail;
  #clock: Clock;
  #issuer: string;
  #timeoutMs: number;
  #lookup: NameLookup;
  #inFlight = new Set<Promise<void>>();
  /** By client, in the order they first waited: the sessions whose Logout Tokens wait their turn. */
  #waiting = new Map<string, EndedSession[]>();
  /** By client: how many of its Logout Tokens are being posted. */
  #postingTo = new Map<string, number>();
  #waitingCount = 0;
  #maxWaiting: number;
  #maxWaitingPerClient: number;

  /** `maxWaiting`: MAX_LOGOUTS_WAITING unless told; `lookup`: how names are looked up, dns.lookup unless told. */
  constructor(services: { clients: ClientRepository; keys: KeyStore; audit: AuditTrail; clock: Clock; issuer: string; timeoutMs?: number; maxWaiting?: number | undefined; lookup?: NameLookup | undefined }) {
    this.#clients = services.clients;
    this.#keys = services.keys;
    this.#audit = services.audit;
    this.#clock = services.clock;
    this.#issuer = services.issuer;
    this.#timeoutMs = services.timeoutMs ?? BACKCHANNEL_LOGOUT_TIMEOUT_MS;
    this.#lookup = boundedLookup(services.lookup ?? dnsLookup);
    this.#maxWaiting = services.maxWaiting ?? MAX_LOGOUTS_WAITING;
    this.#maxWaitingPerClient = Math.ceil(this.#maxWaiting / 10);
  }

  /** Starts telling the clients of the sessions that ended, a few at a time; returns at once. */
  notify(ended: readonly EndedSession[]): void {
    for (const session of ended) {
      for (const clientId of new Set(session.clientIds)) {
        const queue = this.#waiting.get(clientId);
        if (this.#waitingCount >= this.#maxWaiting || (queue?.length ?? 0) >= this.#maxWaitingPerClient) {
          this.#audited(session, clientId, 'failure', { reason: 'too many Logout Tokens waiting for the client' });
          continue;
        }
        if (queue) queue.push(session);
        else this.#waiting.set(clientId, [session]);
        this.#waitingCount++;
      }
    }
    this.#startWaiting();
  }

  /**
   * Starts the next waiting Logout Tokens while there are places, each of a client that has fewer than
   * BACKCHANNEL_LOGOUT_PER_CLIENT being posted: those of the clients that waited first, in the order
   * their sessions ended.
   */
  #startWaiting(): void {
    for (const [clientId, queue] of this.#waiting) {
      if (this.#inFlight.size >= BACKCHANNEL_LOGOUT_CONCURRENCY) return;
      while (queue.length > 0 && (this.#postingTo.get(clientId) ?? 0) < BACKCHANNEL_LOGOUT_PER_CLIENT && this.#inFlight.size < BACKCHANNEL_LOGOUT_CONCURRENCY) {
        this.#waitingCount--;
        this.#start(queue.shift()!, clientId);
      }
      if (queue.length === 0) this.#waiting.delete(clientId);
    }
  }

  #start(session: EndedSession, clientId: string): void {
    this.#postingTo.set(clientId, (this.#postingTo.get(clientId) ?? 0) + 1);
    const delivery = this.#deliver(session, clientId).finally(() => {
      const posting = this.#postingTo.get(clientId)! - 1;
      if (posting === 0) this.#postingTo.delete(clientId);
      else this.#postingTo.set(clientId, posting);
      this.#inFlight.delete(delivery);
      this.#startWaiting();
    });
    this.#inFlight.add(delivery);
  }

  /**
   * Resolves once every delivery asked for so far, those waiting their turn included, has succeeded
   * or failed: on shutdown. A delivery takes at most the timeout, so this takes at most the timeout
   * for every BACKCHANNEL_LOGOUT_CONCURRENCY of them (BACKCHANNEL_LOGOUT_PER_CLIENT of one client's).
   */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /**
   * §2.4: a JWT signed as ID tokens are (the relying party verifies it as one), typed `logout+jwt`
   * (§2.4: "explicitly typed"), with `sid` when the session has one (Gatehouse's always do) and
   * never a `nonce` ("A nonce Claim MUST NOT be present", so it is never taken for an ID token).
   */
  async logoutToken({ clientId, userId, sid }: LogoutTokenInput, now: number): Promise<string> {
    const { kid, alg, key } = this.#keys.signingKey('id');
    const claims: Record<string, unknown> = { events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } };
    if (sid !== null) claims.sid = sid;
    return new SignJWT(claims)
      .setProtectedHeader({ alg, kid, typ: 'logout+jwt' })
      .setIssuer(this.#issuer)
      .setSubject(userId)
      .setAudience(clientId)
      .setIssuedAt(now)
      .setExpirationTime(now + LOGOUT_TOKEN_TTL_SECONDS)
      .setJti(randomUUID())
      .sign(key);
  }

  #audited(session: EndedSession, clientId: string, outcome: 'success' | 'failure', data: Record<string, unknown>): void {
    this.#audit.record({ at: this.#clock(), kind: 'backchannel_logout.delivered', outcome, clientId, userId: session.userId, data: { sid: session.sid, ...data } });
  }

  async #deliver(session: EndedSession, clientId: string): Promise<void> {
    const record = (outcome: 'success' | 'failure', data: Record<string, unknown>) => this.#audited(session, clientId, outcome, data);
    try {
      // A client deleted since, or one that registered no URI, is not told.
      const client = await this.#clients.find(clientId);
      if (!client?.backchannelLogoutUri) return;
      const token = await this.logoutToken({ clientId, userId: session.userId, sid: session.sid }, this.#clock());
      // A developer's URI passed checkBackchannelLogoutUri, which resolves no name: where a name
      // leads is judged here, at the connection itself, so that a DNS answer changed since
      // (rebinding) is judged too. An operator's application is posted to wherever it says.
      const status = await postForm(client.backchannelLogoutUri, { logout_token: token }, this.#timeoutMs, this.#lookup, client.ownerUserId !== null);
      // §2.8: "If the logout succeeded, the RP MUST respond with HTTP 200 OK"; 204 says as much.
      if (status >= 200 && status < 300) record('success', { status });
      else record('failure', { status, reason: status >= 300 && status < 400 ? 'redirect not followed' : 'the client refused the logout' });
    } catch (error) {
      record('failure', { reason: reasonOf(error) });
    }
  }
}

/**
 * §2.5: an HTTP POST of `application/x-www-form-urlencoded` parameters; the status the receiver
 * answers. Its body is not read, and the connection is not kept.
 */
function postForm(uri: string, fields: Record<string, string>, timeoutMs: number, lookup: NameLookup, outsideOnly: boolean): Promise<number> {
  const body = new URLSearchParams(fields).toString();
  const { protocol, hostname } = new URL(uri);
  const send = protocol === 'https:' ? httpsRequest : httpRequest;
  // An IP address calls no lookup, so it is judged here: registration judged it too, but by the
  // ranges of its day, and a URI stored before a range was counted internal is posted to now.
  if (outsideOnly && internalRange(hostname) !== undefined) return Promise.reject(new InternalAddressError(`${hostname} is in Gatehouse's own network`));
  return new Promise((resolve, reject) => {
    const request = send(
      uri,
      {
        method: 'POST',
        agent: false,
        lookup: outsideOnly ? outsideOnlyLookup(lookup) : lookup,
        signal: AbortSignal.timeout(timeoutMs),
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' },
      },
      (response: IncomingMessage) => {
        resolve(response.statusCode ?? 0);
        response.destroy();
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

class InternalAddressError extends Error {
  code = 'ERR_INTERNAL_ADDRESS';
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** dns.lookup's signature, as a connection calls it. */
export type NameLookup = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

class LookupsBusyError extends Error {
  code = 'ERR_LOOKUPS_BUSY';
}

/**
 * `lookup` (getaddrinfo, on libuv's thread pool) LOOKUP_THREADS at a time (see thread-pool.ts): a
 * DNS server that does not answer, an application's own or an attacker's, holds a thread for the
 * resolver's timeout, and 8 deliveries at once looking up such names held every thread of a pool
 * of 4 (libuv's default), and every token signature waited behind them. A lookup with no place in line
 * fails the delivery at once.
 */
function boundedLookup(lookup: NameLookup): NameLookup {
  const work = new BoundedWork(LOOKUP_THREADS, BACKCHANNEL_LOGOUT_CONCURRENCY, () => new LookupsBusyError('too many name lookups waiting'));
  return (hostname, options, callback) => {
    work
      .run(() => new Promise<LookupAddress[]>((resolve, reject) => lookup(hostname, { ...options, all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses as LookupAddress[])))))
      .then(
        (addresses) => {
          const first = addresses[0];
          if (first === undefined) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), []);
          if (options.all) callback(null, addresses);
          else callback(null, first.address, first.family);
        },
        (error: NodeJS.ErrnoException) => callback(error, []),
      );
  };
}

/**
 * `lookup`, keeping only addresses outside Gatehouse's own network (see internalRange), or failing
 * when there are none. A connection to an IP literal calls no lookup: postForm judges such a host itself.
 */
function outsideOnlyLookup(lookup: NameLookup): NameLookup {
  return (hostname, options, callback) => {
    lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      const outside = (addresses as LookupAddress[]).filter(({ address }) => internalRange(address) === undefined);
      if (outside.length === 0) return callback(new InternalAddressError(`${hostname} resolves only to internal addresses`), []);
      if (options.all) return callback(null, outside);
      callback(null, outside[0]!.address, outside[0]!.family);
    });
  };
}

/** Why a delivery failed, as the audit log says it: never the token, nor anything the receiver sent. */
function reasonOf(error: unknown): string {
  if (error instanceof InternalAddressError) return 'the host is, or resolves only to, addresses in Gatehouse’s own network';
  const { name, code } = (error ?? {}) as { name?: unknown; code?: unknown };
  if (name === 'AbortError' || name === 'TimeoutError' || code === 'ABORT_ERR') return 'no answer in time';
  if (typeof code === 'string') return `the request failed (${code})`;
  return 'the request failed';
}
