// `npm run test-apiserver -- --port PORT --kubeconfig FILE` by hand: it serves on 127.0.0.1 and
// writes a kubeconfig that kubectl and client-node can use as is.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { kubectlFor } from './support/kubectl.ts';

describe('test apiserver: command line', () => {
  it('serves on 127.0.0.1, writes a kubeconfig with insecure-skip-tls-verify, offers compact/drop-watches over HTTP, and stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'apiserver-cli-'));
    const kubeconfig = join(dir, 'kubeconfig');
    const child = spawn(process.execPath, ['test/apiserver/main.ts', '--port', '0', '--kubeconfig', kubeconfig, '--namespace', 'shop'], {
      cwd: new URL('..', import.meta.url).pathname,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const banner = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('\n')) resolve(out);
        });
        child.once('exit', (code) => reject(new Error(`exited early (${code})`)));
        setTimeout(() => reject(new Error(`no banner: ${out}`)), 10_000).unref();
      });
      assert.match(banner, /listening on http:\/\/127\.0\.0\.1:\d+/);
      const doc = parseYaml(readFileSync(kubeconfig, 'utf8'));
      assert.equal(doc.clusters[0].cluster['insecure-skip-tls-verify'], true);
      assert.match(doc.clusters[0].cluster.server, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(doc.contexts[0].context.namespace, 'shop');

      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfig);
      const core = kc.makeApiClient(CoreV1Api);
      await core.createNamespacedConfigMap({ namespace: 'shop', body: { metadata: { name: 'hello' }, data: { a: '1' } } });
      // the by-hand controls: end open watches, force a 410 for older resourceVersions
      const server = doc.clusters[0].cluster.server as string;
      const list = (await (await fetch(`${server}/api/v1/namespaces/shop/configmaps`)).json()) as { metadata: { resourceVersion: string } };
      const watch = await fetch(`${server}/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion=${list.metadata.resourceVersion}`);
      const ended = watch.text();
      const dropped = (await (await fetch(`${server}/_test/drop-watches`, { method: 'POST' })).json()) as { dropped: number };
      assert.equal(dropped.dropped, 1);
      assert.equal(await ended, '', 'the watch ended with no events');
      assert.equal((await fetch(`${server}/_test/compact`, { method: 'POST' })).status, 200);
      const expired = await (await fetch(`${server}/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion=${list.metadata.resourceVersion}`)).text();
      assert.equal(JSON.parse(expired).object.code, 410);

      const kubectl = kubectlFor(readFileSync(kubeconfig, 'utf8'));
      try {
        assert.match(await kubectl.ok(['get', 'configmaps']), /hello/, 'kubectl uses the context namespace');
      } finally {
        kubectl.cleanup();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (child.exitCode === null) {
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        child.kill('SIGTERM');
        assert.equal(await exited, 0, 'stops cleanly on SIGTERM');
      }
    }
  });
});
