import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Gatehouse } from '../gatehouse.ts';

/** The metrics of one app instance, in a registry of its own (several apps may share a process in tests). */
export interface Metrics {
  registry: Registry;
  tokensIssued: Counter<'grant_type'>;
  oauthErrors: Counter<'error'>;
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
  return {
    registry,
    tokensIssued: new Counter({ name: 'gatehouse_tokens_issued_total', help: 'Tokens issued at the token endpoint, by grant type', labelNames: ['grant_type'], registers: [registry] }),
    oauthErrors: new Counter({ name: 'gatehouse_oauth_errors_total', help: 'OAuth error responses, by error code', labelNames: ['error'], registers: [registry] }),
  };
}

/** Latency of every endpoint, and `GET /metrics` in the Prometheus text format. Called on the root instance, so the hook sees every route. */
export function instrument(app: FastifyInstance, metrics: Metrics): void {
  const latency = new Histogram({
    name: 'gatehouse_http_request_duration_seconds',
    help: 'Time to answer a request, by route, method and status class',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [metrics.registry],
  });
  // One child per route, method and status class, looked up by a flat key: prom-client would
  // otherwise hash the label object on every request.
  const series = new Map<string, Histogram.Internal<'route' | 'method' | 'status'>>();
  app.addHook('onResponse', (request, reply, done) => {
    // The route pattern, never the raw URL: ids and query strings stay out of label values.
    const route = request.routeOptions.url ?? 'unmatched';
    const status = `${Math.floor(reply.statusCode / 100)}xx`;
    const key = `${route} ${request.method} ${status}`;
    let child = series.get(key);
    if (!child) {
      child = latency.labels({ route, method: request.method, status });
      series.set(key, child);
    }
    child.observe(reply.elapsedTime / 1000);
    done();
  });
  app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
}
