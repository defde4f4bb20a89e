import cluster from 'node:cluster';
import type { Socket } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { parse as parseForm } from 'fast-querystring';
import type { TrustedProxies } from '../core/config.ts';
import type { Gatehouse } from '../gatehouse.ts';
import { healthRoutes } from './health.ts';
import { createMetrics, MeteredLogController, metricsRoute, shareWithPrimary, type Metrics } from './metrics.ts';
import { discoveryRoutes } from './oauth/discovery.ts';
import { oauthErrorHandler } from './oauth/errors.ts';
import { isWellEncoded } from './percent-encoding.ts';
import { invalidRequest } from '../core/errors.ts';
import { tokenRoutes } from './oauth/token.ts';
import { userinfoRoutes } from './oauth/userinfo.ts';
import { introspectionRoutes } from './oauth/introspection.ts';
import { jsonBodyParser } from './oauth/json-body.ts';
import { projectRoutes } from './oauth/projects.ts';
import { isPagePath, PAGE_ROOTS, pagesPlugin } from './pages/plugin.ts';
import { ADMIN_PREFIX, adminPlugin } from './admin/plugin.ts';
import { ProblemError, sendProblem } from './admin/problems.ts';
import { renderPage, renderView } from './pages/render.ts';
import { PAGE_HEADERS } from './pages/security.ts';

export const BODY_LIMIT = 64 * 1024;

/**
 * What one request may cost the server before it is refused: size of the body and of the headers,
 * length of a path parameter, and how long a client may take to send its request. A client that
 * trickles its headers byte by byte (slowloris), or connects and sends nothing, is cut off after
 * `headersTimeoutMs`; one that trickles its body after `requestTimeoutMs`; a connection silent
 * mid-request after `idleTimeoutMs`. Idle keep-alive connections between requests last `keepAliveTimeoutMs`.
 */
export interface HttpLimits {
  bodyLimit: number;
  maxHeaderSize: number;
  maxParamLength: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** How often Node checks the two timeouts above (its default, 30 s, would let them run late). */
  timeoutCheckIntervalMs: number;
}

export const HTTP_LIMITS: Readonly<HttpLimits> = {
  bodyLimit: BODY_LIMIT,
  maxHeaderSize: 16 * 1024,
  // Ids in paths (clients, keys, projects) are at most 200 characters; longer is refused as malformed.
  maxParamLength: 256,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
  keepAliveTimeoutMs: 72_000,
  timeoutCheckIntervalMs: 1_000,
};

export interface AppOptions {
  /** Replaces some of HTTP_LIMITS (tests use short timeouts). */
  limits?: Partial<HttpLimits>;
  /** Fastify's per-request log lines ("incoming request", "request completed"); off by default. */
  requestLogging?: boolean;
  /**
   * The app's metrics when they are served on a port of their own (see metricsApp): the app then
   * records into them and has no /metrics route. Unset: it makes its own and serves /metrics.
   */
  metrics?: Metrics;
}

/**
 * Fastify's `trustProxy` for the configured proxies. A hop count becomes a function of the hop's
 * index (0 is the connection itself), as Express reads a number: Fastify's `true` would trust every
 * hop, down to the leftmost X-Forwarded-For entry the client chose, and it trusts none for a number.
 */
function fastifyTrustProxy(proxies: TrustedProxies): false | string[] | ((address: string, hop: number) => boolean) {
  if (proxies === false) return false;
  if ('hops' in proxies) {
    const hops = proxies.hops;
    return (_address, hop) => hop < hops;
  }
  return [...proxies.addresses];
}

/** Builds the Fastify app around a Gatehouse instance; the caller listens. */
export function buildApp(gatehouse: Gatehouse, options: AppOptions = {}): FastifyInstance {
  const limits: HttpLimits = { ...HTTP_LIMITS, ...options.limits };
  const metrics = options.metrics ?? createMetrics(gatehouse);
  if (cluster.isWorker) shareWithPrimary(metrics.registry);
  const app = Fastify({
    loggerInstance: options.requestLogging ? (gatehouse.logger as FastifyBaseLogger) : withoutRequestChildren(gatehouse.logger as FastifyBaseLogger),
    // Access logs are the load balancer's job; per-request log lines would halve throughput. Every
    // finished request is still timed for the latency histograms.
    logController: new MeteredLogController(metrics.latency, { logRequests: options.requestLogging === true }),
    bodyLimit: limits.bodyLimit,
    routerOptions: { maxParamLength: limits.maxParamLength },
    // Slow or stuck clients do not hold sockets forever.
    http: {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: limits.timeoutCheckIntervalMs,
    },
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.idleTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    return503OnClosing: true,
    // X-Forwarded-Proto/-For only count when an operator says which proxies are in front.
    trustProxy: fastifyTrustProxy(gatehouse.config.trustProxy),
    // Refused before any route runs: answered in the format of the part of the server addressed.
    frameworkErrors: (error, request, reply) => answerFrameworkError(gatehouse, error, request, reply),
    clientErrorHandler: (error, socket) => answerClientError(gatehouse, limits, error, socket),
  });

  if (!options.metrics) metricsRoute(app, metrics);

  // The protocol endpoints: RFC 6749 JSON errors, form and JSON bodies (DESIGN §1).
  app.register(async (oauth) => {
    oauth.setErrorHandler((error, request, reply) => oauthErrorHandler(error as Error, request, reply, metrics));
    // The protocol endpoints' one hook, callback-style: the token endpoint's hot path pays for no
    // promise and no second hook. Each part of the server forbids content sniffing in its own hook
    // (the pages and the admin API in theirs). Browser apps (public clients with PKCE) call these
    // endpoints with fetch. They use no cookies, so any origin may read their answers, as
    // oidc-provider does by default.
    oauth.addHook('onRequest', (request, reply, done) => {
      reply.header('x-content-type-options', 'nosniff');
      if (request.headers.origin === undefined) return done();
      reply.header('access-control-allow-origin', '*');
      // RFC 6750 §3: why a Bearer token was refused is said in WWW-Authenticate, which a cross-origin
      // fetch can read only when it is exposed (Fetch: not a CORS-safelisted response header).
      if (request.method !== 'OPTIONS') {
        reply.header('access-control-expose-headers', 'WWW-Authenticate');
        return done();
      }
      reply
        .code(204)
        .headers({ 'access-control-allow-methods': 'GET, POST', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '600' })
        .send();
    });
    // The protocol endpoints' own addresses, each given an OPTIONS route once they are registered: a
    // wildcard answered the preflight of every address, the pages' and the admin API's too, whose
    // answers no other origin may read, and 204 for addresses that do not exist.
    const protocolUrls = new Set<string>();
    oauth.addHook('onRoute', (route) => {
      protocolUrls.add(route.url);
    });
    // fast-querystring keeps repeated parameters as arrays, so duplicates can be refused (RFC 6749 §3.2).
    // A malformed escape it would keep as literal text: the request is refused instead, as no code,
    // token or secret the client holds can be read from it.
    oauth.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      if (isWellEncoded(body as string)) done(null, parseForm(body as string));
      else done(invalidRequest('the body is not correctly percent-encoded (UTF-8)'));
    });
    // JSON.parse keeps only the last of repeated names: this parser refuses them (RFC 6749 §3.2).
    oauth.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(oauth));
    await oauth.register(tokenRoutes, { gatehouse, metrics });
    await oauth.register(discoveryRoutes, { gatehouse });
    await oauth.register(healthRoutes, { gatehouse });
    await oauth.register(userinfoRoutes, { gatehouse });
    await oauth.register(introspectionRoutes, { gatehouse });
    await oauth.register(projectRoutes, { gatehouse });
    for (const url of [...protocolUrls]) oauth.options(url, async (_request, reply) => reply.code(204).send());
  });

  // What people see in the browser: HTML pages and errors (DESIGN §5).
  app.register(pagesPlugin, { gatehouse, metrics });

  // Operators' back offices: admin-client tokens only, RFC 9457 problems, OpenAPI at /admin/v1/openapi.json.
  app.register(adminPlugin, { gatehouse, prefix: ADMIN_PREFIX });

  return app;
}

/**
 * Without request logging, a child logger per request (to bind its request id) would cost more
 * than it tells: requests log through the instance's logger itself. It is handed to Fastify as a
 * logger whose `child()` is itself, so Fastify's own child factory costs one call per request; a
 * factory of our own that returned the logger would be checked by Fastify on every request.
 */
function withoutRequestChildren(logger: FastifyBaseLogger): FastifyBaseLogger {
  const requests: FastifyBaseLogger = Object.create(logger);
  requests.child = () => requests;
  return requests;
}

/**
 * A path Fastify's router refused before any route ran: a parameter longer than maxParamLength
 * (414) or malformed percent-encoding (400). The admin API answers a problem, the portal and the
 * other pages a page, the protocol endpoints an RFC 6749 error.
 */
function answerFrameworkError(gatehouse: Gatehouse, error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const path = request.url.split('?')[0]!;
  const tooLong = error.code === 'FST_ERR_MAX_PARAM_LENGTH';
  const description = tooLong ? 'a path parameter is too long' : 'the address is malformed';
  reply.header('x-content-type-options', 'nosniff');
  if (path === ADMIN_PREFIX || path.startsWith(`${ADMIN_PREFIX}/`)) {
    const typeBase = `${gatehouse.config.issuer.replace(/\/+$/, '')}${ADMIN_PREFIX}/docs`;
    return sendProblem(reply, typeBase, new ProblemError('invalid-request', description), path.slice(0, 256));
  }
  if (path === '/developers' || path.startsWith('/developers/')) {
    reply.headers(PAGE_HEADERS);
    return renderPage(reply, 'error', { title: 'Page not found', message: 'There is no page at this address.' }, 404);
  }
  // A person's browser asked for a page (`/authorize%ff`): a page, with the pages' security headers.
  if (PAGE_ROOTS.includes(path.slice(1).split(/[/%]/, 1)[0]!)) {
    reply.headers(PAGE_HEADERS);
    return renderPage(reply, 'error', { title: 'Bad request', message: 'The address is malformed.' }, 400);
  }
  return reply
    .code(tooLong ? 414 : 400)
    .headers({ 'cache-control': 'no-store', pragma: 'no-cache' })
    .send({ error: 'invalid_request', error_description: description });
}

interface ClientErrorAnswer {
  status: number;
  reason: string;
  /** For the protocol endpoints' RFC 6749 error; `kib` is the limit on the request line and headers. */
  description: (kib: number) => string;
  /** The title and message of the page a browser gets. */
  title: string;
  message: (kib: number) => string;
}

const CLIENT_ERRORS: Record<string, ClientErrorAnswer> = {
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    reason: 'Request Timeout',
    description: () => 'the request did not arrive in time',
    title: 'Request timed out',
    message: () => 'The request took too long to arrive. Please try again.',
  },
  // The limit counts the request line too: an address of 100 kB is refused here, as are oversized cookies.
  HPE_HEADER_OVERFLOW: {
    status: 431,
    reason: 'Request Header Fields Too Large',
    description: (kib) => `the request line and headers are too large (at most ${kib} KiB)`,
    title: 'Request too large',
    message: (kib) =>
      `The address of this page, or the cookies your browser sent with it, is longer than this server accepts (${kib} KiB). If you followed a link, it may be broken; clearing this site’s cookies can also help.`,
  },
};
const NOT_HTTP: ClientErrorAnswer = {
  status: 400,
  reason: 'Bad Request',
  description: () => 'the request is not valid HTTP',
  title: 'Bad request',
  message: () => 'The request could not be understood.',
};

/**
 * Requests Node's HTTP parser refused (oversized headers or address, a client too slow to send its
 * request, broken framing), then the connection is closed: a page, with the pages' security
 * headers, when the request was for a page (a person's browser followed a link too long, or carries
 * too many cookies); an RFC 6749 error otherwise. Never logs or echoes the raw request, which would
 * carry its credentials.
 */
function answerClientError(gatehouse: Gatehouse, limits: HttpLimits, error: Error & { code?: string; rawPacket?: unknown }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const answer = CLIENT_ERRORS[error.code ?? ''] ?? NOT_HTTP;
  gatehouse.logger.debug({ code: error.code, status: answer.status }, 'request refused by the HTTP parser');
  const kib = Math.floor(limits.maxHeaderSize / 1024);
  const path = refusedPath(error.rawPacket);
  const [headers, body]: [Record<string, string>, string] =
    path !== undefined && isPagePath(path)
      ? [{ ...PAGE_HEADERS, 'content-type': 'text/html; charset=utf-8' }, renderView('error', { title: answer.title, message: answer.message(kib) })]
      : [
          { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' },
          JSON.stringify({ error: 'invalid_request', error_description: answer.description(kib) }),
        ];
  if (socket.writable) {
    const lines = Object.entries({ ...headers, 'content-length': String(Buffer.byteLength(body)), connection: 'close' }).map(([name, value]) => `${name}: ${value}\r\n`);
    socket.write(`HTTP/1.1 ${answer.status} ${answer.reason}\r\n${lines.join('')}\r\n${body}`);
  }
  socket.destroy();
}

/**
 * The path of the request the HTTP parser refused, if the bytes it was parsing show it. Node hands
 * over the chunk it was reading (`rawPacket`), which holds the request line when the request arrived
 * whole, as a browser sends it: the last request line in the chunk is the refused request's (one
 * pipelined before it was answered already). A chunk from the middle of a request that arrived in
 * pieces shows none: undefined, and the answer is the protocol endpoints' JSON.
 */
function refusedPath(rawPacket: unknown): string | undefined {
  if (!Buffer.isBuffer(rawPacket)) return undefined;
  let path: string | undefined;
  for (const match of rawPacket.toString('latin1').matchAll(/(?:^|\n)[A-Z]{3,7} (\/[^\s?#]*)/g)) path = match[1];
  return path;
}
