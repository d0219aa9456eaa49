// The gateway's fix of kafkajs 2.2.4's idle timer loop (controller/infra/kafka.ts), on kafkajs's own
// request queue: no broker, setTimeout and Date mocked, so "a timer is armed" is read from the queue
// and timers fire by ticking, not by waiting.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { kafkajsRequestQueue, type KjsRequestQueue } from '../controller/infra/kafka.ts';
describe('kafkajs request queue without the idle timer loop', () => {
  type Queue = KjsRequestQueue & {
    inflight: Map<number, unknown>;
    push(r: { entry: object; expectResponse: boolean; sendRequest(): void }): void;
    fulfillRequest(r: { correlationId: number; payload: Buffer | null; size: number }): void;
    destroy(): void;
  };
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  function queue(maxInFlightRequests: number | null): Queue {
    const RequestQueue = kafkajsRequestQueue as unknown as new (o: object) => Queue;
    return new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 'test', broker: 'test:9092', logger: quiet });
  }
  const sent: number[] = [];
  function request(correlationId: number) {
    return { entry: { correlationId, apiKey: 1, apiName: 'Fetch', apiVersion: 11, resolve() {}, reject() {} }, expectResponse: true, sendRequest: () => sent.push(correlationId) };
  }

  it('arms no timer while nothing waits, and checks a waiting request again until it is sent', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      sent.length = 0;
      const q = queue(1);
      q.push(request(1));
      assert.deepEqual(sent, [1]);
      q.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
      // kafkajs 2.2.4 armed a 1 ms timer here that re-armed itself for ever (the idle loop).
      assert.equal(q.throttleCheckTimeoutId, null, 'an idle queue arms no timer');
      q.push(request(2));
      q.push(request(3)); // over the in-flight limit of 1: waits
      assert.deepEqual(sent, [1, 2]);
      assert.equal(q.pending.length, 1);
      assert.notEqual(q.throttleCheckTimeoutId, null, 'a waiting request arms the check');
      q.fulfillRequest({ correlationId: 2, payload: null, size: 0 });
      assert.deepEqual(sent, [1, 2, 3]);
      mock.timers.tick(10); // the check armed for the waiting request fires, finds nothing waiting
      assert.equal(q.throttleCheckTimeoutId, null, 'no timer once nothing waits');
      q.fulfillRequest({ correlationId: 3, payload: null, size: 0 });
      assert.equal(q.throttleCheckTimeoutId, null);
      q.destroy();
    } finally {
      mock.timers.reset();
    }
  });

  it('sends a request held by client-side throttling when the throttle ends', () => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    try {
      sent.length = 0;
      const q = queue(null);
      // Unfixed, the check after the send re-arms at 0 ms under a frozen mocked clock: the tick
      // below would never return. Fail here instead.
      q.checkPendingRequests();
      assert.equal(q.throttleCheckTimeoutId, null, 'an idle queue arms no timer');
      q.throttledUntil = Date.now() + 500;
      q.push(request(7));
      assert.deepEqual(sent, [], 'throttled: the request waits');
      mock.timers.tick(499);
      assert.deepEqual(sent, []);
      mock.timers.tick(1);
      assert.deepEqual(sent, [7], 'sent when the throttle ends');
      assert.equal(q.throttleCheckTimeoutId, null);
      q.destroy();
    } finally {
      mock.timers.reset();
    }
  });
});
