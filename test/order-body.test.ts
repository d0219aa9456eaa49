// The purchase body's reader (controller/dataplane/order-body.ts): the usual body is read without
// JSON.parse, and that shortcut must never change an answer. Properties (fast-check) compare it
// with JSON.parse on bodies near the usual shape and on arbitrary ones. FUZZ_SEED replays a run.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BadRequest, readOrderBody, scanOrderBody } from '../controller/dataplane/order-body.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const RUNS = Number(process.env.FUZZ_RUNS ?? 5000);
const params = { seed: SEED, numRuns: RUNS };

/** Characters that matter to a JSON string or to the shape, and some that do not. */
const char = fc.oneof(
  fc.constantFrom('"', '\\', '{', '}', ':', ',', ' ', '\n', '\u0000', '\u001f', '\u007f', 'a', 'u', '-', '0', 'é', '中', '😀', '\ud800', '\udc00'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
);
const text = fc.string({ unit: char, maxLength: 12 });
/** A usual body with a few characters inserted, removed or replaced anywhere. */
const nearUsual = fc
  .tuple(text, text, fc.array(fc.tuple(fc.nat(), fc.nat(2), text), { maxLength: 3 }))
  .map(([userId, skuId, edits]) => {
    let raw = `{"userId":"${userId}","skuId":"${skuId}"}`;
    for (const [at, kind, s] of edits) {
      const i = at % (raw.length + 1);
      raw = kind === 0 ? raw.slice(0, i) + s + raw.slice(i) : kind === 1 ? raw.slice(0, i) + raw.slice(i + s.length) : raw.slice(0, i) + s + raw.slice(i + s.length);
    }
    return raw;
  });
const anyBody = fc.oneof(nearUsual, fc.json(), fc.string({ unit: char, maxLength: 40 }), fc.record({ userId: text, skuId: text }).map((o) => JSON.stringify(o)));

/** What readOrderBody answers: the purchase, or the 400's reason. */
function outcome(raw: string, perUserLimit: number): unknown {
  try {
    return readOrderBody(raw, perUserLimit);
  } catch (err) {
    if (!(err instanceof BadRequest)) throw err;
    return { refused: err.message };
  }
}

describe('the purchase body (order-body.ts)', { concurrency: false }, () => {
  it(`reads only what JSON.parse reads the same way (seed ${SEED})`, () => {
    fc.assert(
      fc.property(anyBody, (raw) => {
        const usual = scanOrderBody(raw);
        if (usual !== undefined) assert.deepEqual(usual, { ...(JSON.parse(raw) as object) }, raw);
      }),
      params,
    );
  });

  it(`gives every body the answer JSON.parse would (seed ${SEED})`, () => {
    // A leading space makes the shortcut step aside; JSON.parse ignores it.
    fc.assert(fc.property(anyBody, fc.integer({ min: 1, max: 5 }), (raw, limit) => {
      assert.deepEqual(outcome(raw, limit), outcome(` ${raw}`, limit), raw);
    }), params);
  });

  it(`takes the usual body of any ids without JSON.parse (seed ${SEED})`, () => {
    const plain = fc.string({ unit: fc.oneof(fc.constantFrom('a', 'Z', '-', ' ', 'é', '中', '😀', '/', "'"), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })), maxLength: 20 });
    fc.assert(fc.property(plain, plain, (userId, skuId) => {
      const raw = JSON.stringify({ userId, skuId });
      // JSON.stringify escapes what needs it; only an escape-free body is the usual shape.
      assert.deepEqual(scanOrderBody(raw), raw.includes('\\') ? undefined : { userId, skuId }, raw);
    }), params);
  });

  it('steps aside for every other shape', () => {
    for (const raw of [
      '{"skuId":"b","userId":"a"}',
      '{ "userId":"a","skuId":"b"}',
      '{"userId":"a", "skuId":"b"}',
      '{"userId":"a","skuId":"b"} ',
      '{"userId":"a","skuId":"b","quantity":1}',
      '{"userId":"a\\u0062","skuId":"b"}',
      '{"userId":"a","skuId":"b\\""}',
      '{"userId":"a\u0001","skuId":"b"}',
      '{"userId":"a","skuId":"}',
      '{"userId":"a"}',
      '{"userId":"a","skuId":"b"}}',
      '{"userId":"a","skuId":"b""}',
      '{"userId":"a","skuId":"b"',
      '',
      '"}',
    ]) assert.equal(scanOrderBody(raw), undefined, raw);
    assert.deepEqual(scanOrderBody('{"userId":"u-1","skuId":"scarce"}'), { userId: 'u-1', skuId: 'scarce' });
    assert.deepEqual(scanOrderBody('{"userId":"","skuId":""}'), { userId: '', skuId: '' });
    assert.deepEqual(outcome('{"userId":"","skuId":"x"}', 1), { refused: 'userId: required string of 1 to 128 characters, well-formed Unicode' });
    assert.deepEqual(outcome('{"userId":"u","skuId":"x"}', 1), { userId: 'u', skuId: 'x', quantity: 1 });
  });
});
