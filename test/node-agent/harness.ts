// Test helpers around the node agent: start one as a real process (test/node-agent/main.ts), wait
// for a pod to reach a state (polling the real apiserver with a deadline), find a container's pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { KubeClient } from '../../controller/operator/kube.ts';
import { eventually } from '../support/infra.ts';
import { REPO_ROOT } from './agent.ts';

export interface AgentProcess {
  proc: ChildProcess;
  nodeName: string;
  stateDir: string;
  logs(): string;
  /** SIGTERM (or `signal`) and wait for the exit (SIGKILL after 40 s). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startAgent(o: { kubeconfigPath: string; nodeName: string; stateDir?: string; bind?: boolean }): Promise<AgentProcess> {
  const stateDir = o.stateDir ?? mkdtempSync(join(tmpdir(), 'node-agent-'));
  const args = [join(REPO_ROOT, 'test/node-agent/main.ts'), '--kubeconfig', o.kubeconfigPath, '--node-name', o.nodeName, '--state-dir', stateDir, ...(o.bind === false ? ['--no-bind'] : [])];
  const proc = spawn(process.execPath, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info' } });
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  await eventually(
    () => {
      if (proc.exitCode !== null) throw new Error(`node agent exited ${proc.exitCode}: ${out}`);
      return out.includes('"msg":"node agent ready"');
    },
    { timeoutMs: 30_000, what: `node agent ${o.nodeName} ready` },
  ).catch((err: unknown) => {
    proc.kill('SIGKILL');
    throw err;
  });
  return {
    proc,
    nodeName: o.nodeName,
    stateDir,
    logs: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 40_000))]);
      if (code === 'timeout') {
        proc.kill('SIGKILL');
        await exited;
      }
      return proc.exitCode;
    },
  };
}

export function removeStateDir(a: AgentProcess): void {
  rmSync(a.stateDir, { recursive: true, force: true });
}

export async function getPod(client: KubeClient, ns: string, name: string): Promise<V1Pod | undefined> {
  try {
    return await client.request<V1Pod>('GET', `/api/v1/namespaces/${ns}/pods/${name}`);
  } catch (err) {
    if ((err as { status?: number }).status === 404) return undefined;
    throw err;
  }
}

/** Polls the pod until `check` holds; the error names the last status seen. */
export async function waitPod(client: KubeClient, ns: string, name: string, check: (p: V1Pod) => boolean, what: string, timeoutMs = 60_000): Promise<V1Pod> {
  let last: V1Pod | undefined;
  try {
    return await eventually(
      async () => {
        last = await getPod(client, ns, name);
        return last && check(last) ? last : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `${ns}/${name}: ${what}` },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last?.status)}`, { cause: err });
  }
}

export const container = (p: V1Pod, name?: string) => (name ? p.status?.containerStatuses?.find((c) => c.name === name) : p.status?.containerStatuses?.[0]);
export const condition = (p: V1Pod, type: string) => p.status?.conditions?.find((c) => c.type === type)?.status;

/** The pid in a running container's containerID (`process://<pid>`). */
export function pidOf(p: V1Pod, name?: string): number {
  const c = container(p, name);
  const m = /^process:\/\/(\d+)$/.exec(c?.containerID ?? '');
  if (!c?.state?.running || !m) throw new Error(`container ${name ?? ''} of ${p.metadata?.name} is not running: ${JSON.stringify(c)}`);
  return Number(m[1]);
}

/** Events about one pod, as `reason: message`. */
export async function podEvents(client: KubeClient, ns: string, name: string): Promise<string[]> {
  const list = await client.request<{ items: { involvedObject: { name: string }; reason: string; message: string }[] }>('GET', `/api/v1/namespaces/${ns}/events`);
  return list.items.filter((e) => e.involvedObject.name === name).map((e) => `${e.reason}: ${e.message}`);
}

/**
 * The ServiceAccount directory as the process `pid` sees it: through /proc/<pid>/root, which walks
 * its mount namespace (the host's /var/run is a symlink to /run, resolved on the host first).
 */
export function serviceAccountDir(pid: number): string {
  return `/proc/${pid}/root${realpathSync('/var/run/secrets/kubernetes.io')}/serviceaccount`;
}

/** The claims of the token the process `pid` sees at the in-cluster path. */
export function tokenClaims(pid: number): { sub: string; 'kubernetes.io'?: { pod?: { name: string; uid: string } } } {
  const payload = readFileSync(`${serviceAccountDir(pid)}/token`, 'utf8').split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}
