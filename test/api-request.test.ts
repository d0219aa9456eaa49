// The API's request class on its own: the body node:http's parser pushes, in whatever pieces, reaches
// the route whole. Through a real server the pieces cannot be chosen (the kernel joins small writes),
// so here the test is the parser: it calls push() as node:http does, chunk by chunk, then null.
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { ApiRequest } from '../controller/dataplane/api-request.ts';

/** Pushes `chunks` then the end into a fresh request whose body is taken with `limit`; returns what the route got. */
function deliver(chunks: Buffer[], limit = 1024): { bodies: (string | null)[]; req: ApiRequest } {
  const req = new ApiRequest(new Socket());
  const bodies: (string | null)[] = [];
  req.takeBody(limit, (body) => bodies.push(body));
  for (const c of chunks) assert.equal(req.push(c), true, 'never asks the parser to stop');
  assert.deepEqual(bodies, [], 'nothing before the end');
  req.push(null);
  return { bodies, req };
}

describe('ApiRequest.takeBody', () => {
  it('joins pieces before decoding, so a character split between two pieces survives', () => {
    const body = Buffer.from('{"userId":"买家-ü","skuId":"phone"}');
    const byByte = Array.from(body, (b) => Buffer.from([b]));
    assert.deepEqual(deliver(byByte).bodies, [body.toString('utf8')]);
    const cut = body.indexOf(Buffer.from('家')) + 1; // inside the three bytes of 家
    assert.deepEqual(deliver([body.subarray(0, cut), body.subarray(cut)]).bodies, [body.toString('utf8')]);
    assert.deepEqual(deliver([body]).bodies, [body.toString('utf8')]);
  });

  it('hands an empty body as an empty string and a body over the limit as null, read to its end', () => {
    assert.deepEqual(deliver([]).bodies, ['']);
    assert.deepEqual(deliver([Buffer.alloc(10, 'x')], 10).bodies, ['x'.repeat(10)]);
    assert.deepEqual(deliver([Buffer.alloc(6, 'x'), Buffer.alloc(5, 'x')], 10).bodies, [null]);
    assert.deepEqual(deliver([Buffer.alloc(11, 'x'), Buffer.alloc(1, 'x')], 10).bodies, [null]);
  });

  it('leaves the stream empty and finished, without events', () => {
    const req = new ApiRequest(new Socket());
    const events: string[] = [];
    for (const e of ['data', 'end', 'close']) req.on(e, () => events.push(e));
    let got: string | null | undefined;
    req.takeBody(1024, (body) => (got = body));
    req.push(Buffer.from('{}'));
    req.push(null);
    assert.equal(got, '{}');
    assert.equal(req.readableEnded, true);
    assert.equal(req.readableLength, 0);
    // 'end' and 'close' would come from a later tick: wait one and see none came.
    return new Promise<void>((done) =>
      setImmediate(() => {
        assert.deepEqual(events, []);
        done();
      }),
    );
  });

  it('is a plain request stream for a route that does not take its body', async () => {
    const req = new ApiRequest(new Socket());
    req.push(Buffer.from('pay'));
    req.push(null);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'pay');
  });
});
