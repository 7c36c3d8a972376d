/**
 * Carries out a load plan on tensors already in memory (a parsed safetensors or torch file):
 * the reference for what the streaming loader must produce, and the path for callers that
 * already hold the tensors.
 */
import type { SafetensorsTensor } from '../../formats/safetensors.js';
import { resolveSaeConfig, type SaeConfig } from '../config.js';
import { widenToF32, type WeightDtype } from '../dtype.js';
import type { SaeWeights, WeightMatrix } from '../weights.js';
import { convertWeights } from './convert.js';
import { matrixDtype, type MatrixRef, type SaeLoadPlan, type TensorHeaders } from './plan.js';

export function headersOf(tensors: Readonly<Record<string, SafetensorsTensor>>): TensorHeaders {
  return Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape }]));
}

function matrixOf(tensors: Readonly<Record<string, SafetensorsTensor>>, ref: MatrixRef, dSae: number, dIn: number, dtype: WeightDtype): WeightMatrix {
  const t = tensors[ref.tensor];
  if (t === undefined) throw new Error(`plan names missing tensor ${ref.tensor}`);
  const from = matrixDtype(t, ref.tensor);
  const src = convertWeights(t.data as Float32Array | Uint16Array, from, dtype);
  if (ref.layout === 'feature-major') return { dtype, data: src === t.data ? src.slice() : src };
  const out = dtype === 'f32' ? new Float32Array(dIn * dSae) : new Uint16Array(dIn * dSae);
  const B = 64; // blocked transpose: both sides stay in cache
  for (let i0 = 0; i0 < dIn; i0 += B) {
    for (let f0 = 0; f0 < dSae; f0 += B) {
      const iEnd = Math.min(i0 + B, dIn);
      const fEnd = Math.min(f0 + B, dSae);
      for (let i = i0; i < iEnd; i++) for (let f = f0; f < fEnd; f++) out[f * dIn + i] = src[i * dSae + f] ?? 0;
    }
  }
  return { dtype, data: out };
}

/** f32 values of any float tensor (vectors and scalars). */
export function floatValues(t: SafetensorsTensor, name: string): Float32Array {
  const data = t.data as Float32Array | Uint16Array;
  return Float32Array.from(widenToF32(data, matrixDtype(t, name)));
}

/** Runs `plan` on in-memory tensors; `weightDtype` 'auto' keeps W_enc's dtype. */
export function planToWeights(
  plan: SaeLoadPlan,
  tensors: Readonly<Record<string, SafetensorsTensor>>,
  weightDtype: WeightDtype | 'auto' = 'auto',
): { config: SaeConfig; weights: SaeWeights } {
  const encT = tensors[plan.W_enc.tensor];
  if (encT === undefined) throw new Error(`plan names missing tensor ${plan.W_enc.tensor}`);
  const dtype = weightDtype === 'auto' ? matrixDtype(encT, plan.W_enc.tensor) : weightDtype;
  const values = new Map<string, Float32Array>();
  for (const name of plan.vectors) {
    const t = tensors[name];
    if (t !== undefined) values.set(name, floatValues(t, name));
  }
  const done = plan.finish(values);
  const config = resolveSaeConfig({ ...done.config, weightDtype: dtype });
  const weights: SaeWeights = {
    W_enc: matrixOf(tensors, plan.W_enc, plan.dSae, plan.dIn, dtype),
    ...(plan.W_dec !== undefined ? { W_dec: matrixOf(tensors, plan.W_dec, plan.dSae, plan.dIn, dtype) } : {}),
    b_enc: done.b_enc,
    b_dec: done.b_dec,
    ...(done.threshold !== undefined ? { threshold: done.threshold } : {}),
  };
  return { config, weights };
}
