// A second, throw-away Kafka 3.9.1 broker (KRaft, single node) for broker faults: started from the
// jars infra/up.sh cached in .cache/kafka/libs, with its own ports and its own log directory under
// a temp dir, so it can be killed with SIGKILL and restarted on the same data without touching the
// shared broker on 9092.
//
// `advertisedPort` lets a fault proxy (proxy.ts) sit in front of it: the broker listens on its own
// port but tells clients to connect to the proxy, so every connection (bootstrap and data) goes
// through the proxy. Without it the broker advertises its own listener.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { track } from './cleanup.ts';
import { freePort } from './proxy.ts';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const libs = join(root, '.cache/kafka/libs');

export interface ThrowawayBroker {
  /** '127.0.0.1:PORT' clients bootstrap from (the advertised address). */
  address: string;
  /** The port the broker itself listens on (behind a proxy this differs from the advertised one). */
  port: number;
  /**
   * A second listener (DIRECT) that advertises itself: clients bootstrapping here never go through
   * the proxy. With it a test can partition some clients (through the proxy) and not others.
   */
  directAddress: string;
  dir: string;
  pid(): number | undefined;
  /** SIGKILL; resolves once the JVM is gone. */
  kill9(): Promise<void>;
  /** Starts again on the same log directory (after kill9 or stop) and waits until it answers. */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after a deadline) and removes the log directory. */
  stop(): Promise<void>;
}


function jvm(dir: string, mainClass: string, args: string[]): ChildProcess {
  return spawn('java', ['-Xms128m', '-Xmx512m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Djava.awt.headless=true', `-Dkafka.logs.dir=${join(dir, 'logs')}`, `-Dlog4j.configuration=file:${join(root, 'infra/kafka/log4j.properties')}`, '-cp', `${libs}/*`, mainClass, ...args], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
}

/** True when a metadata request to `address` lists broker 1 (kcat, as infra/up.sh checks). */
export function brokerAnswers(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('kcat', ['-b', address, '-L', '-m', '3'], { timeout: 8000 }, (err, stdout) => resolve(!err && /broker 1 at/.test(stdout)));
  });
}

export async function startBroker(opts: { advertisedPort?: number; timeoutMs?: number } = {}): Promise<ThrowawayBroker> {
  if (!existsSync(join(libs, 'kafka_2.13-3.9.1.jar'))) throw new Error(`no Kafka jars in ${libs}: run infra/up.sh first`);
  const dir = mkdtempSync(join(tmpdir(), 'fs-broker-'));
  mkdirSync(join(dir, 'logs'));
  const port = await freePort();
  const controller = await freePort();
  const direct = await freePort();
  const advertised = opts.advertisedPort ?? port;
  const props = join(dir, 'server.properties');
  writeFileSync(
    props,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controller}`,
      `listeners=PLAINTEXT://127.0.0.1:${port},DIRECT://127.0.0.1:${direct},CONTROLLER://127.0.0.1:${controller}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${advertised},DIRECT://127.0.0.1:${direct}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,DIRECT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      `log.dirs=${join(dir, 'data')}`,
      'auto.create.topics.enable=false',
      'group.initial.rebalance.delay.ms=0',
      'num.partitions=1',
      'default.replication.factor=1',
      'min.insync.replicas=1',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=3',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'delete.topic.enable=true',
      'num.network.threads=2',
      'num.io.threads=2',
      '',
    ].join('\n'),
  );
  // A base64url id may start with '-', which StorageTool's argument parser takes for an option
  // (format exits 1: one start in 64 failed that way in a fresh-clone run); draw again.
  let clusterId: string;
  do clusterId = randomBytes(16).toString('base64url').slice(0, 22);
  while (clusterId.startsWith('-'));
  const format = jvm(dir, 'kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', props]);
  const [code] = (await once(format, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`formatting the throw-away broker's storage failed (exit ${code}); see ${dir}`);

  let child: ChildProcess | undefined;
  const address = `127.0.0.1:${advertised}`;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  // Readiness is asked of the broker's own port: behind a proxy that refuses, it must still count as up.
  const launch = async () => {
    child = jvm(dir, 'kafka.Kafka', [props]);
    const c = child;
    track(c);
    const deadline = Date.now() + timeoutMs;
    while (!(await brokerAnswersOn(port))) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`throw-away broker exited (${c.exitCode ?? c.signalCode}); logs in ${dir}/logs`);
      if (Date.now() > deadline) throw new Error(`throw-away broker did not answer within ${timeoutMs} ms; logs in ${dir}/logs`);
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const kill = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill(signal);
    if (signal === 'SIGKILL') {
      await exited;
      return;
    }
    const t = setTimeout(() => c.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(t);
  };
  await launch();
  return {
    address,
    port,
    directAddress: `127.0.0.1:${direct}`,
    dir,
    pid: () => child?.pid,
    kill9: () => kill('SIGKILL'),
    async restart() {
      await kill('SIGKILL');
      await launch();
    },
    async stop() {
      await kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * kcat bootstraps from the advertised address, which behind a proxy is the proxy; readiness of the
 * broker itself is a plain metadata round trip on its own port (the reply names broker 1).
 */
function brokerAnswersOn(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('kcat', ['-b', `127.0.0.1:${port}`, '-L', '-m', '3', '-t', '__none__'], { timeout: 8000 }, (err, stdout, stderr) => resolve(/broker 1 at/.test(stdout) || /broker 1 at/.test(stderr)));
  });
}
