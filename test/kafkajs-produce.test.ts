// The gateway's produce request encoder (controller/infra/kafkajs-produce.ts) against kafkajs 2.2.4's
// own: generated requests must encode to the same bytes, and what the lean encoder does not handle
// must go to kafkajs's encoder; its CRC-32C and its grouping of messages per partition against
// kafkajs's. No broker: the end-to-end produce and consume through the gateway are
// in kafka-gateway.test.ts and every order-path test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it, mock } from 'node:test';
import fc from 'fast-check';
import '../controller/infra/kafka.ts';
import kafkajs from 'kafkajs';
import { crc32C, createKeyPartitioner, encodeProduceRequest, groupMessagesPerPartition, murmur2, produceGroupingInstalled, type KjsProduceArgs } from '../controller/infra/kafkajs-produce.ts';

const require = createRequire(import.meta.url);
const kafkajsV3 = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (a: KjsProduceArgs) => { encode(): Promise<{ buffer: Buffer }> };
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: unknown) => number;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };
const kafkajsCrc32C = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
/** kafkajs's own grouping, loaded from its file: require's cache holds the gateway's under that name. */
const GROUPING_FILE = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
const kafkajsGrouping = ((): typeof groupMessagesPerPartition => {
  const mod = { exports: {} as unknown };
  new Function('module', 'exports', 'require', readFileSync(GROUPING_FILE, 'utf8'))(mod, mod.exports, require);
  return mod.exports as typeof groupMessagesPerPartition;
})();
const produceRequests = require('kafkajs/src/protocol/requests/produce/index.js') as {
  protocol(o: { version: number }): (a: KjsProduceArgs) => { request: { apiVersion: number; encode(): Promise<{ buffer: Buffer }> } };
};

const NOW = 1_764_806_400_123;
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.constantFrom('', 'bulk', 'ä€😀'));
const bytes = fc.oneof(text, fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), fc.constantFrom(null, undefined));
const timestamp = fc.oneof(
  fc.constantFrom(undefined, null, 0, '0'),
  fc.integer({ min: 0, max: 4_102_444_800_000 }),
  fc.integer({ min: NOW - 10_000, max: NOW + 10_000 }).map(String),
  fc.integer({ min: 1, max: 999 }), // fewer digits: the string order kafkajs sorts by differs from the numeric one
);
const message = fc.record({ key: bytes, value: bytes, timestamp }, { requiredKeys: [] });
const args: fc.Arbitrary<KjsProduceArgs> = fc.record({
  acks: fc.constantFrom(-1, 0, 1),
  timeout: fc.integer({ min: 0, max: 60_000 }),
  transactionalId: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
  producerId: fc.option(fc.integer({ min: -1, max: 2 ** 40 }).map((n) => Long.fromValue(n)), { nil: undefined }),
  producerEpoch: fc.option(fc.integer({ min: 0, max: 32_767 }), { nil: undefined }),
  topicData: fc.array(
    fc.record({
      topic: fc.string({ minLength: 1, maxLength: 30 }),
      partitions: fc.array(fc.record({ partition: fc.nat(100), firstSequence: fc.nat(2 ** 31 - 1), messages: fc.array(message, { minLength: 1, maxLength: 30 }) }), { minLength: 1, maxLength: 3 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
});

async function kafkajsBytes(a: KjsProduceArgs): Promise<Buffer> {
  return (await kafkajsV3(a).encode()).buffer;
}

describe('produce requests encoded by the gateway', () => {
  it('are byte for byte what kafkajs 2.2.4 encodes', async () => {
    mock.method(Date, 'now', () => NOW); // kafkajs stamps messages without a timestamp with Date.now()
    try {
      let lean = 0;
      await fc.assert(
        fc.asyncProperty(args, async (a) => {
          const ours = encodeProduceRequest(a, NOW);
          if (ours === null) return; // outside the lean encoder's domain: kafkajs encodes it
          lean++;
          assert.deepEqual(ours, await kafkajsBytes(a));
        }),
        { numRuns: 400 },
      );
      assert.ok(lean >= 300, `the generated requests mostly take the lean path (${lean} of 400)`);
    } finally {
      mock.restoreAll();
    }
  });

  it('leaves compressed batches, headers and timestamps it cannot read as kafkajs does to kafkajs', () => {
    const base = (m: object, extra: object = {}): KjsProduceArgs => ({ acks: -1, timeout: 30_000, topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [{ key: 'k', value: 'v', ...m }] }] }], ...extra });
    assert.notEqual(encodeProduceRequest(base({ timestamp: '1764806400123' })), null);
    assert.equal(encodeProduceRequest(base({}, { compression: 1 })), null);
    assert.equal(encodeProduceRequest(base({ headers: { trace: 'x' } })), null);
    assert.equal(encodeProduceRequest(base({ timestamp: '1.5e3' })), null);
    assert.equal(encodeProduceRequest(base({ timestamp: -5 })), null);
    assert.equal(encodeProduceRequest(base({ timestamp: 2 ** 60 })), null);
  });

  it('is what kafkajs uses for produce requests v3 to v7 once the gateway is loaded', async () => {
    const a: KjsProduceArgs = { acks: -1, timeout: 30_000, topicData: [{ topic: 'orders', partitions: [{ partition: 1, firstSequence: 5, messages: [{ key: 'sku', value: '{"v":1}', timestamp: String(NOW) }] }] }] };
    const expected = await kafkajsBytes(a);
    for (const version of [3, 4, 5, 6, 7]) {
      const built = produceRequests.protocol({ version })(a);
      assert.equal(built.request.apiVersion, version);
      const encoder = await built.request.encode();
      assert.deepEqual(encoder.buffer, expected);
      // The lean path hands back an encoder over its own buffer (kafkajs's grows by doubling).
      assert.equal((encoder as unknown as { buf: Buffer }).buf.length, expected.length, `v${version} took the lean path`);
    }
    const fallback = produceRequests.protocol({ version: 7 })({ ...a, compression: 1 });
    assert.ok((await fallback.request.encode()).buffer.length > 0, 'a compressed request is still encoded (by kafkajs)');
  });
});

describe('the gateway\'s partitioner', () => {
  const key = fc.oneof(
    fc.string({ maxLength: 64 }),
    fc.string({ unit: 'grapheme', maxLength: 24 }),
    fc.string({ unit: 'binary', maxLength: 24 }), // lone surrogates too
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    fc.integer(),
    fc.uuid(),
  );

  it('hashes every key as kafkajs 2.2.4\'s murmur2 does', () => {
    for (const k of ['', 'a', 'ab', 'abc', 'abcd', 'bulk', 'phone-x', '0190a000-0000-7000-8000-000000000001', 'ä€😀', 42, Buffer.from([0xff, 0x80, 0x00, 0x7f, 0x01])]) {
      assert.equal(murmur2(k), kafkajsMurmur2(k), `key ${JSON.stringify(k)}`);
    }
    fc.assert(fc.property(key, (k) => murmur2(k) === kafkajsMurmur2(k)), { numRuns: 2000 });
  });

  it('picks the partition kafkajs\'s DefaultPartitioner picks for keyed messages and messages with a partition', () => {
    const ours = createKeyPartitioner(kafkajs.Partitioners.DefaultPartitioner)();
    const theirs = kafkajs.Partitioners.DefaultPartitioner();
    const metadata = fc.integer({ min: 1, max: 64 }).map((n) => Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: i % 5 === 4 ? -1 : 1 })));
    const msg = fc.record({ key, partition: fc.option(fc.nat(63), { nil: undefined }) });
    fc.assert(
      fc.property(metadata, msg, (partitionMetadata, message) => {
        const args = { topic: 't', partitionMetadata, message: { ...message, value: 'v' } };
        return ours(args as never) === theirs(args as never);
      }),
      { numRuns: 2000 },
    );
  });

  it('sends keyless messages round robin over the partitions with a leader, as kafkajs does', () => {
    const ours = createKeyPartitioner(kafkajs.Partitioners.DefaultPartitioner)();
    const partitionMetadata = [0, 1, 2, 3].map((i) => ({ partitionId: i, leader: i === 2 ? -1 : 1 }));
    const picked = Array.from({ length: 9 }, () => ours({ topic: 't', partitionMetadata, message: { key: null, value: 'v' } } as never));
    assert.ok(picked.every((p) => p !== 2), `never the partition without a leader: ${picked}`);
    assert.equal(new Set(picked.slice(0, 3)).size, 3, `three in a row go to three partitions: ${picked}`);
  });
});

describe('the gateway\'s CRC-32C', () => {
  it('is kafkajs 2.2.4\'s checksum, for every length and alignment', () => {
    assert.equal(crc32C(Buffer.from('123456789')), 0xe3069283, 'the check value of CRC-32C');
    assert.equal(crc32C(Buffer.alloc(0)), kafkajsCrc32C(Buffer.alloc(0)));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(7), (bytes, skip) => {
        // Also on a view that starts inside a larger buffer, as the encoder passes the batch.
        const b = Buffer.from(bytes).subarray(Math.min(skip, bytes.length));
        return crc32C(b) === kafkajsCrc32C(b);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('the gateway\'s grouping of messages per partition', () => {
  it('gives what kafkajs 2.2.4\'s grouping gives: each partition\'s messages in the order given', () => {
    const partitionMetadata = fc.integer({ min: 0, max: 8 }).map((n) => Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 1 })));
    const msgs = fc.array(fc.record({ key: fc.option(fc.constantFrom('bulk', 'scarce', 'a', 'b'), { nil: null }), value: fc.string({ maxLength: 5 }), partition: fc.option(fc.nat(7), { nil: undefined }) }), { maxLength: 500, size: 'large' });
    fc.assert(
      fc.property(partitionMetadata, msgs, (metadata, messages) => {
        // The gateway's partitioner for keyed messages; keyless ones round robin from 0 (kafkajs's starts at random).
        const partitioner = () => {
          let next = 0;
          const keyed = createKeyPartitioner(kafkajs.Partitioners.DefaultPartitioner)();
          return (a: { topic: string; partitionMetadata: unknown[]; message: { key?: unknown; partition?: number | null } }) =>
            a.message.key === null && a.message.partition === undefined ? next++ % a.partitionMetadata.length : keyed(a as never);
        };
        const ours = groupMessagesPerPartition({ topic: 't', partitionMetadata: metadata, messages, partitioner: partitioner() });
        const theirs = kafkajsGrouping({ topic: 't', partitionMetadata: metadata, messages, partitioner: partitioner() });
        assert.deepEqual(ours, theirs);
        // The same message objects, not copies (kafkajs encodes them afterwards).
        for (const [p, list] of Object.entries(ours)) list.forEach((m, i) => assert.equal(m, theirs[Number(p)]?.[i]));
      }),
      { numRuns: 500 },
    );
  });

  it('is what kafkajs\'s producer loads when the gateway is loaded first, and not otherwise', () => {
    assert.equal(produceGroupingInstalled(), true);
    assert.equal(require('kafkajs/src/producer/groupMessagesPerPartition.js'), groupMessagesPerPartition);
    const probe = (first: string, second: string) =>
      execFileSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(first)}); await import(${JSON.stringify(second)}); const m = await import(${JSON.stringify(new URL('../controller/infra/kafkajs-produce.ts', import.meta.url).href)}); process.stdout.write(String(m.produceGroupingInstalled()));`], { encoding: 'utf8' });
    const gateway = new URL('../controller/infra/kafka.ts', import.meta.url).href;
    assert.equal(probe(gateway, 'kafkajs'), 'true');
    // kafkajs's producer loaded before the gateway keeps kafkajs's grouping, and says so.
    assert.equal(probe('kafkajs', gateway), 'false');
  });
});
