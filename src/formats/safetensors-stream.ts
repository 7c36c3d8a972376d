/**
 * safetensors read as a stream: the 8-byte length and JSON header first (checked exactly as
 * `readSafetensors` checks them), then each tensor's bytes piped to its sink in offset order.
 */
import { SafetensorsError } from '../errors.js';
import type { ByteReader } from '../io/byte-reader.js';
import { MAX_HEADER_BYTES, parseSafetensorsHeader } from './safetensors.js';
import type { StreamedTensor, TensorStream } from './tensor-stream.js';

/** Reads the header of a safetensors stream; `size` is the file size when the source knows it. */
export async function streamSafetensors(reader: ByteReader, size: number | undefined): Promise<TensorStream> {
  const len = new DataView((await reader.read(8, 'the 8-byte header length')).slice().buffer).getBigUint64(0, true);
  const room = size !== undefined ? Math.min(MAX_HEADER_BYTES, size - 8) : MAX_HEADER_BYTES;
  if (len > BigInt(room)) {
    throw new SafetensorsError(
      `The header claims ${len} bytes, but ${size !== undefined ? `the file has ${size - 8} bytes after the length field and ` : ''}the cap is ${MAX_HEADER_BYTES}. The file is truncated or not safetensors.`,
    );
  }
  const n = Number(len);
  const { entries } = parseSafetensorsHeader(await reader.read(n, 'the JSON header'), size !== undefined ? size - 8 - n : undefined);
  const tensors = new Map<string, StreamedTensor>(entries.map((e) => [e.name, { name: e.name, dtype: e.dtype, shape: e.shape, order: 'row-major' }]));
  return {
    tensors,
    async pump(route) {
      let at = 0;
      for (const e of entries) {
        const t = tensors.get(e.name);
        const sink = t !== undefined ? route(t) : undefined;
        if (sink === undefined) continue;
        // Tensors the loader does not want are skipped; the gap is read past, not kept.
        await reader.skip(e.begin - at, `the bytes before tensor "${e.name}"`);
        await reader.pipe(e.end - e.begin, `tensor "${e.name}"`, (b) => sink.write(b));
        await sink.end();
        at = e.end;
      }
      await reader.cancel();
    },
    cancel: () => reader.cancel(),
  };
}
