import { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Gatehouse } from '../gatehouse.ts';

/** The metrics of one app instance, in a registry of its own (several apps may share a process in tests). */
export interface Metrics {
  registry: Registry;
  /** Counts a token response, by the (registered, so bounded) grant type. */
  tokenIssued(grantType: string): void;
  oauthErrors: Counter<'error'>;
}

/**
 * The labelled children of a metric, looked up by a flat key the caller builds from the label
 * values: prom-client would otherwise hash the label object on every observation.
 */
function childrenOf<Labels extends string, Child>(metric: { labels(values: Partial<Record<Labels, string>>): Child }) {
  const children = new Map<string, Child>();
  return (key: string, values: Partial<Record<Labels, string>>): Child => {
    let child = children.get(key);
    if (!child) {
      child = metric.labels(values);
      children.set(key, child);
    }
    return child;
  };
}

export function createMetrics(gatehouse: Gatehouse): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gatehouse_' });
  const pool = (field: 'total' | 'idle' | 'waiting') => () => gatehouse.storage.poolStats()?.[field] ?? 0;
  for (const [field, help] of [
    ['total', 'Database connections open'],
    ['idle', 'Database connections idle'],
    ['waiting', 'Queries waiting for a database connection'],
  ] as const) {
    new Gauge({
      name: `gatehouse_db_pool_${field}`,
      help,
      registers: [registry],
      collect() {
        this.set(pool(field)());
      },
    });
  }
  const tokensIssued = childrenOf(
    new Counter({ name: 'gatehouse_tokens_issued_total', help: 'Tokens issued at the token endpoint, by grant type', labelNames: ['grant_type'], registers: [registry] }),
  );
  return {
    registry,
    tokenIssued: (grantType) => tokensIssued(grantType, { grant_type: grantType }).inc(),
    oauthErrors: new Counter({ name: 'gatehouse_oauth_errors_total', help: 'OAuth error responses, by error code', labelNames: ['error'], registers: [registry] }),
  };
}

/**
 * Fastify's account of each finished request (its access log, off unless asked for) also records the
 * request's latency by route pattern, method and status class. Where Fastify ends a request anyway,
 * this costs the token endpoint nothing more: an `onResponse` hook instead would run a hook chain
 * for every response, which cost the client_credentials path about a tenth of its throughput.
 */
export class MeteredLogController extends LogController {
  readonly #observe: (request: FastifyRequest, reply: FastifyReply) => void;

  constructor(metrics: Metrics, options: { logRequests: boolean }) {
    super({ disableRequestLogging: !options.logRequests });
    const latency = childrenOf(
      new Histogram({
        name: 'gatehouse_http_request_duration_seconds',
        help: 'Time to answer a request, by route, method and status class',
        labelNames: ['route', 'method', 'status'],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [metrics.registry],
      }),
    );
    this.#observe = (request, reply) => {
      // The route pattern, never the raw URL: ids and query strings stay out of label values.
      const route = request.routeOptions.url ?? 'unmatched';
      const status = `${Math.floor(reply.statusCode / 100)}xx`;
      latency(`${route} ${request.method} ${status}`, { route, method: request.method, status }).observe(reply.elapsedTime / 1000);
    };
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    this.#observe(request, reply);
    super.requestCompleted(error, request, reply, metadata);
  }
}

/** `GET /metrics` in the Prometheus text format. */
export function metricsRoute(app: FastifyInstance, metrics: Metrics): void {
  app.get('/metrics', async (_request, reply) =>
    reply.header('x-content-type-options', 'nosniff').type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
}
