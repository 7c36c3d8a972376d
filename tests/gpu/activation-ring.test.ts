/**
 * The GPU side of streamed activations: frames written into the ring in their wire dtype and
 * widened by shaders/widen_activations.wgsl must equal the CPU widening of the same bytes
 * (f32 exactly, f16 and bf16 bit-exactly), across the ring's wrap-around and for odd dIn.
 */
import { describe, expect, test } from 'vitest';
import { activationToF32, type WireDtype } from '../../src/sources/frames.js';
import { ActivationRing, ActivationWidener } from '../../src/sources/activation-ring.js';
import { encodeActivation } from '../helpers/loupe-frames.js';
import { withGpu } from '../helpers/gpu.js';
import { gaussian } from '../helpers/random.js';
import { readF32 } from '../helpers/read-buffer.js';


describe('ActivationRing', () => {
  test.for([
    { dtype: 'f32' as WireDtype, dIn: 7168 },
    { dtype: 'bf16' as WireDtype, dIn: 7168 },
    { dtype: 'f16' as WireDtype, dIn: 1536 },
    { dtype: 'bf16' as WireDtype, dIn: 37 },
    { dtype: 'f16' as WireDtype, dIn: 37 },
  ])('$dtype dIn=$dIn: widened rows equal the CPU widening, across the wrap', async ({ dtype, dIn }, ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const slots = 5;
      const ring = new ActivationRing(device, dIn, dtype, slots);
      try {
        const frames = Array.from({ length: 8 }, (_, t) => encodeActivation(gaussian(dIn, 1000 + t, 3), dtype));
        for (const f of frames) ring.write(f);
        // slots now hold tokens 3..7; tokens 5,6,7 sit in slots 0,1,2 and 3,4 in slots 3,4
        const out = await readF32(device, ring.widen(3, 5), 5 * dIn * 4);
        for (let t = 0; t < 5; t++) {
          const frame = frames[3 + t];
          if (frame === undefined) throw new Error('frame');
          const want = activationToF32(frame, dtype, dIn);
          expect(Array.from(out.subarray(t * dIn, (t + 1) * dIn))).toEqual(Array.from(want));
        }
      } finally {
        ring.destroy();
      }
    });
  });
});

describe('ActivationWidener (an fp16 model\'s hook buffer → f32 rows, on the GPU)', () => {
  test.for([
    { dtype: 'f16' as WireDtype, dIn: 1536, tokens: 9 },
    { dtype: 'bf16' as WireDtype, dIn: 64, tokens: 3 },
    { dtype: 'f32' as WireDtype, dIn: 64, tokens: 2 },
  ])('$dtype [$tokens x $dIn] equals the CPU widening', async ({ dtype, dIn, tokens }, ctx) => {
    await withGpu(ctx, {}, async ({ device }) => {
      const rows = Array.from({ length: tokens }, (_, t) => encodeActivation(gaussian(dIn, 500 + t, 2), dtype));
      const bytes = rows.reduce((a, r) => a + r.byteLength, 0);
      // a buffer owned by "someone else" (onnxruntime), holding [tokens][dIn] contiguously
      const src = device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      let at = 0;
      for (const r of rows) {
        device.queue.writeBuffer(src, at, r as Uint8Array<ArrayBuffer>);
        at += r.byteLength;
      }
      const widener = new ActivationWidener(device);
      try {
        const out = await readF32(device, widener.widen(src, dtype, dIn, tokens), tokens * dIn * 4);
        rows.forEach((r, t) => expect(Array.from(out.subarray(t * dIn, (t + 1) * dIn))).toEqual(Array.from(activationToF32(r, dtype, dIn))));
      } finally {
        widener.destroy();
        src.destroy();
      }
    });
  });
});
