// The real Helm for the chart tests: the helm binary built from helm.sh/helm/v3 at the pinned
// release into .cache/bin by `infra/cluster.sh build` (override with $HELM). Each process gets
// its own Helm home (config, cache, data) so tests never read or write the user's.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HELM = process.env.HELM ?? join(repo, '.cache/bin/helm');

let helmHome: string | undefined;
function home(): string {
  if (!helmHome) {
    const dir = mkdtempSync(join(tmpdir(), 'helm-home-'));
    helmHome = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return helmHome;
}

/** Helm refused the chart, the values or the release; `message` is Helm's own text. */
export class HelmError extends Error {
  override name = 'HelmError';
}

/** A rendered Kubernetes object; fields are read by the tests, so they stay loosely typed. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } } & Record<string, any>;

export interface TemplateOptions {
  /** Release name (default `flashsale`). */
  name?: string;
  namespace?: string;
  /** Values files, applied in order. */
  valuesFiles?: string[];
  /** Values given inline; written to a temporary values file applied after `valuesFiles`. */
  values?: Record<string, unknown>;
  /** `--set key=value` pairs (scalars; give lists through `values`). */
  set?: Record<string, string>;
}

/** Runs `helm ARGS`; resolves with its output, rejects with HelmError (Helm's message) when it fails. */
export function helm(args: string[], opts: { kubeconfig?: string; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  if (!existsSync(HELM)) throw new Error(`${HELM} is not built: run \`bash infra/cluster.sh build\``);
  const h = home();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HELM_CONFIG_HOME: join(h, 'config'),
    HELM_CACHE_HOME: join(h, 'cache'),
    HELM_DATA_HOME: join(h, 'data'),
  };
  // No kubeconfig: Helm must not find one in the environment (client-only commands).
  if (opts.kubeconfig) env.KUBECONFIG = opts.kubeconfig;
  else delete env.KUBECONFIG;
  return new Promise((done, fail) => {
    execFile(HELM, args, { env, maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 120_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code === 'number') fail(new HelmError(`helm ${args[0]} failed (${err.code}): ${stderr.trim() || stdout.trim()}\n${stdout.trim()}`));
      else if (err) fail(err);
      else done({ stdout, stderr });
    });
  });
}

/** `helm lint CHART [--strict]`; resolves with Helm's messages ([INFO] …), rejects with HelmError when lint fails. */
export async function helmLint(chartDir: string, opts: { strict?: boolean } = {}): Promise<string[]> {
  const { stdout } = await helm(['lint', chartDir, ...(opts.strict ? ['--strict'] : [])]);
  return stdout.split('\n').filter((line) => /^\[[A-Z]+\]/.test(line));
}

/** `[NAME, CHART, flags…]` for install/upgrade/template; cleanup() removes the temporary values file. */
export function releaseArgs(chartDir: string, opts: TemplateOptions): { args: string[]; cleanup: () => void } {
  const args = [opts.name ?? 'flashsale', chartDir];
  if (opts.namespace) args.push('--namespace', opts.namespace);
  for (const file of opts.valuesFiles ?? []) args.push('--values', file);
  let tmp: string | undefined;
  if (opts.values) {
    tmp = mkdtempSync(join(tmpdir(), 'helm-values-'));
    const file = join(tmp, 'values.yaml');
    writeFileSync(file, stringify(opts.values));
    args.push('--values', file);
  }
  for (const [key, value] of Object.entries(opts.set ?? {})) args.push('--set', `${key}=${value}`);
  return { args, cleanup: () => tmp && rmSync(tmp, { recursive: true, force: true }) };
}

/** Parses a multi-document YAML stream into objects, in order (empty documents dropped). */
export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`helm rendered invalid YAML: ${doc.errors[0]!.message}`);
      return doc.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
}

/** `helm template` with the given values (client-only); resolves with the rendered objects, in order. */
export async function helmTemplate(chartDir: string, opts: TemplateOptions = {}): Promise<Manifest[]> {
  const { args, cleanup } = releaseArgs(chartDir, opts);
  try {
    return parseManifests((await helm(['template', ...args])).stdout);
  } finally {
    cleanup();
  }
}

/**
 * `helm install --dry-run=client`: nothing is created, but Helm still asks the cluster at
 * `kubeconfig` for its version; resolves with what `helm install` prints, NOTES included.
 */
export async function helmInstallDryRun(chartDir: string, opts: TemplateOptions & { kubeconfig: string }): Promise<string> {
  const { args, cleanup } = releaseArgs(chartDir, opts);
  try {
    return (await helm(['install', ...args, '--dry-run=client'], { kubeconfig: opts.kubeconfig })).stdout;
  } finally {
    cleanup();
  }
}
