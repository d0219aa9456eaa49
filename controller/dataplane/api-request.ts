// The API's request class (node:http's `IncomingMessage` option). node:http's parser hands a
// request's body to its request object through push(), as any Readable's source does; the stream
// then buffers each chunk, emits 'data' and 'end' from later ticks and marks itself ended. A
// purchase body is a few dozen bytes read whole, and in a minimal handler that machinery was 2.0 of
// its 18.3 µs of CPU per request (docs/order-path.md, "The purchase body taken from push()"). So the
// purchase route takes the body where the parser hands it over; every other route reads the stream.
import { IncomingMessage } from 'node:http';

/**
 * node:http's own way to mark a request's stream finished without events, used by its
 * `optimizeEmptyRequests` option for requests without a body. Called once the route has the whole
 * body: node:http then neither resumes the stream after the answer nor waits for its 'end' to let go
 * of it, another 1.2 of a minimal handler's 14.2 µs per request (docs/order-path.md). An internal
 * method: checked here, at load, so a Node without it fails at start and not on a purchase.
 */
const markFinished = ((): ((this: IncomingMessage) => void) => {
  const method = (IncomingMessage.prototype as unknown as { _dumpAndCloseReadable?: (this: IncomingMessage) => void })._dumpAndCloseReadable;
  if (typeof method !== 'function') throw new Error(`node:http ${process.version} has no IncomingMessage.prototype._dumpAndCloseReadable (controller/dataplane/api-request.ts)`);
  return method;
})();

/** Receives a body's chunks in order, then null once the body is complete. */
export type BodyReader = (chunk: Buffer | null) => void;

export class ApiRequest extends IncomingMessage {
  private bodyReader: BodyReader | undefined = undefined;

  /**
   * From now on the body goes to `reader` instead of the stream, which stays empty and is marked
   * finished at the body's end ('data', 'end' and 'close' are not emitted). Called from the
   * 'request' handler: node:http runs it from the headers' callback, before any of the body is
   * parsed (test/order-path.test.ts sends bodies after 100 Continue, byte by byte, in chunks and
   * pipelined).
   */
  takeBody(reader: BodyReader): void {
    this.bodyReader = reader;
  }

  override push(chunk: Buffer | null, encoding?: BufferEncoding): boolean {
    const reader = this.bodyReader;
    if (reader === undefined) return super.push(chunk, encoding);
    if (chunk === null) {
      this.bodyReader = undefined;
      markFinished.call(this);
    }
    reader(chunk);
    // Never "stop reading": the reader keeps what it is given, within the route's size limit.
    return true;
  }
}
