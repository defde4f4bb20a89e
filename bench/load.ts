// autocannon, run in this process: 10 keep-alive connections without pipelining, like a fleet of
// API clients fetching tokens. Latency is recorded here in microseconds, because autocannon's own
// histogram counts whole milliseconds and the floor answers well under one.
import autocannon from 'autocannon';
import { createHistogram } from 'node:perf_hooks';
import type { TokenRequest } from './servers.ts';

export interface LoadOptions {
  durationSeconds: number;
  connections: number;
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
}

export async function runLoad(request: TokenRequest, options: LoadOptions): Promise<LoadResult> {
  const latencyMicros = createHistogram();
  const statusCodes: Record<string, number> = {};

  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: request.url,
        method: request.method,
        headers: request.headers,
        body: request.body,
        connections: options.connections,
        pipelining: 1,
        duration: options.durationSeconds,
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
  };
}
