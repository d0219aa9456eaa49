// Runs the real kubectl (built from k8s.io/kubernetes at the control plane's release into
// .cache/bin by `infra/cluster.sh build`; override with $KUBECTL) against a kubeconfig, with a
// discovery cache directory of the test's own.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KUBECTL = process.env.KUBECTL ?? join(repo, '.cache/bin/kubectl');

export interface KubectlResult {
  stdout: string;
  stderr: string;
  status: number;
}

export interface Kubectl {
  run(args: string[], opts?: { stdin?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** Like run, but throws with stderr when kubectl fails. */
  ok(args: string[], opts?: { stdin?: string; timeoutMs?: number }): Promise<string>;
  kubeconfig: string;
  cleanup(): void;
}

/** A kubectl bound to `kubeconfigYaml`, with its own --cache-dir; call cleanup() when done. */
export function kubectlFor(kubeconfigYaml: string): Kubectl {
  const dir = mkdtempSync(join(tmpdir(), 'kubectl-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kubeconfigYaml, { mode: 0o600 });
  const cacheDir = join(dir, 'cache');
  const run = (args: string[], opts: { stdin?: string; timeoutMs?: number } = {}): Promise<KubectlResult> =>
    new Promise((done) => {
      const child = execFile(
        KUBECTL,
        [`--kubeconfig=${kubeconfig}`, `--cache-dir=${cacheDir}`, ...args],
        { timeout: opts.timeoutMs ?? 30_000, env: { ...process.env, HOME: dir, KUBECONFIG: kubeconfig } },
        (err, stdout, stderr) => {
          const status = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? Number((err as { code?: unknown }).code) : 1) : 0;
          done({ stdout: String(stdout), stderr: String(stderr), status });
        },
      );
      if (opts.stdin !== undefined) child.stdin?.end(opts.stdin);
      else child.stdin?.end();
    });
  return {
    kubeconfig,
    run,
    async ok(args, opts) {
      const r = await run(args, opts);
      if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
      return r.stdout;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
