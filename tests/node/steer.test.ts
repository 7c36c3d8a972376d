/**
 * Steering plans against values computed here from the golden fixtures' weights (not through
 * the code under test): additive vectors, projection-clamp targets, Llama-Scope's input scale,
 * the wire encoding, and where R1's response prefix ends.
 */
import { describe, expect, test } from 'vitest';
import { Sae } from '../../src/runtime/sae.js';
import { widenToF32 } from '../../src/sae/dtype.js';
import { decoderOf } from '../../src/sae/weights.js';
import { base64ToVector, pushVector, sideBySide, vectorToBase64, wireSteering } from '../../src/steer/plan.js';
import { ResponsePrefixDetector } from '../../src/steer/prefix.js';
import { loadGolden } from '../helpers/golden.js';

describe('steering plans', () => {
  test('push = Σ strength · W_dec[f]; clamp target = value · ‖W_dec[f]‖ (untied f16 and tied bf16 SAEs)', async () => {
    for (const file of ['saelens-topk-f16-t64.safetensors', 'goodfire-bf16-batchtopk-t7.safetensors']) {
      const g = loadGolden(file);
      const sae = await Sae.create({ config: g.config, weights: g.weights }, { backend: 'cpu' });
      const dec = decoderOf(g.config, g.weights);
      const rows = widenToF32(dec.data, dec.dtype);
      const { dIn } = g.config;
      const pushes = [
        { feature: 3, strength: 2.5 },
        { feature: 17, strength: -1 },
      ];
      const want = new Float32Array(dIn);
      for (const p of pushes) for (let i = 0; i < dIn; i++) want[i] = (want[i] ?? 0) + p.strength * (rows[p.feature * dIn + i] ?? 0);
      const got = await pushVector(sae, pushes);
      for (let i = 0; i < dIn; i++) expect(got[i]).toBeCloseTo(want[i] ?? 0, 5);
      const wire = await wireSteering(sae, { push: pushes, clamp: [{ feature: 5, value: 1.5 }], start: 12 });
      expect(wire.map((w) => [w.mode, w.start, w.strength])).toEqual([
        ['add', 12, 1],
        ['clamp-projection', 12, 1],
      ]);
      let norm = 0;
      for (let i = 0; i < dIn; i++) norm += (rows[5 * dIn + i] ?? 0) ** 2;
      expect(wire[1]?.target).toBeCloseTo(1.5 * Math.sqrt(norm), 4);
      expect(Array.from(base64ToVector(wire[1]?.vector ?? ''))).toEqual(Array.from(rows.subarray(5 * dIn, 6 * dIn)));
    }
  });

  test('an SAE with an input scale steers in model space (row / scale)', async () => {
    const g = loadGolden('llama-scope-jumprelu-f32-t7.safetensors');
    expect(g.config.inputScale).not.toBe(1);
    const sae = await Sae.create({ config: g.config, weights: g.weights }, { backend: 'cpu' });
    const dec = decoderOf(g.config, g.weights);
    const v = await pushVector(sae, [{ feature: 0, strength: 1 }]);
    expect(v[7]).toBeCloseTo((dec.data[7] ?? 0) / g.config.inputScale, 5);
  });

  test('vectors travel as little-endian f32 base64; sideBySide differs only in steering', async () => {
    const v = Float32Array.from([1, -2.5, 3e-8, 65504]);
    expect(Buffer.from(vectorToBase64(v), 'base64')).toEqual(Buffer.from(v.buffer));
    const g = loadGolden('saelens-topk-f16-t64.safetensors');
    const sae = await Sae.create({ config: g.config, weights: g.weights }, { backend: 'cpu' });
    const req = { prompt: 'x', max_tokens: 4, hook: { layer: 3 } };
    const { steered, baseline } = await sideBySide(sae, req, { push: [{ feature: 1, strength: 4 }] });
    expect(baseline).toEqual(req);
    expect(steered.steering?.[0]?.start).toBe('after-prefix');
    expect({ ...steered, steering: undefined }).toEqual({ ...req, steering: undefined });
  });

  test('decoderRows refuses features out of range', async () => {
    const g = loadGolden('saelens-topk-f16-t64.safetensors');
    const sae = await Sae.create({ config: g.config, weights: g.weights }, { backend: 'cpu' });
    await expect(sae.decoderRows([g.config.dSae])).rejects.toThrow(/outside 0/);
  });
});

describe('R1 response prefix', () => {
  const feed = (pieces: string[]): number | undefined => {
    const d = new ResponsePrefixDetector();
    let start: number | undefined;
    pieces.forEach((p, i) => (start = d.push(20 + i, p)));
    return start;
  };
  test('steering starts after the first sentence of "Okay, so …"', () => {
    expect(feed(['<think>', '\n', 'Okay', ',', ' so', ' the', ' user', ' asks', ' 7', '*', '8', '.', ' Let', ' me'])).toBe(32);
    expect(feed(['Okay', ', so', ' I need', ' to think', '\n', 'First'])).toBe(25);
  });
  test('no prefix: the 48th generated token', () => {
    expect(feed(Array<string>(60).fill(' hmm'))).toBe(20 + 47 + 1);
    expect(feed(['Sure', '.', ' Okay, so the user said hi.'])).toBeUndefined();
  });
  test('multi-byte characters split across pieces are joined before matching', () => {
    const d = new ResponsePrefixDetector(/^Okay, so é[.]/);
    const e = new TextEncoder().encode('é');
    d.push(0, 'Okay, so ');
    d.push(1, e.subarray(0, 1));
    d.push(2, e.subarray(1));
    expect(d.push(3, '.')).toBe(4);
  });
});
