// The real Helm for the chart tests: helm-java (Helm's Go code as a native library) driven by
// infra/helm/Launcher.java, one JVM per call (about a second each). The jars are resolved into
// .cache/helm/libs by infra/tools.sh.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const libs = join(root, '.cache/helm/libs');
const launcher = join(root, 'infra/helm/Launcher.java');

/** Helm refused the chart or the values; `message` is Helm's own text. */
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

function java(args: string[]): Promise<{ stdout: string; stderr: string }> {
  if (!existsSync(libs) || !readdirSync(libs).some((f) => f.startsWith('linux-amd64-'))) {
    throw new Error(`helm-java is not resolved in ${libs}: run \`bash infra/tools.sh\``);
  }
  return new Promise((resolve, reject) => {
    execFile('java', ['-cp', `${libs}/*`, launcher, ...args], { maxBuffer: 64 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') reject(new Error('java is not installed: run `bash infra/tools.sh`'));
      else if (err && typeof err.code === 'number') reject(new HelmError(`${stderr.trim() || stdout.trim()}`));
      else if (err) reject(err);
      else resolve({ stdout, stderr });
    });
  });
}

/** `helm lint CHART [--strict]`; resolves with Helm's messages, rejects with HelmError when lint fails. */
export async function helmLint(chartDir: string, opts: { strict?: boolean } = {}): Promise<string[]> {
  const { stdout } = await java(['lint', chartDir, ...(opts.strict ? ['--strict'] : [])]);
  return stdout.split('\n').filter(Boolean);
}

function renderArgs(command: string, chartDir: string, opts: TemplateOptions): { args: string[]; cleanup: () => void } {
  const args = [command, chartDir, '--name', opts.name ?? 'flashsale'];
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

/** `helm template` with the given values; resolves with the rendered objects, in order. */
export async function helmTemplate(chartDir: string, opts: TemplateOptions = {}): Promise<Manifest[]> {
  const { args, cleanup } = renderArgs('template', chartDir, opts);
  try {
    const { stdout } = await java(args);
    return parseAllDocuments(stdout)
      .map((doc) => {
        if (doc.errors.length > 0) throw new Error(`helm rendered invalid YAML: ${doc.errors[0]!.message}`);
        return doc.toJS() as Manifest | null;
      })
      .filter((m): m is Manifest => m !== null);
  } finally {
    cleanup();
  }
}

/** A client-only `helm install --dry-run` (no cluster); resolves with what `helm install` prints, NOTES included. */
export async function helmInstallDryRun(chartDir: string, opts: TemplateOptions = {}): Promise<string> {
  const { args, cleanup } = renderArgs('install-dry-run', chartDir, opts);
  try {
    return (await java(args)).stdout;
  } finally {
    cleanup();
  }
}
