import cluster from 'node:cluster';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { Gatehouse } from '../gatehouse.ts';

/** The metrics of one app instance, in a registry of its own (several apps may share a process in tests). */
export interface Metrics {
  registry: Registry;
  /** Counts a token response, by the (registered, so bounded) grant type. */
  tokenIssued(grantType: string): void;
  /** An answer of the authorization endpoint, by its parameters: an error by its code, the implicit flow's token. */
  authorizationAnswered(fields: Readonly<Record<string, string>>): void;
  oauthErrors: Counter<'error'>;
  /** Request latency, recorded for every finished request by MeteredLogController. */
  latency: LatencyHistogram;
}

export function createMetrics(gatehouse: Gatehouse): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gatehouse_' });
  const pool = (field: 'total' | 'idle' | 'waiting') => () => gatehouse.storage.poolStats()?.[field] ?? 0;
  // Gauges: no `_total`, which Prometheus keeps for counters (its naming conventions; promtool
  // flags a gauge that has it, and dashboards take such a series for one to apply rate() to).
  for (const [field, name, help] of [
    ['total', 'gatehouse_db_pool_connections', 'Database connections open'],
    ['idle', 'gatehouse_db_pool_idle_connections', 'Database connections idle'],
    ['waiting', 'gatehouse_db_pool_waiting_queries', 'Queries waiting for a database connection'],
  ] as const) {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pool(field)());
      },
    });
  }
  const latency = new LatencyHistogram();
  const tokensIssued = new TokensIssued();
  // prom-client's types name only its own metric classes; its registry renders whatever answers get().
  registry.registerMetric(latency as unknown as Metric);
  registry.registerMetric(tokensIssued as unknown as Metric);
  const oauthErrors = new Counter({ name: 'gatehouse_oauth_errors_total', help: 'OAuth error responses, by error code', labelNames: ['error'], registers: [registry] });
  return {
    registry,
    tokenIssued: (grantType) => tokensIssued.inc(grantType),
    authorizationAnswered(fields) {
      // RFC 6749 §4.1.2.1 and §4.2.2.1: an error response, at the client's redirect URI.
      if (fields.error !== undefined) oauthErrors.inc({ error: fields.error });
      // §4.2.2: the implicit flow's access token comes from here, not from the token endpoint.
      else if (fields.access_token !== undefined) tokensIssued.inc('implicit');
    },
    oauthErrors,
    latency,
  };
}

/**
 * `gatehouse_tokens_issued_total` by grant type, counted in a plain map: prom-client's Counter
 * hashes and checks a label object on every increment, even through a child from `labels()`. The
 * registry renders it like any prom-client counter (it asks only for `get()`).
 */
class TokensIssued {
  readonly name = 'gatehouse_tokens_issued_total';
  readonly help = 'Tokens issued, by grant type: at the token endpoint, and for the implicit flow at the authorization endpoint';
  readonly type = 'counter';
  readonly aggregator = 'sum';
  #counts = new Map<string, number>();

  inc(grantType: string): void {
    this.#counts.set(grantType, (this.#counts.get(grantType) ?? 0) + 1);
  }

  get() {
    const values = [...this.#counts].map(([grantType, value]) => ({ labels: { grant_type: grantType }, value }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#counts.clear();
  }
}

/** One labelled series of the latency histogram: counts per bucket (not cumulative), sum and count. */
interface LatencySeries {
  labels: { route: string; method: string; status: string };
  counts: Float64Array;
  sum: number;
  count: number;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * `gatehouse_http_request_duration_seconds`: request latency by route pattern, method and status
 * class, a Prometheus histogram counted in plain arrays. prom-client's own Histogram builds, checks
 * and hashes a label object on every observation, which cost the token endpoint more than the rest
 * of its metrics together; here an observation is three lookups and an increment. The registry
 * renders it like any prom-client metric (it asks only for `get()`).
 */
class LatencyHistogram {
  readonly name = 'gatehouse_http_request_duration_seconds';
  readonly help = 'Time to answer a request, by route, method and status class';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Route pattern → method → status class (1 to 5) → series, for observe(); every series in #all, for get(). */
  #series = new Map<string, Map<string, LatencySeries[]>>();
  #all: LatencySeries[] = [];

  observe(route: string, method: string, statusCode: number, seconds: number): void {
    let byMethod = this.#series.get(route);
    if (!byMethod) this.#series.set(route, (byMethod = new Map()));
    let byClass = byMethod.get(method);
    if (!byClass) byMethod.set(method, (byClass = []));
    const statusClass = Math.floor(statusCode / 100);
    let series = byClass[statusClass];
    if (!series) {
      series = { labels: { route, method, status: `${statusClass}xx` }, counts: new Float64Array(LATENCY_BUCKETS.length + 1), sum: 0, count: 0 };
      byClass[statusClass] = series;
      this.#all.push(series);
    }
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]!) bucket++;
    series.counts[bucket]! += 1;
    series.sum += seconds;
    series.count += 1;
  }

  get() {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const series of this.#all) {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((le, bucket) => {
        cumulative += series.counts[bucket]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...series.labels }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...series.labels }, value: series.count });
      values.push({ metricName: `${this.name}_sum`, labels: series.labels, value: series.sum });
      values.push({ metricName: `${this.name}_count`, labels: series.labels, value: series.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#series.clear();
    this.#all = [];
  }
}

/**
 * Fastify's account of each finished request (its access log, off unless asked for) also records the
 * request's latency. Fastify completes every request there anyway, so the token endpoint pays no
 * `onResponse` hook for it.
 */
export class MeteredLogController extends LogController {
  readonly #latency: LatencyHistogram;

  constructor(latency: LatencyHistogram, options: { logRequests: boolean }) {
    super({ disableRequestLogging: !options.logRequests });
    this.#latency = latency;
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    // The route pattern, never the raw URL: ids and query strings stay out of label values.
    this.#latency.observe(request.routeOptions.url ?? 'unmatched', request.method, reply.statusCode, reply.elapsedTime / 1000);
    super.requestCompleted(error, request, reply, metadata);
  }
}

/** `GET /metrics` in the Prometheus text format: of this process, or under `serve --workers N` of them all. */
export function metricsRoute(app: FastifyInstance, metrics: Metrics): void {
  scrapeRoute(app, cluster.isWorker ? askPrimary() : () => metrics.registry.metrics());
}

/**
 * The metrics port (`GATEHOUSE_METRICS_PORT`): an app of its own that answers `GET /metrics` and
 * nothing else, from `scrape` — this process's registry, or in the primary of `serve --workers N`
 * the sum over the workers (`gatherWorkerMetrics`).
 */
export function metricsApp(scrape: () => Promise<string>, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({ loggerInstance: logger, logController: new LogController({ disableRequestLogging: true }), return503OnClosing: true });
  scrapeRoute(app, scrape);
  app.setNotFoundHandler((_request, reply) => reply.code(404).header('x-content-type-options', 'nosniff').type('text/plain; charset=utf-8').send('only /metrics is served here\n'));
  return app;
}

function scrapeRoute(app: FastifyInstance, scrape: () => Promise<string>): void {
  app.get('/metrics', async (request, reply) => {
    reply.header('x-content-type-options', 'nosniff');
    let text: string;
    try {
      text = await scrape();
    } catch (error) {
      request.log.warn({ reason: (error as Error).message }, 'metrics could not be gathered');
      return reply.code(503).header('retry-after', '5').type('text/plain; charset=utf-8').send('metrics are unavailable for a moment\n');
    }
    return reply.type(Registry.PROMETHEUS_CONTENT_TYPE).send(text);
  });
}

const METRICS_REQUEST = 'gatehouse:metrics-request';
const METRICS_RESPONSE = 'gatehouse:metrics-response';
/** How long a worker waits for the primary's gathered metrics (the primary waits 5 s for the workers). */
const CLUSTER_SCRAPE_TIMEOUT_MS = 7_000;

interface MetricsMessage {
  type: string;
  id: number;
  text?: string;
  error?: string;
}

const isMetricsMessage = (message: unknown, type: string): message is MetricsMessage =>
  typeof message === 'object' && message !== null && (message as MetricsMessage).type === type && typeof (message as MetricsMessage).id === 'number';

/**
 * Under `serve --workers N` each worker counts on its own and a scrape lands on any one of them. The
 * worker that takes it asks the primary (see `gatherWorkerMetrics`), which collects every worker's
 * registry through prom-client's AggregatorRegistry and sums them: each scrape describes the whole
 * server, not one worker's share of it.
 */
function askPrimary(): () => Promise<string> {
  let nextId = 0;
  const pending = new Map<number, { resolve(text: string): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  process.on('message', (message: unknown) => {
    if (!isMetricsMessage(message, METRICS_RESPONSE)) return;
    const waiting = pending.get(message.id);
    if (!waiting) return;
    pending.delete(message.id);
    clearTimeout(waiting.timer);
    if (typeof message.text === 'string') waiting.resolve(message.text);
    else waiting.reject(new Error(message.error ?? 'the primary sent no metrics'));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('the primary did not send the metrics in time'));
      }, CLUSTER_SCRAPE_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      process.send!({ type: METRICS_REQUEST, id } satisfies MetricsMessage);
    });
}

/** In a worker of `serve --workers N`: the primary may collect this registry, wherever /metrics is served. */
export function shareWithPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructed for its side effect in a worker: it answers the primary's requests for this registry.
  new AggregatorRegistry();
}

/**
 * In the primary of `serve --workers N`: answers a worker's request for the metrics of every worker,
 * and returns the same gathering for a metrics port served by the primary itself.
 */
export function gatherWorkerMetrics(): () => Promise<string> {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: unknown) => {
    if (!isMetricsMessage(message, METRICS_REQUEST)) return;
    const { id } = message;
    const answer = (reply: MetricsMessage) => {
      if (worker.isConnected()) worker.send(reply);
    };
    aggregator.clusterMetrics().then(
      (text) => answer({ type: METRICS_RESPONSE, id, text }),
      (error: Error) => answer({ type: METRICS_RESPONSE, id, error: error.message }),
    );
  });
  return () => aggregator.clusterMetrics();
}
