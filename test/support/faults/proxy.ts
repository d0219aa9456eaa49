// A TCP proxy for fault injection (node:net, loopback only). Put it between a worker and Redis,
// MariaDB or a Kafka broker and it can cut every connection, refuse new ones, add latency, and drop
// a reply after the request was forwarded: the server ran the command, the client never hears and
// sees its connection reset — what a lost packet + reconnect looks like from the client.
//
// Kafka: a broker tells clients where to connect (advertised listener), so a proxy in front of the
// shared broker on 9092 is bypassed after the bootstrap. Kafka faults therefore use the throw-away
// broker of kafka-broker.ts, whose advertised listener can be this proxy's port (see docs/faults.md).
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ProxyStats {
  /** Connections accepted and forwarded since start. */
  accepted: number;
  /** Connections refused (closed at once) while `refuse(true)`. */
  refused: number;
  /** Connections currently open. */
  active: number;
  /** Replies dropped (connection cut after the request was forwarded and the server answered). */
  droppedReplies: number;
  /** Connections destroyed by `cut()`. */
  cut: number;
  bytesToServer: number;
  bytesToClient: number;
}

export interface Proxy {
  port: number;
  /** '127.0.0.1:PORT', ready for KAFKA_BROKERS or a URL. */
  address: string;
  /** Destroys every open connection (both sides). New connections are still accepted. */
  cut(): void;
  /** While on, new connections are closed at once (the server looks down). */
  refuse(on: boolean): void;
  /** Delay each chunk by `ms` in both directions (0 = off). Order is preserved. */
  latency(ms: number): void;
  /**
   * While on, connections are accepted but no byte moves either way (a black hole: a hung server or
   * a partition, where requests wait for their timeouts instead of failing at once); when turned
   * off, what was held is delivered in order, as TCP would after a partition heals.
   */
  stall(on: boolean): void;
  /**
   * The next client→server chunk that matches (default: any) is forwarded; the server's reply to
   * it is discarded and that client connection is cut as soon as the reply starts to arrive.
   * Resolves when a reply was dropped.
   */
  dropNextReply(match?: (request: Buffer) => boolean): Promise<void>;
  /** While on, every matching request's reply is dropped as in dropNextReply. */
  dropReplies(on: boolean, match?: (request: Buffer) => boolean): void;
  stats(): ProxyStats;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  server: Socket;
  /** Set once a request of this connection armed a drop: replies are discarded and the pair cut. */
  dropping: boolean;
}

export async function startProxy(opts: { target: string; listen?: number }): Promise<Proxy> {
  const m = /^(.+):(\d+)$/.exec(opts.target);
  if (!m) throw new Error(`proxy target must be host:port, got ${opts.target}`);
  const host = m[1] as string;
  const targetPort = Number(m[2]);
  const pairs = new Set<Pair>();
  const stats: ProxyStats = { accepted: 0, refused: 0, active: 0, droppedReplies: 0, cut: 0, bytesToServer: 0, bytesToClient: 0 };
  let refusing = false;
  let delayMs = 0;
  let gate: Promise<void> = Promise.resolve();
  let openGate: (() => void) | undefined;
  let dropAll: { match: (b: Buffer) => boolean } | undefined;
  const dropOnce: { match: (b: Buffer) => boolean; done: () => void }[] = [];

  const destroy = (p: Pair) => {
    p.client.destroy();
    p.server.destroy();
  };

  // Writes in order, each chunk after `delayMs` (a chain per direction keeps the byte order).
  const pipe = (from: Socket, to: Socket, onChunk: (b: Buffer) => boolean) => {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (!onChunk(chunk)) return;
      const d = delayMs;
      // `gate` is read when the chunk's turn comes, so a stall holds everything behind it.
      chain = chain.then(() => gate);
      if (d <= 0) {
        chain = chain.then(() => {
          if (!to.destroyed) to.write(chunk);
        });
        return;
      }
      chain = chain.then(() => new Promise<void>((resolve) => setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
        resolve();
      }, d)));
    });
  };

  const server: Server = createServer((client) => {
    if (refusing) {
      stats.refused++;
      client.destroy();
      return;
    }
    stats.accepted++;
    const upstream = connect({ host, port: targetPort });
    const pair: Pair = { client, server: upstream, dropping: false };
    pairs.add(pair);
    stats.active = pairs.size;
    let pendingDrop: (() => void) | undefined;
    const gone = () => {
      if (pairs.delete(pair)) stats.active = pairs.size;
      pair.client.destroy();
      // After a dropped reply the server side ends with a FIN, so every forwarded byte still arrives.
      if (pair.dropping) pair.server.end();
      else pair.server.destroy();
    };
    client.on('error', gone);
    upstream.on('error', gone);
    client.on('close', gone);
    upstream.on('close', gone);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    pipe(client, upstream, (chunk) => {
      stats.bytesToServer += chunk.length;
      if (!pair.dropping) {
        const i = dropOnce.findIndex((d) => d.match(chunk));
        if (i >= 0) {
          const [d] = dropOnce.splice(i, 1);
          pair.dropping = true;
          pendingDrop = d?.done;
        } else if (dropAll?.match(chunk)) {
          pair.dropping = true;
        }
      }
      return true;
    });
    pipe(upstream, client, (chunk) => {
      if (pair.dropping) {
        // The server answered the request: it ran. The client never gets the reply and its
        // connection is reset.
        if (!client.destroyed) {
          stats.droppedReplies++;
          gone();
          pendingDrop?.();
          pendingDrop = undefined;
        }
        return false;
      }
      stats.bytesToClient += chunk.length;
      return true;
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;

  return {
    port,
    address: `127.0.0.1:${port}`,
    cut() {
      for (const p of pairs) {
        stats.cut++;
        destroy(p);
      }
      pairs.clear();
      stats.active = 0;
    },
    refuse(on) {
      refusing = on;
    },
    latency(ms) {
      delayMs = Math.max(0, ms);
    },
    stall(on) {
      if (on && !openGate) gate = new Promise<void>((r) => (openGate = r));
      if (!on && openGate) {
        openGate();
        openGate = undefined;
        gate = Promise.resolve();
      }
    },
    dropNextReply(match = () => true) {
      return new Promise<void>((resolve) => dropOnce.push({ match, done: resolve }));
    },
    dropReplies(on, match = () => true) {
      dropAll = on ? { match } : undefined;
    },
    stats: () => ({ ...stats }),
    close() {
      refusing = true;
      openGate?.();
      for (const p of pairs) destroy(p);
      pairs.clear();
      stats.active = 0;
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** True when a RESP request chunk holds `word` (e.g. 'EVALSHA', or a script's SHA). */
export function respHas(word: string): (request: Buffer) => boolean {
  const w = word.toLowerCase();
  return (b) => b.toString('latin1').toLowerCase().includes(w);
}

/**
 * Ports freePort handed out in this process. The kernel may hand a port it just released out again
 * at once: a fresh-clone run saw a throw-away broker's two listeners get the same port (StorageTool
 * refused the configuration), and a port kept for a proxy that is not listening yet can meet one
 * drawn later the same way.
 */
const handedOut = new Set<number>();

/** A free loopback port (bound then released), never one this process was handed before: for listeners that must be known before they start. */
export async function freePort(): Promise<number> {
  for (let attempt = 1; attempt <= 100; attempt++) {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as { port: number }).port;
    await new Promise<void>((r) => s.close(() => r()));
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: 100 ports in a row were handed out before in this process');
}
