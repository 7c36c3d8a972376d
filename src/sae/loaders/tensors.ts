/** Turning file tensors (safetensors / torch) into Loupe's feature-major weights. */
import { SaeConfigError, ShapeMismatchError } from '../../errors.js';
import type { SafetensorsTensor } from '../../formats/safetensors.js';
import { widenToF32, type WeightDtype } from '../dtype.js';
import type { WeightMatrix } from '../weights.js';

export type Tensors = Record<string, SafetensorsTensor>;

export function tensor(tensors: Tensors, name: string, format: string): SafetensorsTensor {
  const t = tensors[name];
  if (t === undefined) {
    throw new SaeConfigError(`A ${format} SAE needs the tensor "${name}"; the file has: ${Object.keys(tensors).join(', ') || 'none'}.`);
  }
  return t;
}

export function weightDtypeOf(t: SafetensorsTensor, name: string): WeightDtype {
  if (t.dtype === 'F32') return 'f32';
  if (t.dtype === 'F16') return 'f16';
  if (t.dtype === 'BF16') return 'bf16';
  throw new ShapeMismatchError(`Tensor "${name}" is ${t.dtype}; SAE weights must be F32, F16 or BF16.`);
}

function expectShape(t: SafetensorsTensor, name: string, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new ShapeMismatchError(`Tensor "${name}" has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}].`);
  }
}

/** A [dSae][dIn] matrix stored as is (feature-major already). */
export function rowsMatrix(t: SafetensorsTensor, name: string, dSae: number, dIn: number): WeightMatrix {
  expectShape(t, name, [dSae, dIn]);
  return { dtype: weightDtypeOf(t, name), data: t.data as Float32Array | Uint16Array };
}

/** A [dIn][dSae] matrix (SAELens W_enc, Goodfire W) transposed once to [dSae][dIn]. */
export function transposedMatrix(t: SafetensorsTensor, name: string, dIn: number, dSae: number): WeightMatrix {
  expectShape(t, name, [dIn, dSae]);
  const dtype = weightDtypeOf(t, name);
  const src = t.data as Float32Array | Uint16Array;
  const out = dtype === 'f32' ? new Float32Array(dIn * dSae) : new Uint16Array(dIn * dSae);
  // blocked transpose: both sides stay in cache for 64 × 64 tiles
  const B = 64;
  for (let i0 = 0; i0 < dIn; i0 += B) {
    for (let f0 = 0; f0 < dSae; f0 += B) {
      const iEnd = Math.min(i0 + B, dIn);
      const fEnd = Math.min(f0 + B, dSae);
      for (let i = i0; i < iEnd; i++) for (let f = f0; f < fEnd; f++) out[f * dIn + i] = src[i * dSae + f] ?? 0;
    }
  }
  return { dtype, data: out };
}

/** A bias or threshold vector widened to f32. */
export function vector(t: SafetensorsTensor, name: string, length: number): Float32Array {
  expectShape(t, name, [length]);
  const data = t.data as Float32Array | Uint16Array;
  const f = widenToF32(data, weightDtypeOf(t, name));
  // widenToF32 returns the same array for f32: copy so the weights never alias the file buffer twice
  return f === data ? Float32Array.from(f) : f;
}
