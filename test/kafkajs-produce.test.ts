// The gateway's produce request encoder (controller/infra/kafkajs-produce.ts) against kafkajs 2.2.4's
// own: generated requests must encode to the same bytes, and what the lean encoder does not handle
// must go to kafkajs's encoder. No broker: the end-to-end produce and consume through the gateway are
// in kafka-gateway.test.ts and every order-path test.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it, mock } from 'node:test';
import fc from 'fast-check';
import '../controller/infra/kafka.ts';
import kafkajs from 'kafkajs';
import { createKeyPartitioner, encodeProduceRequest, murmur2, type KjsProduceArgs } from '../controller/infra/kafkajs-produce.ts';

const require = createRequire(import.meta.url);
const kafkajsV3 = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (a: KjsProduceArgs) => { encode(): Promise<{ buffer: Buffer }> };
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: unknown) => number;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };
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
