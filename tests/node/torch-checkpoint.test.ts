/**
 * readTorchCheckpoint against files written by PyTorch itself (tools/golden/make_torch_fixtures.py)
 * with torch.load's view of every tensor as the reference, the real Goodfire sample_acts.pt,
 * and hostile or truncated files.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { TorchCheckpointError } from '../../src/errors.js';
import { readSafetensors } from '../../src/formats/safetensors.js';
import { readTorchCheckpoint } from '../../src/formats/torch.js';

const dir = fileURLToPath(new URL('../fixtures/torch/', import.meta.url));
const read = (name: string): Uint8Array => new Uint8Array(readFileSync(`${dir}${name}`));
const expected = readSafetensors(read('expected.safetensors')).tensors;

function same(actual: { dtype: string; shape: readonly number[]; data: ArrayLike<unknown> }, want: { dtype: string; shape: readonly number[]; data: ArrayLike<unknown> }): void {
  expect(actual.dtype).toBe(want.dtype);
  expect([...actual.shape]).toEqual([...want.shape]);
  expect(Array.from(actual.data as ArrayLike<number>)).toEqual(Array.from(want.data as ArrayLike<number>));
}

describe('readTorchCheckpoint', () => {
  test.each(['state_dict', 'nested', 'deflated'])('%s.pt: every tensor equals torch.load', async (file) => {
    const tensors = await readTorchCheckpoint(read(`${file}.pt`));
    const wanted = Object.keys(expected).filter((k) => k.startsWith(`${file}/`));
    expect(Object.keys(tensors).sort()).toEqual(wanted.map((k) => k.slice(file.length + 1)).sort());
    for (const k of wanted) {
      const t = tensors[k.slice(file.length + 1)];
      const w = expected[k];
      if (t === undefined || w === undefined) throw new Error(`missing ${k}`);
      same(t, w);
    }
  });

  test('state dict details: transposed view, storage offset, shared storage, parameters', async () => {
    const t = await readTorchCheckpoint(read('state_dict.pt'));
    expect(t['transposed']?.shape).toEqual([7, 5]);
    expect(Array.from(t['sliced']?.data as Float32Array)).toEqual(Array.from({ length: 12 }, (_, i) => i + 5));
    expect(Array.from(t['shared_tail']?.data as Float32Array)).toEqual([20, 21, 22, 23]);
    expect(t['encoder.weight']?.shape).toEqual([10, 6]);
    expect(t['scalar']?.shape).toEqual([]);
  });

  test('the real Goodfire sample_acts.pt: 7168 f32 values, norm 6.3119, equal to torch.load', async () => {
    const bytes = new Uint8Array(readFileSync(fileURLToPath(new URL('../fixtures/goodfire/sample_acts.pt', import.meta.url))));
    const t = await readTorchCheckpoint(bytes);
    const acts = t[''];
    expect(acts?.dtype).toBe('F32');
    expect(acts?.shape).toEqual([7168]);
    const data = acts?.data as Float32Array;
    const norm = Math.sqrt(data.reduce((s, v) => s + v * v, 0));
    expect(norm).toBeCloseTo(6.3119, 4);
    const want = readSafetensors(read('sample_acts_expected.safetensors')).tensors['acts'];
    expect(Array.from(data)).toEqual(Array.from(want?.data as Float32Array));
    // stored entries are read in place, not copied
    expect(data.buffer).toBe(bytes.buffer);
  });

  test('a pickle naming os.system is refused before anything runs', async () => {
    await expect(readTorchCheckpoint(read('malicious.pt'))).rejects.toThrow(TorchCheckpointError);
    await expect(readTorchCheckpoint(read('malicious.pt'))).rejects.toThrow(/"os\.system", which Loupe refuses/);
  });

  test.each([
    ['truncated', (b: Uint8Array) => b.subarray(0, b.length - 200), /end-of-central-directory|truncated|corrupt/],
    ['not a zip', () => new TextEncoder().encode('just some text, no zip here at all'), /not a torch\.save/],
    ['empty', () => new Uint8Array(0), /not a torch\.save/],
  ])('rejects a %s file with a named error', async (_name, mangle, message) => {
    const bytes = mangle(read('state_dict.pt'));
    await expect(readTorchCheckpoint(bytes)).rejects.toThrow(TorchCheckpointError);
    await expect(readTorchCheckpoint(bytes)).rejects.toThrow(message);
  });
});
