/** The CPU top-k selection (bounded heap) against a full sort, the obvious independent reference. */
import { describe, expect, test } from 'vitest';
import { codesFromLists } from '../../src/sae/codes.js';
import { selectTop } from '../../src/sae/reference/activation.js';
import { gaussian } from '../helpers/random.js';

function bySort(v: Float32Array, count: number): Array<[number, number]> {
  return Array.from(v, (x, i) => [i, x] as [number, number])
    .filter(([, x]) => x > 0)
    .sort((a, b) => b[1] - a[1] || a[0] - b[0])
    .slice(0, count);
}

describe('selectTop', () => {
  test.each([1, 7, 64, 256, 4000])('k = %i over 65,536 values equals a full sort', (k) => {
    const v = gaussian(65536, k);
    const got = selectTop(v, 0, v.length, k, (x) => x > 0).sort((a, b) => b.value - a.value || a.index - b.index);
    expect(got.map((c) => [c.index, c.value])).toEqual(bySort(v, k));
  });
  test('ties keep the lowest indices', () => {
    const v = Float32Array.from([1, 3, 3, 2, 3, 3, 0.5]);
    const got = selectTop(v, 0, v.length, 3, (x) => x > 0).map((c) => c.index).sort((a, b) => a - b);
    expect(got).toEqual([1, 2, 4]);
  });
  test('codesFromLists sorts by value descending, ties by index ascending', () => {
    const codes = codesFromLists([{ indices: [5, 2, 9, 1], values: [1, 2, 2, 0.5] }, { indices: [], values: [] }]);
    expect(Array.from(codes.indices)).toEqual([2, 9, 5, 1]);
    expect(Array.from(codes.offsets)).toEqual([0, 4, 4]);
  });
});
