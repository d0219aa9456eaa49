// The fault-injection proxy itself: cut, refuse, latency and a dropped reply, against a tiny echo
// server (exact bytes) and against the real Redis (the command ran, the client never heard).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis as IORedis } from 'ioredis';
import { freePort, startProxy, respHas, type Proxy } from './support/faults/proxy.ts';
import { eventually, uniqueName } from './support/infra.ts';

let echo: Server;
let echoPort = 0;
/** Lines the echo server received, in order (proof that a request reached the server). */
const received: string[] = [];

before(async () => {
  echo = createServer((s) => {
    s.on('data', (d: Buffer) => {
      received.push(d.toString());
      s.write(d);
    });
    s.on('error', () => undefined);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as { port: number }).port;
});

after(async () => {
  echo.close();
});

function client(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends `text` and resolves with the first reply chunk, or with 'closed' if the connection ends first. */
function ask(s: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    const onData = (d: Buffer) => {
      s.off('close', onClose);
      resolve(d.toString());
    };
    const onClose = () => {
      s.off('data', onData);
      resolve('closed');
    };
    s.once('data', onData);
    s.once('close', onClose);
    s.on('error', () => undefined);
    s.write(text);
  });
}

describe('proxy against an echo server', () => {
  let proxy: Proxy;
  before(async () => {
    proxy = await startProxy({ target: `127.0.0.1:${echoPort}` });
  });
  after(async () => {
    await proxy.close();
  });

  it('forwards both ways', async () => {
    const s = await client(proxy.port);
    assert.equal(await ask(s, 'hello'), 'hello');
    s.destroy();
    assert.equal(proxy.address, `127.0.0.1:${proxy.port}`);
  });

  it('cut() destroys open connections; new ones still work', async () => {
    const s = await client(proxy.port);
    assert.equal(await ask(s, 'a'), 'a');
    const closed = once(s, 'close');
    proxy.cut();
    await closed;
    const s2 = await client(proxy.port);
    assert.equal(await ask(s2, 'b'), 'b');
    s2.destroy();
  });

  it('refuse(true) closes new connections at once, refuse(false) lets them through', async () => {
    const before = proxy.stats().refused;
    proxy.refuse(true);
    const s = await client(proxy.port);
    assert.equal(await ask(s, 'x'), 'closed');
    assert.equal(proxy.stats().refused, before + 1);
    proxy.refuse(false);
    const s2 = await client(proxy.port);
    assert.equal(await ask(s2, 'y'), 'y');
    s2.destroy();
  });

  it('latency(ms) delays chunks and keeps their order', async () => {
    proxy.latency(150);
    try {
      const s = await client(proxy.port);
      const chunks: string[] = [];
      s.on('data', (d: Buffer) => chunks.push(d.toString()));
      const t0 = performance.now();
      s.write('1');
      await eventually(() => chunks.join('') === '1', { what: 'first echo' });
      // Up and down are each delayed: at least 2 × 150 ms. A lower bound only, so load cannot break it.
      assert.ok(performance.now() - t0 >= 290, 'reply came back only after the injected latency');
      s.write('2');
      s.write('3');
      await eventually(() => chunks.join('') === '123', { what: 'ordered echoes' });
      s.destroy();
    } finally {
      proxy.latency(0);
    }
  });

  it('stall(true) holds every byte (connections still accepted); stall(false) delivers them in order', async () => {
    proxy.stall(true);
    const s = await client(proxy.port);
    const chunks: string[] = [];
    s.on('data', (d: Buffer) => chunks.push(d.toString()));
    const tag = `held-${uniqueName()}`;
    s.write(tag);
    s.write('-2');
    // Prove it is held: a round trip through a second, direct connection to the echo server
    // completes while the stalled request has still not reached it.
    const direct = await client(echoPort);
    assert.equal(await ask(direct, 'probe'), 'probe');
    direct.destroy();
    assert.ok(!received.some((r) => r.includes(tag)), 'nothing reached the server while stalled');
    assert.equal(chunks.length, 0);
    proxy.stall(false);
    await eventually(() => chunks.join('') === `${tag}-2`, { what: 'held bytes delivered in order' });
    s.destroy();
  });

  it('dropNextReply forwards the request, drops the reply and cuts that connection', async () => {
    const tag = `drop-${uniqueName()}`;
    const s = await client(proxy.port);
    assert.equal(await ask(s, 'warm'), 'warm');
    const dropped = proxy.dropNextReply((b) => b.toString().includes(tag));
    assert.equal(await ask(s, tag), 'closed', 'the client never hears');
    await dropped;
    assert.ok(received.includes(tag), 'the server got the request');
    assert.ok(proxy.stats().droppedReplies >= 1);
    const s2 = await client(proxy.port);
    assert.equal(await ask(s2, 'after'), 'after', 'later requests are answered again');
    s2.destroy();
  });

  it('dropReplies(on) drops every matching reply until turned off', async () => {
    proxy.dropReplies(true, (b) => b.toString().startsWith('lost'));
    const s = await client(proxy.port);
    assert.equal(await ask(s, 'kept'), 'kept');
    assert.equal(await ask(s, 'lost-1'), 'closed');
    const s2 = await client(proxy.port);
    assert.equal(await ask(s2, 'lost-2'), 'closed');
    proxy.dropReplies(false);
    const s3 = await client(proxy.port);
    assert.equal(await ask(s3, 'lost-3'), 'lost-3');
    s3.destroy();
    assert.ok(received.includes('lost-1') && received.includes('lost-2'));
  });
});

describe('proxy against the real Redis', () => {
  let proxy: Proxy;
  const key = `faults:${uniqueName()}`;
  let direct: IORedis;
  before(async () => {
    proxy = await startProxy({ target: '127.0.0.1:6379' });
    direct = new IORedis({ host: '127.0.0.1', port: 6379, lazyConnect: true });
    await direct.connect();
  });
  after(async () => {
    await direct.del(key);
    direct.disconnect();
    await proxy.close();
  });

  it('an INCR whose reply is lost ran once; ioredis resends it after reconnecting, so it runs twice', async () => {
    // This is the behaviour the data plane must survive (issue 13, scenario 5): a non-idempotent
    // command whose reply was lost is executed again by the client library.
    const viaProxy = new IORedis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 5, retryStrategy: () => 50 });
    viaProxy.on('error', () => undefined);
    try {
      await viaProxy.set(key, '0');
      const dropped = proxy.dropNextReply(respHas('INCR'));
      const reply = viaProxy.incr(key);
      await dropped;
      const value = await reply;
      assert.equal(Number(await direct.get(key)), 2, 'executed on the server twice (once before the reply was lost, once resent)');
      assert.equal(value, 2);
    } finally {
      viaProxy.disconnect();
    }
  });

  it('refuse + cut makes Redis unreachable through the proxy; refuse(false) brings it back', async () => {
    const viaProxy = new IORedis({ host: '127.0.0.1', port: proxy.port, retryStrategy: () => 50, enableOfflineQueue: false });
    viaProxy.on('error', () => undefined);
    try {
      await eventually(() => viaProxy.status === 'ready', { what: 'connected through the proxy' });
      assert.equal(await viaProxy.ping(), 'PONG');
      proxy.refuse(true);
      const lost = once(viaProxy, 'close');
      proxy.cut();
      await lost;
      await assert.rejects(viaProxy.ping(), 'no connection while refused');
      const refusedBefore = proxy.stats().refused;
      await eventually(() => proxy.stats().refused > refusedBefore, { what: 'a reconnect attempt refused' });
      assert.notEqual(viaProxy.status, 'ready');
      proxy.refuse(false);
      await eventually(async () => (await viaProxy.ping().catch(() => '')) === 'PONG', { what: 'PONG after the proxy accepts again' });
    } finally {
      viaProxy.disconnect();
    }
  });
});

describe('freePort', () => {
  it('never hands out a port twice in one process (the kernel reuses released ones: 257 repeats in 2,000 bare draws here)', async () => {
    const ports = [];
    for (let i = 0; i < 300; i++) ports.push(await freePort());
    assert.equal(new Set(ports).size, ports.length);
  });
});
