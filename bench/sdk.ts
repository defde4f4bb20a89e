// JWT verification in the resource-server SDK (`gatehouse/resource`), measured in this process: a
// tight loop of authenticate() calls on one Bearer token, no HTTP. Gatehouse runs only so that the
// SDK can find its signing keys through discovery, once, before the loop.
import { createHistogram } from 'node:perf_hooks';
import { createAuthenticator } from '../src/resource/index.ts';
import { basic, failure, postForm, SCOPE } from './flows.ts';
import type { CreatedClient } from './flows.ts';
import { createInstance } from './gatehouse.ts';
import type { BenchOptions } from './options.ts';

export interface SdkResult {
  flow: 'sdk-verify';
  /** Verifications per second, in the bench process. */
  opsPerSecond: number;
  totalOps: number;
  durationSeconds: number;
  latencyMs: { mean: number; p50: number; p99: number; max: number };
}

export async function measureSdkVerify(options: BenchOptions, core: number | undefined, log: (message: string) => void): Promise<SdkResult> {
  log('setting up');
  const instance = await createInstance('sdk-verify', 'sqlite');
  try {
    const app = await instance.cli<CreatedClient>(['client', 'create', '--name', 'bench-app', '--grant', 'client_credentials', '--scope', SCOPE]);
    await instance.serve(core);
    const answer = await postForm(instance, `${instance.url}/token`, basic(app), { grant_type: 'client_credentials', scope: SCOPE });
    if (typeof answer.access_token !== 'string') throw failure(instance, `client_credentials answered no access_token: ${JSON.stringify(answer)}`);

    const authenticator = createAuthenticator({ issuer: instance.url, audience: instance.url });
    const request = { headers: { authorization: `Bearer ${answer.access_token}` } };
    const verifyOnce = async () => {
      const principal = await authenticator.authenticate(request);
      if (principal.kind !== 'client' || principal.clientId !== app.client_id || !principal.scopes.includes(SCOPE)) {
        throw new Error(`sdk-verify: authenticate() returned the wrong principal: ${JSON.stringify(principal)}`);
      }
    };
    // The first call fetches the discovery document and the JWKS; every later one verifies locally.
    await verifyOnce();

    const loop = async (seconds: number) => {
      const latencyNanos = createHistogram();
      const start = process.hrtime.bigint();
      const end = start + BigInt(Math.round(seconds * 1e9));
      let ops = 0;
      let now = start;
      while (now < end) {
        await verifyOnce();
        const after = process.hrtime.bigint();
        latencyNanos.record(Math.max(1, Number(after - now)));
        now = after;
        ops++;
      }
      return { ops, elapsedSeconds: Number(now - start) / 1e9, latencyNanos };
    };

    if (options.warmupSeconds > 0) {
      log(`warming up for ${options.warmupSeconds} s`);
      await loop(options.warmupSeconds);
    }
    log(`measuring for ${options.durationSeconds} s`);
    const { ops, elapsedSeconds, latencyNanos } = await loop(options.durationSeconds);
    const toMs = (nanos: number) => nanos / 1e6;
    return {
      flow: 'sdk-verify',
      opsPerSecond: ops / elapsedSeconds,
      totalOps: ops,
      durationSeconds: elapsedSeconds,
      latencyMs: { mean: toMs(latencyNanos.mean), p50: toMs(latencyNanos.percentile(50)), p99: toMs(latencyNanos.percentile(99)), max: toMs(latencyNanos.max) },
    };
  } finally {
    await instance.stop();
  }
}
