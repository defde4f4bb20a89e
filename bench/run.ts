// npm run bench: the client_credentials token endpoint of Gatehouse, measured against oidc-provider
// (the reference it must beat) and a bare Fastify route (the floor it cannot beat), one after the
// other on the same core, in the same run. See DESIGN.md §9. Then Gatehouse's other flows, each on
// a fresh instance on the same core: refresh on SQLite and PostgreSQL, the authorization endpoint,
// introspection of a JWT and of an API key, JWT verification in the SDK, and resident memory.
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { measureHttpFlow, startFlow } from './flows.ts';
import type { FlowResult, FlowUnderTest, HttpFlowName } from './flows.ts';
import { stopAllInstances } from './gatehouse.ts';
import { runLoad } from './load.ts';
import { measureMemory } from './memory.ts';
import type { MemoryResult } from './memory.ts';
import { readOptions } from './options.ts';
import type { BenchOptions, FlowName } from './options.ts';
import { PINNED_FLAG, canPinTo, relaunchPinned } from './pinning.ts';
import { childFailure, cpuMicros, killAllChildrenNow, stopAllChildren } from './processes.ts';
import { computeRatios, formatReport, medianFlowRound, medianOfRounds, writeJsonReport } from './report.ts';
import type { Environment, ServerResult } from './report.ts';
import { measureSdkVerify } from './sdk.ts';
import type { SdkResult } from './sdk.ts';
import { startServer, stopAllServers } from './servers.ts';
import type { RunningServer, ServerName } from './servers.ts';

const SERVER_CORE = 0;
const LOAD_CORE = 1;
/** Flows measured in the servers' rounds when Gatehouse is one of the servers (see main). */
const FLOWS_IN_ROUNDS: readonly HttpFlowName[] = ['refresh-postgres'];
const resultsFile = fileURLToPath(new URL('results/latest.json', import.meta.url));
/** Log lines name what is measured in a column this wide: every name of the run ('oidc-provider' at least). */
let logWidth = 13;

if (process.env[PINNED_FLAG] === undefined && canPinTo(LOAD_CORE)) {
  relaunchPinned(LOAD_CORE);
} else {
  await main();
}

async function main(): Promise<void> {
  stopChildrenOnInterrupt();
  try {
    const options = readOptions(process.env);
    const environment: Environment = {
      node: process.version,
      cpu: cpus()[0]?.model ?? 'unknown',
      serverCore: canPinTo(SERVER_CORE) ? SERVER_CORE : null,
      loadCore: process.env[PINNED_FLAG] === '1' ? LOAD_CORE : null,
    };
    if (environment.serverCore === null || environment.loadCore === null) {
      console.warn('taskset is missing or cannot pin to cores 0 and 1: servers and load share the CPUs, numbers will be noisier');
    }
    const core = (pinnedTo: number | null) => (pinnedTo === null ? 'unpinned' : `core ${pinnedTo}`);
    console.log(
      `Node ${environment.node} on ${environment.cpu}: servers on ${core(environment.serverCore)}, autocannon on ${core(environment.loadCore)}; ` +
        `${options.warmupSeconds} s warm-up, ${options.connections} connections; servers in ${options.rounds} ${options.rounds === 1 ? 'round' : 'rounds'} ` +
        `of ${options.roundSeconds} s, flows ${options.durationSeconds} s each\n`,
    );

    logWidth = Math.max(logWidth, ...[...options.servers, ...options.flows].map((name) => name.length));
    const serverCore = environment.serverCore ?? undefined;
    // A flow held against client_credentials by a target is measured in the servers' rounds, beside
    // Gatehouse, so that both rates of its ratio come from the same seconds of the machine.
    const inRounds = FLOWS_IN_ROUNDS.filter((name) => options.flows.includes(name) && options.servers.includes('gatehouse'));
    const { rounds, flowRounds } = options.servers.length > 0 ? await measureServers(options, serverCore, inRounds) : { rounds: [], flowRounds: new Map() };
    const results = medianOfRounds(rounds);
    const flows: (FlowResult | SdkResult)[] = [];
    let memory: MemoryResult | undefined;
    for (const name of options.flows) {
      const flowLog = (message: string) => log(name, message);
      const measuredInRounds = flowRounds.get(name);
      if (measuredInRounds) flows.push(medianFlowRound(measuredInRounds));
      else if (name === 'memory') memory = await measureMemory(options, serverCore, flowLog);
      else if (name === 'sdk-verify') flows.push(await measureSdkVerify(options, serverCore, flowLog));
      else flows.push(await measureHttpFlow(name, options, serverCore, flowLog));
    }

    const httpFlows = flows.filter((flow): flow is FlowResult => 'requestsPerSecond' in flow);
    const ratios = computeRatios(rounds, httpFlows, options.flows, flowRounds);
    console.log(`\n${formatReport(results, ratios, flows, memory)}\n`);
    await writeJsonReport(resultsFile, options, environment, results, ratios, flows, memory);
    console.log(`results written to ${resultsFile}`);
  } catch (error) {
    console.error(`\nbench failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  } finally {
    await stopEverything().catch((error: unknown) => {
      console.error(`\nclean-up failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 1;
    });
  }
}

/** Every server, instance, database and temporary directory the run started, gone. */
async function stopEverything(): Promise<void> {
  await Promise.all([stopAllServers(), stopAllInstances()]);
  await stopAllChildren();
}

/**
 * The servers compared, all started and warmed up first, then measured in short rounds, one after
 * the other in each round. A virtual machine's speed drifts over tens of seconds; rounds of a few
 * seconds put the servers of a round under the same conditions, so the ratio within a round is
 * steady even when the rates are not. An idle server on the shared core costs nothing measurable.
 * The flows named are set up on instances of their own and measured in each round after the servers.
 */
async function measureServers(
  options: BenchOptions,
  core: number | undefined,
  flowNames: readonly HttpFlowName[],
): Promise<{ rounds: ServerResult[][]; flowRounds: Map<FlowName, FlowResult[]> }> {
  const servers: RunningServer[] = [];
  const flows: FlowUnderTest[] = [];
  try {
    for (const name of options.servers) {
      log(name, 'starting');
      servers.push(await startServer(name, core));
    }
    for (const name of flowNames) {
      log(name, 'setting up');
      flows.push(await startFlow(name, core));
    }
    if (options.warmupSeconds > 0) {
      for (const server of servers) {
        log(server.name, `warming up for ${options.warmupSeconds} s`);
        await runLoad(server.tokenRequest, { durationSeconds: options.warmupSeconds, connections: options.connections });
      }
      for (const flow of flows) {
        log(flow.name, `warming up for ${options.warmupSeconds} s`);
        await flow.measure(options.warmupSeconds, options.connections, 'warm-up');
      }
    }
    console.log(`measuring ${options.rounds} ${options.rounds === 1 ? 'round' : 'rounds'} of ${options.roundSeconds} s per server${flows.length > 0 ? ' and flow' : ''}`);
    const rounds: ServerResult[][] = [];
    const flowRounds = new Map<FlowName, FlowResult[]>(flows.map((flow) => [flow.name, []]));
    for (let round = 1; round <= options.rounds; round++) {
      const results: ServerResult[] = [];
      for (const server of servers) {
        const cpuBefore = cpuMicros(server.child.process.pid);
        const load = await runLoad(server.tokenRequest, { durationSeconds: options.roundSeconds, connections: options.connections });
        const cpuAfter = cpuMicros(server.child.process.pid);
        expectEveryRequestSucceeded(server, load);
        const cpu = cpuBefore !== undefined && cpuAfter !== undefined ? { cpuMicrosPerRequest: (cpuAfter - cpuBefore) / load.totalRequests } : {};
        results.push({ server: server.name, ...load, ...cpu });
      }
      const flowResults: FlowResult[] = [];
      for (const flow of flows) {
        const result = await flow.measure(options.roundSeconds, options.connections, 'measurement');
        flowRounds.get(flow.name)!.push(result);
        flowResults.push(result);
      }
      rounds.push(results);
      const rates = [...results.map((result) => `${result.server} ${result.requestsPerSecond.toFixed(0)}/s`), ...flowResults.map((result) => `${result.flow} ${result.requestsPerSecond.toFixed(0)}/s`)];
      console.log(`round ${String(round).padStart(String(options.rounds).length)}: ${rates.join(', ')}`);
    }
    return { rounds, flowRounds };
  } finally {
    await Promise.all([...servers.map((server) => server.stop()), ...flows.map((flow) => flow.stop())]);
  }
}

/** A server that answers errors fast would look fast: any failed request voids the run. */
function expectEveryRequestSucceeded(server: RunningServer, load: Omit<ServerResult, 'server'>): void {
  if (load.totalRequests > 0 && load.non2xx === 0 && load.errors === 0) return;
  const codes = Object.entries(load.statusCodes).map(([code, count]) => `${code}: ${count}`).join(', ');
  throw childFailure(
    server.child,
    `${server.name}: ${load.totalRequests} requests, ${load.non2xx} non-2xx, ${load.errors} errors (${load.timeouts} timeouts); status codes ${codes || 'none'}`,
  );
}

function stopChildrenOnInterrupt(): void {
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    // Ctrl-C reaches this process twice when it was relaunched under taskset (from the terminal and
    // forwarded by the parent): one clean-up is enough.
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: stopping the servers`);
    void stopEverything().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', killAllChildrenNow);
}

function log(name: ServerName | FlowName, message: string): void {
  console.log(`${name.padEnd(logWidth)} ${message}`);
}
