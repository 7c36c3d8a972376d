/**
 * Sequential reads over a byte stream (an HTTP body, a file, a Blob, a cached Response), the
 * one access pattern every source supports. Parsers ask for exact byte counts (headers) or have
 * a range piped through in the chunks it arrived in (tensor data, zero-copy); nothing is held
 * beyond the current chunk. Each chunk reports progress and checks the abort signal, so an
 * abort stops the read within one chunk.
 */

export type ByteStream = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

export interface ByteReaderOptions {
  readonly signal?: AbortSignal | undefined;
  /** Called with the bytes received so far after every chunk. */
  readonly onBytes?: ((loaded: number) => void) | undefined;
  /** Builds the error thrown when the stream ends early (the format's named error). */
  readonly truncated: (what: string, position: number) => Error;
}

function iteratorOf(stream: ByteStream): AsyncIterator<Uint8Array> {
  // A ReadableStream is read through its reader even where it is async-iterable: the iterator's
  // return() waits behind a pending read, so cancelling a stalled stream would hang, while
  // reader.cancel() settles the pending read at once. Older Safari has no async iteration anyway.
  if (!('getReader' in stream)) return stream[Symbol.asyncIterator]();
  const reader = stream.getReader();
  return {
    next: async () => {
      const r = await reader.read();
      return r.done ? { done: true, value: undefined } : { done: false, value: r.value };
    },
    return: async () => {
      await reader.cancel();
      return { done: true, value: undefined };
    },
  };
}

/**
 * Parsers validate the lengths they read from a file before asking for that many bytes; a
 * negative, fractional or unsafe count reaching the reader is a parser bug, so it fails loudly
 * instead of moving the position by a nonsense amount.
 */
function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`ByteReader: asked for ${n} bytes of ${what}; lengths must be non-negative integers.`);
}

export class ByteReader {
  /** Bytes consumed by the parser so far (its position in the file). */
  position = 0;
  #it: AsyncIterator<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #received = 0;
  #done = false;
  /** A next() of the source that has not settled (an abort stopped waiting for it). */
  #pending = false;
  readonly #opts: ByteReaderOptions;

  constructor(stream: ByteStream, options: ByteReaderOptions) {
    this.#it = iteratorOf(stream);
    this.#opts = options;
  }

  #abortError(s: AbortSignal): Error {
    return s.reason instanceof Error ? s.reason : new DOMException('The load was aborted.', 'AbortError');
  }

  #checkAbort(): void {
    const s = this.#opts.signal;
    if (s?.aborted === true) throw this.#abortError(s);
  }

  /**
   * The source's next chunk, or the abort error as soon as the signal fires: a stalled source (a
   * connection gone quiet, a custom stream that never yields) must not outlive an abort.
   */
  #next(): Promise<IteratorResult<Uint8Array>> {
    const s = this.#opts.signal;
    this.#pending = true;
    const next = this.#it.next().finally(() => {
      this.#pending = false;
    });
    if (s === undefined) return next;
    // A read that fails after the abort has been reported must not become an unhandled rejection.
    next.catch(() => undefined);
    let onAbort = (): void => undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        reject(this.#abortError(s));
        // Also stop the source here: the parser's caller may not know this reader yet (an abort
        // during the header), and a stalled read would otherwise hold the stream open.
        void this.cancel();
      };
      s.addEventListener('abort', onAbort, { once: true });
    });
    return Promise.race([next, aborted]).finally(() => s.removeEventListener('abort', onAbort));
  }

  /** Pulls the next chunk into #chunk; false at end of stream. */
  async #pull(): Promise<boolean> {
    this.#checkAbort();
    if (this.#done) return false;
    for (;;) {
      const r = await this.#next();
      this.#checkAbort();
      if (r.done === true) {
        this.#done = true;
        return false;
      }
      if (r.value.byteLength === 0) continue;
      this.#chunk = r.value;
      this.#received += r.value.byteLength;
      this.#opts.onBytes?.(this.#received);
      return true;
    }
  }

  /** Exactly n bytes (a fresh copy when they span chunks). Throws the truncation error at EOF. */
  async read(n: number, what: string): Promise<Uint8Array> {
    checkCount(n, what);
    if (this.#chunk.byteLength >= n) {
      const out = this.#chunk.subarray(0, n);
      this.#chunk = this.#chunk.subarray(n);
      this.position += n;
      return out;
    }
    // Gather the pieces first and allocate once they are all here: a length field that claims far
    // more than the stream holds then ends in the truncation error, not a huge (or impossible) allocation.
    const parts: Uint8Array[] = [];
    let have = 0;
    while (have < n) {
      if (this.#chunk.byteLength === 0 && !(await this.#pull())) throw this.#opts.truncated(what, this.position + have);
      const take = Math.min(n - have, this.#chunk.byteLength);
      // A copy: a source may reuse a chunk's memory once the next one is asked for.
      parts.push(this.#chunk.slice(0, take));
      this.#chunk = this.#chunk.subarray(take);
      have += take;
    }
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    this.position += n;
    return out;
  }

  /** Up to n bytes that are already buffered or arrive next (at least 1 unless at EOF). */
  async peekSome(): Promise<Uint8Array> {
    if (this.#chunk.byteLength === 0) await this.#pull();
    return this.#chunk;
  }

  /** Passes the next n bytes to `sink` in arrival-sized pieces (views, valid during the call). */
  async pipe(n: number, what: string, sink: (bytes: Uint8Array) => void | Promise<void>): Promise<void> {
    checkCount(n, what);
    let left = n;
    while (left > 0) {
      if (this.#chunk.byteLength === 0 && !(await this.#pull())) throw this.#opts.truncated(what, this.position);
      const take = Math.min(left, this.#chunk.byteLength);
      const piece = this.#chunk.subarray(0, take);
      this.#chunk = this.#chunk.subarray(take);
      this.position += take;
      left -= take;
      await sink(piece);
    }
  }

  /** Puts bytes back in front of the stream (a parser that read past a record boundary). */
  unread(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    const joined = new Uint8Array(bytes.byteLength + this.#chunk.byteLength);
    joined.set(bytes);
    joined.set(this.#chunk, bytes.byteLength);
    this.#chunk = joined;
    this.position -= bytes.byteLength;
  }

  /** The next n bytes without consuming them; fewer only at the end of the stream. */
  async peek(n: number): Promise<Uint8Array> {
    while (this.#chunk.byteLength < n) {
      const have = this.#chunk;
      if (!(await this.#pull())) {
        this.#chunk = have;
        break;
      }
      if (have.byteLength > 0) {
        const joined = new Uint8Array(have.byteLength + this.#chunk.byteLength);
        joined.set(have);
        joined.set(this.#chunk, have.byteLength);
        this.#chunk = joined;
      }
    }
    return this.#chunk.subarray(0, Math.min(n, this.#chunk.byteLength));
  }

  skip(n: number, what: string): Promise<void> {
    return this.pipe(n, what, () => undefined);
  }

  /** Whether the stream has more bytes. */
  async atEnd(): Promise<boolean> {
    return this.#chunk.byteLength === 0 && !(await this.#pull());
  }

  /** Stops the underlying stream (network read, file read) without reading the rest. */
  async cancel(): Promise<void> {
    this.#done = true;
    this.#chunk = new Uint8Array(0);
    try {
      const done = this.#it.return?.();
      // An async generator queues return() behind a next() that never settles: after an abort
      // of a stalled source, ask it to stop but do not wait for it.
      if (this.#pending) void done?.catch(() => undefined);
      else await done;
    } catch {
      // a stream that already errored (e.g. aborted fetch) cannot be cancelled again
    }
  }
}
