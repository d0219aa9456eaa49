// The node agent's pure rules (test/node-agent/podspec.ts, ips.ts): no cluster, no processes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { DEFAULT_POD_CIDR, PodIPs, inCidr } from './node-agent/ips.ts';
import { automountToken, backoffMs, containerEnv, expand, flashsaleArgs, httpProbe, isProjectImage, podStatus, rfc3339, runAs, sameJson, type ContainerView } from './node-agent/podspec.ts';

const pod = (spec: Partial<V1Pod['spec']> = {}): V1Pod => ({
  metadata: { name: 'p', namespace: 'ns', uid: 'u-1', labels: { app: 'x' } },
  spec: { containers: [], nodeName: 'node-a', serviceAccountName: 'sa', ...spec },
});

describe('node agent: which image and program', () => {
  it('recognises the project image with any registry, port, tag or digest', () => {
    for (const i of ['flashsale-operator', 'flashsale-operator:test', 'registry.example.com/x/flashsale-operator:0.1.0', 'localhost:5000/flashsale-operator', 'r.io/flashsale-operator@sha256:abc', 'r.io:443/a/b/flashsale-operator:1@sha256:ab']) {
      assert.equal(isProjectImage(i), true, i);
    }
    for (const i of ['nginx', 'nginx:1.27', 'flashsale-operator-x:1', 'flashsale-operator.io/nginx:1', 'x/myflashsale-operator', undefined, '']) {
      assert.equal(isProjectImage(i), false, String(i));
    }
  });

  it('args are flashsale arguments; a command must name flashsale', () => {
    assert.deepEqual(flashsaleArgs({ args: ['api'] }), { ok: true, value: ['api'] });
    assert.deepEqual(flashsaleArgs({ command: ['flashsale', 'operator'], args: ['--namespace', 'a'] }), { ok: true, value: ['operator', '--namespace', 'a'] });
    assert.deepEqual(flashsaleArgs({ command: ['/usr/local/bin/flashsale'], args: ['api'] }), { ok: true, value: ['api'] });
    const bad = flashsaleArgs({ command: ['sh', '-c', 'echo'] });
    assert.equal(bad.ok, false);
    assert.match(!bad.ok ? bad.message : '', /"sh".*flashsale/);
  });
});

describe('node agent: environment', () => {
  const sources = {
    secret: (n: string) => (n === 's' ? { url: 'redis://x', other: 'o' } : undefined),
    configMap: (n: string) => (n === 'c' ? { level: 'debug' } : undefined),
  };
  const c = (env: V1Container['env'], envFrom?: V1Container['envFrom']): V1Container => ({ name: 'main', image: 'flashsale-operator', env, envFrom });

  it('resolves value, secretKeyRef, configMapKeyRef, fieldRef and $(VAR) in order', () => {
    const r = containerEnv(
      pod(),
      c([
        { name: 'A', value: 'a' },
        { name: 'R', valueFrom: { secretKeyRef: { name: 's', key: 'url' } } },
        { name: 'L', valueFrom: { configMapKeyRef: { name: 'c', key: 'level' } } },
        { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'N', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
        { name: 'SA', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
        { name: 'LBL', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
        { name: 'X', value: '$(A)-$(IP)-$(NOPE)-$$(A)' },
      ]),
      sources,
      '127.0.0.7',
      '127.0.0.1',
    );
    assert.ok(r.ok);
    assert.deepEqual(Object.fromEntries(r.value), { A: 'a', R: 'redis://x', L: 'debug', IP: '127.0.0.7', N: 'p', NS: 'ns', NODE: 'node-a', SA: 'sa', LBL: 'x', X: 'a-127.0.0.7-$(NOPE)-$(A)' });
  });

  it('envFrom with prefix, env after it wins', () => {
    const r = containerEnv(pod(), c([{ name: 'P_url', value: 'mine' }], [{ secretRef: { name: 's' }, prefix: 'P_' }, { configMapRef: { name: 'missing', optional: true } }]), sources, '', '');
    assert.ok(r.ok);
    assert.deepEqual(Object.fromEntries(r.value), { P_url: 'mine', P_other: 'o' });
  });

  it('a missing Secret, ConfigMap or key is CreateContainerConfigError with kubelet wording; optional ones are skipped', () => {
    const cases: [V1Container['env'], string][] = [
      [[{ name: 'R', valueFrom: { secretKeyRef: { name: 'gone', key: 'url' } } }], 'secret "gone" not found'],
      [[{ name: 'R', valueFrom: { secretKeyRef: { name: 's', key: 'nokey' } } }], "couldn't find key nokey in Secret ns/s"],
      [[{ name: 'R', valueFrom: { configMapKeyRef: { name: 'gone', key: 'k' } } }], 'configmap "gone" not found'],
      [[{ name: 'R', valueFrom: { configMapKeyRef: { name: 'c', key: 'k' } } }], "couldn't find key k in ConfigMap ns/c"],
    ];
    for (const [env, message] of cases) assert.deepEqual(containerEnv(pod(), c(env), sources, '', ''), { ok: false, reason: 'CreateContainerConfigError', message });
    const opt = containerEnv(pod(), c([{ name: 'R', valueFrom: { secretKeyRef: { name: 'gone', key: 'url', optional: true } } }]), sources, '', '');
    assert.ok(opt.ok);
    assert.equal(opt.value.has('R'), false);
  });

  it('expand leaves unknown references', () => {
    assert.equal(expand('$(A)$(B)', new Map([['A', '1']])), '1$(B)');
  });
});

describe('node agent: user, token, probes, back-off', () => {
  it('runAsUser/runAsGroup: container over pod over the image user (10001)', () => {
    const ctr: V1Container = { name: 'm' };
    assert.deepEqual(runAs(pod(), ctr), { ok: true, value: { uid: 10001, gid: 10001 } });
    assert.deepEqual(runAs(pod({ securityContext: { runAsUser: 2000, runAsGroup: 3000 } }), ctr), { ok: true, value: { uid: 2000, gid: 3000 } });
    assert.deepEqual(runAs(pod({ securityContext: { runAsUser: 2000 } }), { name: 'm', securityContext: { runAsUser: 4000 } }), { ok: true, value: { uid: 4000, gid: 4000 } });
    assert.equal(runAs(pod({ securityContext: { runAsNonRoot: true, runAsUser: 0 } }), ctr).ok, false);
  });

  it('token mounted unless the pod or its ServiceAccount says no (pod wins)', () => {
    assert.equal(automountToken(pod(), undefined), true);
    assert.equal(automountToken(pod(), { automountServiceAccountToken: false }), false);
    assert.equal(automountToken(pod({ automountServiceAccountToken: true }), { automountServiceAccountToken: false }), true);
    assert.equal(automountToken(pod({ automountServiceAccountToken: false }), {}), false);
  });

  it('httpGet probes: named port, Kubernetes defaults, refusals', () => {
    const ctr: V1Container = { name: 'm', ports: [{ name: 'http', containerPort: 8080 }] };
    const p = httpProbe({ httpGet: { path: '/readyz', port: 'http' as never } }, ctr);
    assert.deepEqual(p, { ok: true, value: { path: '/readyz', port: 8080, host: undefined, scheme: 'http', initialDelayMs: 0, periodMs: 10_000, timeoutMs: 1000, failureThreshold: 3, successThreshold: 1 } });
    assert.equal(httpProbe({ httpGet: { port: 'nope' as never } }, ctr).ok, false);
    assert.equal(httpProbe({ exec: { command: ['true'] } }, ctr).ok, false);
    assert.deepEqual(httpProbe(undefined, ctr), { ok: true, value: undefined });
  });

  it('back-off 1 s doubling to 30 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 20].map(backoffMs), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });
});

describe('node agent: status', () => {
  const running = (ready: boolean): ContainerView => ({ name: 'm', image: 'flashsale-operator:test', restartCount: 0, ready, state: { running: { startedAt: '2026-01-01T00:00:00Z' as never } }, everStarted: true });
  const view = (containers: ContainerView[], restartPolicy = 'Always') => ({ restartPolicy, podIP: '127.0.0.9', hostIP: '127.0.0.1', startTime: '2026-01-01T00:00:00Z', containers });
  const cond = (s: { conditions?: { type: string; status: string; lastTransitionTime?: unknown }[] }, type: string) => s.conditions?.find((c) => c.type === type);

  it('Pending until every container started; Running; Ready follows the containers', () => {
    const waiting: ContainerView = { name: 'm', image: 'nginx', restartCount: 0, ready: false, state: { waiting: { reason: 'ErrImagePull' } }, everStarted: false };
    const t = Date.parse('2026-01-01T00:00:10Z');
    const s1 = podStatus(view([waiting]), undefined, t);
    assert.equal(s1.phase, 'Pending');
    assert.equal(cond(s1, 'Ready')?.status, 'False');
    assert.equal(s1.podIP, '127.0.0.9');
    const s2 = podStatus(view([running(false)]), s1, t + 5000);
    assert.equal(s2.phase, 'Running');
    assert.equal(cond(s2, 'Ready')?.lastTransitionTime, '2026-01-01T00:00:10Z', 'unchanged condition keeps its transition time');
    const s3 = podStatus(view([running(true)]), s2, t + 9000);
    assert.equal(cond(s3, 'Ready')?.status, 'True');
    assert.equal(cond(s3, 'ContainersReady')?.lastTransitionTime, '2026-01-01T00:00:19Z');
    assert.ok(sameJson(podStatus(view([running(true)]), s3, t + 60_000), s3), 'nothing changed → equal status (no churn)');
  });

  it('Succeeded / Failed when every container terminated and the policy does not restart', () => {
    const done = (exitCode: number): ContainerView => ({ name: 'm', image: 'i', restartCount: 0, ready: false, state: { terminated: { exitCode } }, everStarted: true });
    assert.equal(podStatus(view([done(0)], 'Never'), undefined, 0).phase, 'Succeeded');
    assert.equal(podStatus(view([done(2)], 'Never'), undefined, 0).phase, 'Failed');
    assert.equal(podStatus(view([{ ...done(2), state: { waiting: { reason: 'CrashLoopBackOff' } } }], 'Always'), undefined, 0).phase, 'Running');
  });

  it('times in seconds, as the apiserver stores them', () => {
    assert.equal(rfc3339(Date.parse('2026-01-01T00:00:01.999Z')), '2026-01-01T00:00:01Z');
  });
});

describe('node agent: pod addresses', () => {
  it('distinct, inside the pod CIDR, never .0/.1/broadcast, kept for a pod, reclaimed from a dead agent, released', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ips-'));
    try {
      const a = new PodIPs(dir, DEFAULT_POD_CIDR, process.pid);
      assert.equal(a.addressAt(0), '10.244.0.2');
      assert.equal(a.addressAt(254), '10.244.1.0');
      const ips = Array.from({ length: 300 }, (_, i) => a.allocate(`pod-${i}`));
      assert.equal(new Set(ips).size, 300);
      assert.ok(ips.every((ip) => inCidr(ip, DEFAULT_POD_CIDR) && ip !== '10.244.0.0' && ip !== '10.244.0.1'));
      assert.equal(a.allocate('pod-3', ips[3]), ips[3], 'a pod keeps its address');
      // Another live agent's address is never taken, even when preferred.
      const b = new PodIPs(dir, DEFAULT_POD_CIDR, process.ppid);
      const fromB = b.allocate('other', ips[0]);
      assert.notEqual(fromB, ips[0]);
      assert.ok(!ips.includes(fromB));
      // A dead agent's address is reclaimed (pid 2^22+1 does not exist).
      writeFileSync(join(dir, '10.244.9.9'), `${2 ** 22 + 1} dead-pod\n`);
      assert.equal(a.allocate('pod-new', '10.244.9.9'), '10.244.9.9');
      assert.notEqual(a.allocate('pod-out', '192.168.0.9'), '192.168.0.9', 'a preferred address outside the CIDR is not used');
      a.release(ips[5] as string, 'pod-5');
      assert.ok(!a.held().includes(ips[5] as string));
      b.release(ips[6] as string, 'pod-6'); // not b's: kept
      assert.ok(a.held().includes(ips[6] as string));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a small CIDR is used up and then refused; bad CIDRs are refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ips-'));
    try {
      const a = new PodIPs(dir, '10.9.0.0/29');
      const got = Array.from({ length: 5 }, (_, i) => a.allocate(`p${i}`));
      assert.deepEqual(got, ['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
      assert.throws(() => a.allocate('p5'), /no free pod address in 10.9.0.0\/29/);
      assert.throws(() => new PodIPs(dir, '10.9.0.0'), /invalid pod CIDR/);
      assert.throws(() => new PodIPs(dir, '300.1.1.1/16'), /invalid pod CIDR/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
