/**
 * readSafetensors on a real file written by the PyTorch fixture generator and on hostile or
 * truncated files built byte by byte.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { SafetensorsError } from '../../src/errors.js';
import { readSafetensors } from '../../src/formats/safetensors.js';
import { GOLDEN_DIR } from '../helpers/golden.js';

function file(header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('readSafetensors', () => {
  test('reads a file written by the PyTorch generator', () => {
    const bytes = readFileSync(`${GOLDEN_DIR}sparsify-f32-topk-t64-edge.safetensors`);
    const { tensors, metadata } = readSafetensors(new Uint8Array(bytes));
    expect(tensors['encoder']?.shape).toEqual([333, 96]);
    expect(tensors['encoder']?.dtype).toBe('F32');
    expect(tensors['x']?.data.length).toBe(64 * 96);
    expect(JSON.parse(metadata['config'] ?? '{}')).toMatchObject({ architecture: 'topk', dIn: 96, dSae: 333, k: 24 });
  });

  test('reads F16, BF16, I64 and BOOL entries, zero-copy when aligned', () => {
    const data = new Uint8Array(8 + 4 + 8 + 2);
    new DataView(data.buffer).setBigInt64(0, -5n, true);
    new DataView(data.buffer).setUint16(8, 0x3c00, true);
    new DataView(data.buffer).setUint16(10, 0x3f80, true);
    const bytes = file(
      {
        a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] },
        h: { dtype: 'F16', shape: [1], data_offsets: [8, 10] },
        b: { dtype: 'BF16', shape: [1], data_offsets: [10, 12] },
        z: { dtype: 'BOOL', shape: [2], data_offsets: [20, 22] },
      },
      data,
    );
    const { tensors } = readSafetensors(bytes);
    expect((tensors['a']?.data as BigInt64Array)[0]).toBe(-5n);
    expect((tensors['h']?.data as Uint16Array)[0]).toBe(0x3c00);
    expect((tensors['b']?.data as Uint16Array)[0]).toBe(0x3f80);
    expect(tensors['z']?.data.length).toBe(2);
  });

  test.each([
    ['fewer than 8 bytes', new Uint8Array(5), /only 5 bytes/],
    ['header longer than the file', file({}, new Uint8Array(0), 1000n), /claims 1000 bytes/],
    ['absurd header length', file({}, new Uint8Array(0), 2n ** 60n), /truncated or not safetensors/],
    ['header not JSON', file('{"a": '), /not valid UTF-8 JSON/],
    ['header an array', file([1, 2]), /must be a JSON object/],
    ['unknown dtype', file({ a: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /Should be one of/],
    ['negative shape', file({ a: { dtype: 'U8', shape: [-1], data_offsets: [0, 1] } }, new Uint8Array(1)), /non-negative integers/],
    ['offsets past the end', file({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)), /outside the 8-byte data section/],
    ['size not shape × dtype', file({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /needs 12 bytes/],
    [
      'overlapping tensors',
      file(
        { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
        new Uint8Array(12),
      ),
      /overlap/,
    ],
    ['metadata not strings', file({ __metadata__: { a: 1 } }), /string values/],
  ])('rejects %s', (_name, bytes, message) => {
    expect(() => readSafetensors(bytes)).toThrow(SafetensorsError);
    expect(() => readSafetensors(bytes)).toThrow(message);
  });

  test('a truncated real file is refused, not misread', () => {
    const bytes = new Uint8Array(readFileSync(`${GOLDEN_DIR}saelens-standard-f32-t7.safetensors`));
    expect(() => readSafetensors(bytes.subarray(0, bytes.length - 100))).toThrow(/outside the .*data section/);
  });
});
