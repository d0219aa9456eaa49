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

/** The purchase body's default limit (the API's maxBodyBytes); a purchase body is a few dozen bytes. */
export const DEFAULT_MAX_BODY_BYTES = 1024;

/** Receives a body whole, decoded as UTF-8, or null when it was longer than the route's limit. */
export type BodyHandler = (body: string | null) => void;

export class ApiRequest extends IncomingMessage {
  private onBody: BodyHandler | undefined = undefined;
  private bodyLimit = 0;
  private bodySize = 0;
  // A purchase body comes in one piece: the array is only made for a second one.
  private firstChunk: Buffer | undefined = undefined;
  private moreChunks: Buffer[] | undefined = undefined;

  /**
   * From now on the body goes to `onBody`, whole, instead of to the stream, which stays empty and is
   * marked finished at the body's end ('data', 'end' and 'close' are not emitted). A body over
   * `limit` bytes is read to its end and dropped: `onBody(null)`. Called from the 'request' handler:
   * node:http runs it from the headers' callback, before any of the body is parsed
   * (test/order-path.test.ts sends bodies after 100 Continue, byte by byte, in chunks and pipelined).
   */
  takeBody(limit: number, onBody: BodyHandler): void {
    this.bodyLimit = limit;
    this.onBody = onBody;
  }

  override push(chunk: Buffer | null, encoding?: BufferEncoding): boolean {
    const onBody = this.onBody;
    if (onBody === undefined) return super.push(chunk, encoding);
    if (chunk !== null) {
      this.bodySize += chunk.length;
      if (this.bodySize > this.bodyLimit) this.firstChunk = this.moreChunks = undefined;
      else if (this.firstChunk === undefined) this.firstChunk = chunk;
      else (this.moreChunks ??= [this.firstChunk]).push(chunk);
      // Never "stop reading": what is kept stays within the limit.
      return true;
    }
    this.onBody = undefined;
    markFinished.call(this);
    const first = this.firstChunk;
    const more = this.moreChunks;
    this.firstChunk = this.moreChunks = undefined;
    // Joined before decoding: a character may be split between two chunks.
    onBody(this.bodySize > this.bodyLimit ? null : more !== undefined ? Buffer.concat(more).toString('utf8') : (first?.toString('utf8') ?? ''));
    return true;
  }
}
