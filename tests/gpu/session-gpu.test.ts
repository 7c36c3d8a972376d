/**
 * The Session with its SAE on WebGPU (Dawn + lavapipe): a remote stream's activations are
 * written into a GPU ring in their wire dtype (f16, bf16) and encoded from there — batched
 * over consecutive slots, never read back to the CPU — and the readouts match the CPU reference
 * encode of the CPU widening of the same bytes, including a ring smaller than the prompt burst
 * (wrap-around) and a NaN activation. Every GPU buffer is freed when the session is destroyed.
 * Session.open picks WebGPU when an adapter exists.
 */
import { describe, expect, test } from 'vitest';
import { createSae } from '../../src/runtime/sae.js';
import { resolveSaeConfig, type SaeConfigInput } from '../../src/sae/config.js';
import { referenceEncode } from '../../src/sae/reference/index.js';
import { activationToF32, type WireDtype } from '../../src/sources/frames.js';
import { chooseBackend } from '../../src/session/backend.js';
import { remoteTokenSource } from '../../src/session/remote.js';
import { Session } from '../../src/session/session.js';
import type { TokenReadout } from '../../src/session/types.js';
import { withGpu, nodeAdapter, nodeGpu } from '../helpers/gpu.js';
import { concat, encodeActivation, endFrame, frame, headerFrame, preamble } from '../helpers/loupe-frames.js';
import { randomSae } from '../helpers/random-sae.js';
import { gaussian } from '../helpers/random.js';

/** A scripted Loupe stream (docs/protocol.md) behind fetch: the prompt in one chunk, then one token per chunk. */
function scriptedFetch(dIn: number, dtype: WireDtype, acts: readonly Float32Array[], prompt: number): typeof fetch {
  const frames = acts.map((values, position) => {
    const text = new TextEncoder().encode(`t${position}`);
    const pad = (4 - (text.length % 4)) % 4;
    const act = encodeActivation(values, dtype);
    const p = new Uint8Array(16 + text.length + pad + act.length);
    const v = new DataView(p.buffer);
    v.setUint32(0, position, true);
    v.setUint32(4, position, true);
    v.setUint8(8, position < prompt ? 0 : 1);
    v.setUint16(10, text.length, true);
    v.setUint32(12, dIn, true);
    p.set(text, 16);
    p.set(act, 16 + text.length + pad);
    return frame(2, p);
  });
  return (async () => {
    const chunks = [concat([preamble(), headerFrame({ d_in: dIn, dtype, prompt_tokens: prompt }), ...frames.slice(0, prompt)]), ...frames.slice(prompt), endFrame('eos', prompt, acts.length - prompt)];
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const c = chunks.shift();
        if (c === undefined) return controller.close();
        await new Promise((r) => setTimeout(r, 2));
        controller.enqueue(c);
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status: 200 });
  }) as typeof fetch;
}

function expectClose(got: TokenReadout, want: { indices: ArrayLike<number>; values: ArrayLike<number> }, tol: number, where: string): void {
  const a = new Map(Array.from(got.indices, (f, j) => [f, got.values[j] as number]));
  const b = new Map(Array.from(want.indices, (f, j) => [f, want.values[j] as number]));
  const weakest = (m: Map<number, number>): number => Math.min(...m.values());
  for (const [f, v] of a) {
    const w = b.get(f);
    if (w !== undefined) expect(Math.abs(v - w), `${where} feature ${f}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w)));
    else expect(v - weakest(b), `${where}: ${f} only on the GPU`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(v)));
  }
  for (const [f, w] of b) if (!a.has(f)) expect(w - weakest(a), `${where}: ${f} only in the reference`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w)));
}

describe('Session on WebGPU', () => {
  test.for([
    { dtype: 'f16' as WireDtype, ringSlots: 1024 },
    { dtype: 'bf16' as WireDtype, ringSlots: 8 },
  ])('$dtype activations encoded from the GPU ring ($ringSlots slots) match the CPU reference', async ({ dtype, ringSlots }, ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const config: SaeConfigInput & { weightDtype: 'f32' } = { architecture: 'topk', dIn: 64, dSae: 512, k: 8, weightDtype: 'f32' };
      const weights = randomSae(config, 21);
      const sae = await createSae({ config, weights }, { backend: 'webgpu', device });
      const prompt = 40;
      const acts = Array.from({ length: 60 }, (_, t) => gaussian(config.dIn, 4000 + t, 3));
      (acts[45] as Float32Array)[10] = NaN;
      const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch: scriptedFetch(config.dIn, dtype, acts, prompt), hook: { layer: 1 }, dtype, ringSlots }), sae });
      const calls: Array<{ tokens: number; gpu: boolean }> = [];
      const encode = sae.encode.bind(sae);
      sae.encode = (x, o) => {
        calls.push({ tokens: o?.tokens ?? -1, gpu: !(x instanceof Float32Array) });
        return encode(x, o);
      };
      try {
        const summary = await session.run({ messages: [], maxNewTokens: 20 });
        expect(summary.status).toBe('done');
        const tokens = session.readouts.tokens;
        expect(tokens.map((t) => t.position)).toEqual([...Array(60).keys()]);
        // the reference: the CPU widening of the same wire bytes, encoded by the CPU reference
        const x = new Float32Array(acts.length * config.dIn);
        acts.forEach((a, t) => x.set(activationToF32(encodeActivation(a, dtype), dtype, config.dIn), t * config.dIn));
        const { codes } = referenceEncode(resolveSaeConfig(config), weights, x, acts.length);
        tokens.forEach((t, i) => {
          if (i === 45) return;
          expect(t.nonFinite).toBe(false);
          expectClose(t, { indices: codes.indices.subarray(codes.offsets[i], codes.offsets[i + 1]), values: codes.values.subarray(codes.offsets[i], codes.offsets[i + 1]) }, 1e-4, `token ${i}`);
        });
        expect(tokens[45]?.nonFinite).toBe(true);
        expect(tokens[45]?.indices).toHaveLength(0);
        // encoded on the GPU from ring slots, the prompt burst in batches (at most half the ring each)
        expect(calls.every((c) => c.gpu)).toBe(true);
        expect(calls.reduce((n, c) => n + c.tokens, 0)).toBe(60);
        expect(Math.max(...calls.map((c) => c.tokens))).toBeGreaterThan(1);
        expect(Math.max(...calls.map((c) => c.tokens))).toBeLessThanOrEqual(ringSlots / 2);
        expect(calls.length).toBeLessThan(60);
      } finally {
        await session.destroy();
        sae.destroy();
      }
    });
  });

  test('Session.open loads the SAE on WebGPU when an adapter exists, and it encodes like the CPU backend', async (ctx) => {
    if ((await nodeAdapter(ctx)) === undefined) return;
    const gpu = nodeGpu();
    expect(await chooseBackend({ dIn: 7168, dSae: 65536 }, { gpu })).toMatchObject({ backend: 'webgpu' });
    const TINY = new URL('../../demo/public/models/tiny-r1/sae/', import.meta.url);
    const acts = Array.from({ length: 12 }, (_, t) => gaussian(128, 50 + t, 4));
    const open = (backendGpu: GPU | undefined): Promise<Session> =>
      Session.open({ source: remoteTokenSource({ url: 'http://server.test/', fetch: scriptedFetch(128, 'f32', acts, 5), hook: { layer: 2 } }), sae: { source: TINY }, ...(backendGpu !== undefined ? { gpu: backendGpu } : {}) });
    const onGpu = await open(gpu);
    const onCpu = await open(undefined);
    try {
      expect(onGpu.sae?.backend).toBe('webgpu');
      expect(onCpu.sae?.backend).toBe('cpu');
      await onGpu.run({ messages: [], maxNewTokens: 7 });
      await onCpu.run({ messages: [], maxNewTokens: 7 });
      expect(onGpu.readouts.tokens).toHaveLength(12);
      onGpu.readouts.tokens.forEach((t, i) => expectClose(t, onCpu.readouts.tokens[i] as TokenReadout, 1e-4, `token ${i}`));
    } finally {
      await onGpu.destroy();
      await onCpu.destroy();
    }
  });
});
