/**
 * Loupe's side of the benchmark: an SAE with random weights of the given shape and dtype on the
 * WebGPU backend; end-to-end encode (upload x → kernels → readback of the codes), per-pass
 * kernel times, and sparse decode.
 */
import { Sae } from '../src/runtime/sae.js';
import type { WeightDtype } from '../src/sae/dtype.js';
import type { SparseCodes } from '../src/sae/codes.js';
import type { SaeWeights } from '../src/sae/weights.js';
import { time, type Timing } from './stats.js';

export interface Shape {
  readonly name: string;
  readonly dIn: number;
  readonly dSae: number;
  readonly k: number;
}

/** Fast seeded random weights: f32 values or 16-bit bits with a narrow exponent range. */
export function randomWeights(shape: Shape, dtype: WeightDtype, seed: number): { f32: Float32Array; stored: Float32Array | Uint16Array } {
  const n = shape.dIn * shape.dSae;
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const f32 = new Float32Array(n);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    const u = next();
    // sign, exponent 118..121 (|w| in [2^-9, 2^-5)), 7 random mantissa bits: exact in bf16 AND f16
    u32[i] = ((u & 0x8000) << 16) | ((118 + ((u >>> 8) & 3)) << 23) | ((u & 0x7f) << 16);
  }
  if (dtype === 'f32') return { f32, stored: f32 };
  const stored = new Uint16Array(n);
  if (dtype === 'bf16') {
    for (let i = 0; i < n; i++) stored[i] = (u32[i] ?? 0) >>> 16;
  } else {
    for (let i = 0; i < n; i++) {
      const u = u32[i] ?? 0;
      // re-bias the exponent 127 → 15 and keep the top 10 mantissa bits (exact for these values)
      stored[i] = ((u >>> 16) & 0x8000) | ((((u >>> 23) & 0xff) - 112) << 10) | ((u >>> 13) & 0x3ff);
    }
  }
  return { f32, stored };
}

export function randomInput(tokens: number, dIn: number, seed: number): Float32Array {
  const x = new Float32Array(tokens * dIn);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < x.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    x[i] = ((s >>> 0) / 4294967296 - 0.5) * 4;
  }
  return x;
}

export interface LoupeResult {
  readonly encode: Timing;
  readonly decode: Timing;
  readonly kernelEncodeMs: number;
  readonly kernelSelectMs: number;
  readonly codes: SparseCodes;
}

export async function createBenchSae(
  shape: Shape,
  dtype: WeightDtype,
  stored: Float32Array | Uint16Array,
  device: GPUDevice,
): Promise<Sae> {
  const weights: SaeWeights = {
    W_enc: { dtype, data: stored },
    W_dec: { dtype, data: stored },
    b_enc: new Float32Array(shape.dSae),
    b_dec: new Float32Array(shape.dIn),
  };
  return Sae.create(
    { config: { architecture: 'topk', dIn: shape.dIn, dSae: shape.dSae, k: shape.k, weightDtype: dtype }, weights },
    { backend: 'webgpu', device },
  );
}

export async function benchLoupe(sae: Sae, x: Float32Array, tokens: number, runs: number): Promise<LoupeResult> {
  const encode = await time(() => sae.encode(x, { tokens }), { warmup: 1, runs });
  const codes = await sae.encode(x, { tokens });
  const decode = await time(() => sae.decode(codes), { warmup: 1, runs });
  const prof = await sae.profile(tokens, Math.max(1, Math.min(runs, 3)));
  return { encode, decode, kernelEncodeMs: prof?.encodeMs ?? NaN, kernelSelectMs: prof?.selectMs ?? NaN, codes };
}
