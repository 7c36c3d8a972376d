/**
 * A byte stream as an async iterable of its chunks. Leaving the loop early (break, throw, a
 * consumer's return) cancels the stream, so the network read behind it stops instead of
 * filling memory nobody reads.
 */
export async function* streamChunks(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      yield r.value;
    }
  } finally {
    reader.releaseLock();
    await stream.cancel().catch(() => undefined);
  }
}
