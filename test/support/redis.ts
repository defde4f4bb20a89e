import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './server.ts';

/**
 * A Redis server of the test's own (Debian's redis-server on a free port, keeping nothing on disk),
 * so that it can be killed, frozen and restarted without touching the machine's Redis.
 */
export interface PrivateRedis {
  url: string;
  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGSTOP: connections stay open and nothing answers, as with a hung server. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** A new server on the same port (empty: it kept nothing), ready when this resolves. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  let output = '';

  const start = async () => {
    output = '';
    const started = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    started.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child = started;
    const deadline = Date.now() + 10_000;
    while (!(await answersPing(port))) {
      if (started.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}:\n${output}`);
      await sleep(50);
    }
  };
  const kill = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGCONT');
    running.kill('SIGKILL');
    await exited;
  };

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    kill,
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    async restart() {
      await kill();
      await start();
    },
    stop: kill,
  };
}

/** Whether a Redis server answers PING on the port within a second. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString('latin1').startsWith('+PONG')));
  });
}

/**
 * A way to a Redis server that breaks at a chosen moment: a TCP proxy in front of `url` that drops
 * a connection as soon as a command `picks` has been carried out and answered (one queued in a
 * MULTI: once the EXEC that runs it has been) — what a dropped connection, a deadline that fires or
 * an instance killed between two commands leaves behind. The commands sent after it never reach
 * Redis; the client's next connection is dropped the same way.
 */
export interface DroppingProxy {
  url: string;
  /** The connections dropped so far. */
  readonly dropped: number;
  close(): Promise<void>;
}

export async function startDroppingProxy(url: string, picks: (command: string[]) => boolean): Promise<DroppingProxy> {
  const target = new URL(url);
  const sockets = new Set<Socket>();
  let dropped = 0;
  const server = createServer((client) => {
    const redis = connect(Number(target.port || 6379), target.hostname);
    for (const socket of [client, redis]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    let fromClient = Buffer.alloc(0);
    let fromRedis = Buffer.alloc(0);
    let sent = 0;
    let answered = 0;
    let inTransaction = false;
    let pickedInTransaction = false;
    let dropping = false;
    client.on('data', (chunk: Buffer) => {
      if (dropping) return;
      fromClient = Buffer.concat([fromClient, chunk]);
      for (;;) {
        const command = commandAt(fromClient);
        if (!command) break;
        redis.write(fromClient.subarray(0, command.end));
        fromClient = fromClient.subarray(command.end);
        sent += 1;
        const name = command.args[0]!.toUpperCase();
        if (name === 'MULTI') inTransaction = true;
        else if (picks(command.args)) {
          if (inTransaction) pickedInTransaction = true;
          else dropping = true;
        } else if (name === 'EXEC' || name === 'DISCARD') {
          dropping = name === 'EXEC' && pickedInTransaction;
          inTransaction = pickedInTransaction = false;
        }
        if (dropping) return;
      }
    });
    redis.on('data', (chunk: Buffer) => {
      fromRedis = Buffer.concat([fromRedis, chunk]);
      for (;;) {
        const end = endOfValue(fromRedis, 0);
        if (end === undefined) return;
        client.write(fromRedis.subarray(0, end));
        fromRedis = fromRedis.subarray(end);
        answered += 1;
        if (dropping && answered === sent) {
          dropped += 1;
          // The answer reaches the client before its connection drops.
          client.end(() => client.destroy());
          redis.destroy();
          return;
        }
      }
    });
    client.on('close', () => redis.destroy());
    redis.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    get dropped() {
      return dropped;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The command (a RESP array of bulk strings, as clients send) at the start of `data`, or undefined until it has all arrived. */
function commandAt(data: Buffer): { args: string[]; end: number } | undefined {
  const end = endOfValue(data, 0);
  if (end === undefined) return undefined;
  const args: string[] = [];
  let at = data.indexOf('\r\n') + 2;
  while (at < end) {
    const lineEnd = data.indexOf('\r\n', at);
    const length = Number(data.toString('latin1', at + 1, lineEnd));
    args.push(data.toString('utf8', lineEnd + 2, lineEnd + 2 + length));
    at = lineEnd + 2 + length + 2;
  }
  return { args, end };
}

/** Where the RESP2 or RESP3 value that starts at `at` in `data` ends, or undefined until it has all arrived. */
function endOfValue(data: Buffer, at: number): number | undefined {
  const lineEnd = data.indexOf('\r\n', at);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(data[at]!);
  const size = Number(data.toString('latin1', at + 1, lineEnd));
  let next = lineEnd + 2;
  switch (type) {
    case '$': // bulk string, bulk error, verbatim string
    case '!':
    case '=':
      if (size < 0) return next;
      return data.length >= next + size + 2 ? next + size + 2 : undefined;
    case '*': // array, set, push, map, attribute
    case '~':
    case '>':
    case '%':
    case '|': {
      const values = size < 0 ? 0 : type === '%' || type === '|' ? size * 2 : size;
      for (let i = 0; i < values; i++) {
        const end = endOfValue(data, next);
        if (end === undefined) return undefined;
        next = end;
      }
      // An attribute comes before the reply it describes.
      return type === '|' ? endOfValue(data, next) : next;
    }
    default: // simple string, error, integer, null, boolean, double, big number: one line
      return next;
  }
}
