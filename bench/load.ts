// autocannon, run in this process: 10 keep-alive connections without pipelining, like a fleet of
// API clients fetching tokens. Latency is recorded here in microseconds, because autocannon's own
// histogram counts whole milliseconds and the floor answers well under one.
import autocannon from 'autocannon';
import { createHistogram } from 'node:perf_hooks';

/** One request, sent again and again on every connection (the client_credentials comparison). */
export interface LoadRequest {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  /**
   * For flows in which every request differs: called once per connection, whose requests then
   * follow what the script says. A refresh token is single use, so each connection chains the token
   * of one answer into its next request.
   */
  perConnection?: () => ConnectionScript;
  /**
   * Checks each answer beyond its status code (a code in the redirect, `"active":true`); an answer
   * that fails it counts as a mismatch.
   */
  check?: (status: number, body: string, headers: Record<string, unknown>) => boolean;
}

export interface ConnectionScript {
  /** What differs in the connection's next request from `LoadRequest`. */
  next(): { path?: string; headers?: Record<string, string>; body?: string };
  /** Every answer on the connection, in order (no pipelining: one request in flight). */
  onResponse(status: number, body: string): void;
}

export interface LoadOptions {
  durationSeconds: number;
  connections: number;
  /** Stop after this many requests instead of after `durationSeconds`. */
  amount?: number;
}

export interface LoadResult {
  /** Mean of the per-second samples, as autocannon reports it. */
  requestsPerSecond: number;
  totalRequests: number;
  durationSeconds: number;
  latencyMs: { mean: number; p50: number; p99: number; max: number };
  /** Answers by HTTP status code. */
  statusCodes: Record<string, number>;
  non2xx: number;
  /** Connection errors, timeouts included. */
  errors: number;
  timeouts: number;
  /** Answers that failed `LoadRequest.check`; only there when the request has a check. */
  mismatches?: number;
}

export async function runLoad(request: LoadRequest, options: LoadOptions): Promise<LoadResult> {
  const latencyMicros = createHistogram();
  const statusCodes: Record<string, number> = {};
  let mismatches = 0;

  const { perConnection, check } = request;
  const setupClient =
    perConnection === undefined && check === undefined
      ? undefined
      : (client: autocannon.Client) => {
          const script = perConnection?.();
          client.setRequests([
            {
              ...(script && {
                setupRequest: (next: autocannon.Request) => {
                  const { headers, ...changes } = script.next();
                  return { ...next, ...changes, headers: { ...next.headers, ...headers } };
                },
              }),
              onResponse: (status: number, body: string, _context: object, headers: autocannon.Request['headers']) => {
                if (check && !check(status, body, headers ?? {})) mismatches++;
                script?.onResponse(status, body);
              },
            },
          ]);
        };

  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: request.url,
        method: request.method,
        headers: request.headers,
        ...(request.body !== undefined && { body: request.body }),
        connections: options.connections,
        pipelining: 1,
        ...(options.amount === undefined ? { duration: options.durationSeconds } : { amount: options.amount }),
        ...(setupClient && { setupClient }),
      },
      (error, finished) => (error ? reject(error) : resolve(finished)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      latencyMicros.record(Math.max(1, Math.round(responseTimeMs * 1000)));
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
    });
  });

  const toMs = (micros: number) => micros / 1000;
  return {
    requestsPerSecond: result.requests.mean,
    totalRequests: result.requests.total,
    durationSeconds: result.duration,
    latencyMs: {
      mean: toMs(latencyMicros.mean),
      p50: toMs(latencyMicros.percentile(50)),
      p99: toMs(latencyMicros.percentile(99)),
      max: toMs(latencyMicros.max),
    },
    statusCodes,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    ...(check !== undefined && { mismatches }),
  };
}
