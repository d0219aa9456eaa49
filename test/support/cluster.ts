// The real Kubernetes control plane for test files (infra/cluster.sh: etcd + kube-apiserver +
// kube-controller-manager built from Kubernetes' own code, and the node agent).
// `npm test` starts it once and exports KUBECONFIG; a test file run on its own starts it here
// (`bash infra/cluster.sh up`, reused by later files; `npm run cluster:down` stops it).
// Tests isolate themselves by namespace (createNamespace / deleteNamespace).
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, KubernetesObjectApi, Watch, type V1ObjectMeta } from '@kubernetes/client-node';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, '.cache/bin');

export interface TestCluster {
  /** Absolute path of the admin kubeconfig (client certificate in group system:masters). */
  kubeconfigPath: string;
  kubeconfigYaml: string;
  /** A client-node KubeConfig loaded from it. */
  kc: KubeConfig;
  /** The apiserver's URL, https://127.0.0.1:<port>. */
  server: string;
  /** The built kubectl and helm (same release as the control plane / pinned helm). */
  kubectl: string;
  helm: string;
}

let cluster: Promise<TestCluster> | undefined;

/** The control plane of this test run: $KUBECONFIG when set (by `npm test`), else `infra/cluster.sh up`. */
export function testCluster(): Promise<TestCluster> {
  cluster ??= (async () => {
    const path = process.env.KUBECONFIG || (await clusterUp());
    const kubeconfigYaml = readFileSync(path, 'utf8');
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigYaml);
    const server = kc.getCurrentCluster()?.server ?? '';
    // Tests create and delete namespaces, CRDs and cluster roles: never let a KUBECONFIG left in
    // the environment point them at a real cluster.
    if (!/^https:\/\/127\.0\.0\.1:\d+$/.test(server)) {
      throw new Error(`KUBECONFIG=${path} points at ${server}, not a local test cluster: unset it or run \`npm run cluster:up\``);
    }
    return { kubeconfigPath: path, kubeconfigYaml, kc, server, kubectl: join(bin, 'kubectl'), helm: join(bin, 'helm') };
  })();
  return cluster;
}

function clusterUp(): Promise<string> {
  return new Promise((done, fail) => {
    // The first run on a machine also builds the binaries (see the README for how long).
    execFile('bash', [join(repo, 'infra/cluster.sh'), 'up'], { cwd: repo, timeout: 60 * 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const last = stdout.trim().split('\n').at(-1) ?? '';
      if (err || !last.startsWith('KUBECONFIG=')) fail(new Error(`infra/cluster.sh up failed: ${err?.message ?? ''}\n${stderr}`));
      else done(last.slice('KUBECONFIG='.length));
    });
  });
}

/** A control plane of a test's own (no node agent): for tests that stop or break it. */
export interface PrivateControlPlane {
  dir: string;
  kubeconfigPath: string;
  kubeconfigYaml: string;
  kc: KubeConfig;
  server: string;
  /** The launcher's process id (it supervises etcd, kube-apiserver and kube-controller-manager). */
  pid: number;
  /** SIGTERM, wait for the launcher to stop everything (SIGKILL after 30 s), remove the directory. */
  stop(): Promise<void>;
}

/**
 * Starts etcd + kube-apiserver + kube-controller-manager in a fresh temporary directory (the
 * binaries must be built: `bash infra/cluster.sh build`); resolves once all answer their health
 * checks, as the launcher's "ready:" line says.
 */
export async function startControlPlane(opts: { timeoutMs?: number } = {}): Promise<PrivateControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'kube-testcluster-'));
  const child = spawn(join(bin, 'kube-testcluster'), ['-dir', dir, '-bin', bin], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const hard = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(hard);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const timeoutMs = opts.timeoutMs ?? 120_000;
  try {
    await new Promise<void>((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`kube-testcluster not ready within ${timeoutMs} ms (logs: ${dir}/logs)`)), timeoutMs);
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (/^ready: /m.test(out)) {
          clearTimeout(timer);
          done();
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        fail(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`kube-testcluster exited (${code ?? signal}): ${stderr}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  const kubeconfigPath = join(dir, 'admin.kubeconfig');
  const kubeconfigYaml = readFileSync(kubeconfigPath, 'utf8');
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigYaml);
  return { dir, kubeconfigPath, kubeconfigYaml, kc, server: kc.getCurrentCluster()!.server, pid: child.pid!, stop };
}

/** Creates namespace `name` and waits for its default ServiceAccount (pods need it). */
export async function createNamespace(kc: KubeConfig, name: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name } } });
  // The serviceaccount controller creates `default` asynchronously: list, then watch from there.
  const list = await core.listNamespacedServiceAccount({ namespace: name });
  if (list.items.some((sa) => sa.metadata?.name === 'default')) return;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  await new Promise<void>((done, fail) => {
    let abort: AbortController | undefined;
    let finished = false;
    const finish = (err?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      abort?.abort();
      if (err) fail(err);
      else done();
    };
    const timer = setTimeout(() => finish(new Error(`namespace ${name}: no default ServiceAccount after ${timeoutMs} ms`)), timeoutMs);
    new Watch(kc)
      .watch(
        `/api/v1/namespaces/${name}/serviceaccounts`,
        { resourceVersion: list.metadata?.resourceVersion, fieldSelector: 'metadata.name=default' },
        (phase) => {
          if (phase === 'ADDED') finish();
        },
        (err) => {
          if (err) finish(err instanceof Error ? err : new Error(String(err)));
        },
      )
      .then(
        (a) => {
          abort = a;
          if (finished) a.abort();
        },
        (err: Error) => finish(err),
      );
  });
}

/** Deletes namespace `name` (the namespace controller removes its content); does not wait. */
export async function deleteNamespace(kc: KubeConfig, name: string): Promise<void> {
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespace({ name });
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
  }
}

/** A kind of object to wait on: `plural` is the resource (`replicasets`), `namespace` optional. */
export interface WatchTarget {
  apiVersion: string;
  kind: string;
  plural: string;
  namespace?: string;
  labelSelector?: string;
}

/** An object as the API returns it; fields are read by the tests, so they stay loosely typed. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KubeObject = { metadata?: V1ObjectMeta } & Record<string, any>;

/**
 * Waits, on the API's watch events, until `check` returns something for the current objects of
 * `target` (list, then watch from that list's resourceVersion; a watch the server closes is
 * resumed from a fresh list). Rejects after `timeoutMs` with `what` and the last objects seen.
 */
export async function watchUntil<T>(
  kc: KubeConfig,
  target: WatchTarget,
  check: (objects: KubeObject[]) => T | undefined | null | false,
  opts: { timeoutMs?: number; what?: string } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  const client = KubernetesObjectApi.makeApiClient(kc);
  const path = `${target.apiVersion === 'v1' ? '/api/v1' : `/apis/${target.apiVersion}`}${target.namespace ? `/namespaces/${target.namespace}` : ''}/${target.plural}`;
  let objects = new Map<string, KubeObject>();
  for (;;) {
    const list = await client.list(target.apiVersion, target.kind, target.namespace, undefined, undefined, undefined, undefined, target.labelSelector);
    objects = new Map(list.items.map((o: KubeObject) => [o.metadata!.uid!, o]));
    const first = check([...objects.values()]);
    if (first) return first;
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const result = await new Promise<{ value: T } | 'resume' | 'timeout'>((done, fail) => {
      let abort: AbortController | undefined;
      let finished = false;
      const finish = (r: { value: T } | 'resume' | 'timeout' | Error) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        abort?.abort();
        if (r instanceof Error) fail(r);
        else done(r);
      };
      const timer = setTimeout(() => finish('timeout'), remaining);
      new Watch(kc)
        .watch(
          path,
          { resourceVersion: list.metadata?.resourceVersion, labelSelector: target.labelSelector, allowWatchBookmarks: false },
          (phase, obj: KubeObject) => {
            if (phase === 'DELETED') objects.delete(obj.metadata!.uid!);
            else if (phase === 'ADDED' || phase === 'MODIFIED') objects.set(obj.metadata!.uid!, obj);
            else return;
            try {
              const value = check([...objects.values()]);
              if (value) finish({ value });
            } catch (err) {
              finish(err as Error);
            }
          },
          // A watch the server ends (its timeout, or 410 Gone) is resumed from a fresh list.
          () => finish('resume'),
        )
        .then(
          (a) => {
            abort = a;
            if (finished) a.abort();
          },
          (err: Error) => finish(err),
        );
    });
    if (result === 'timeout') break;
    if (result !== 'resume') return result.value;
  }
  const seen = [...objects.values()].map((o) => o.metadata?.name).join(', ') || 'none';
  throw new Error(`${opts.what ?? `${target.kind} condition`}: not reached within ${timeoutMs} ms (objects seen: ${seen})`);
}
