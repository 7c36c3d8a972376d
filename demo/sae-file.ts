/**
 * Reads an SAE stored in Loupe's own safetensors layout — the layout of the golden fixtures
 * (docs/golden-fixtures.md): feature-major `encoder` [dSae, dIn], `decoder` (absent when tied),
 * `b_enc`, `b_dec`, optional `threshold`, all in the weight dtype, and `__metadata__.config` =
 * JSON of a `SaeConfig`. Fixture files also carry an input `x` [T, dIn] and expected outputs.
 *
 * Used by the demo and by the browser parity page. (The public API has no loader for this
 * layout yet; when `loadSae` lands this shrinks to a call of it.)
 */
import {
  bf16ToF32,
  f16ToF32,
  readSafetensors,
  type SaeConfigInput,
  type SaeWeights,
  type SafetensorsTensor,
  type WeightDtype,
  type WeightMatrix,
} from '../src/index.js';

export interface SaeFile {
  readonly config: SaeConfigInput & { readonly weightDtype: WeightDtype };
  readonly weights: SaeWeights;
  /** The fixture's input tokens [T][dIn], when the file has them. */
  readonly x: Float32Array | undefined;
  readonly tokens: number;
  /** `__metadata__.case` of a golden fixture (parsed), or undefined. */
  readonly fixtureCase: Record<string, unknown> | undefined;
  /** Every tensor in the file, by name (expected outputs included). */
  readonly tensors: Record<string, SafetensorsTensor>;
}

const DTYPE_OF: Partial<Record<SafetensorsTensor['dtype'], WeightDtype>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function tensor(tensors: Record<string, SafetensorsTensor>, name: string, shape: readonly number[]): SafetensorsTensor {
  const t = tensors[name];
  if (t === undefined) throw new Error(`The SAE file has no tensor "${name}" (expected shape [${shape.join(', ')}]).`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`Tensor "${name}" has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}].`);
  }
  return t;
}

function matrix(t: SafetensorsTensor, name: string, dtype: WeightDtype): WeightMatrix {
  if (DTYPE_OF[t.dtype] !== dtype) throw new Error(`Tensor "${name}" is ${t.dtype}, but the config says weightDtype ${dtype}.`);
  if (dtype === 'f32') {
    if (!(t.data instanceof Float32Array)) throw new Error(`Tensor "${name}" is F32 but was not read as a Float32Array.`);
    return { dtype, data: t.data };
  }
  if (!(t.data instanceof Uint16Array)) throw new Error(`Tensor "${name}" is ${t.dtype} but was not read as raw 16-bit values.`);
  return { dtype, data: t.data };
}

/** Any float tensor widened to f32 (biases and thresholds). */
export function toF32(t: SafetensorsTensor, name: string): Float32Array {
  if (t.dtype === 'F32' && t.data instanceof Float32Array) return t.data;
  if ((t.dtype === 'F16' || t.dtype === 'BF16') && t.data instanceof Uint16Array) {
    const widen = t.dtype === 'F16' ? f16ToF32 : bf16ToF32;
    const out = new Float32Array(t.data.length);
    for (let i = 0; i < out.length; i++) out[i] = widen(t.data[i] ?? 0);
    return out;
  }
  throw new Error(`Tensor "${name}" is ${t.dtype}; expected F32, F16 or BF16.`);
}

/** Parses the file and checks every tensor the config needs against its shape and dtype. */
export function readSaeFile(bytes: ArrayBuffer | Uint8Array): SaeFile {
  const { tensors, metadata } = readSafetensors(bytes);
  const rawConfig = metadata['config'];
  if (rawConfig === undefined) throw new Error('The safetensors file has no __metadata__.config; it is not in Loupe\'s SAE layout.');
  const parsed: unknown = JSON.parse(rawConfig);
  if (!isRecord(parsed)) throw new Error('__metadata__.config must be a JSON object.');
  // JSON null means "not set" (e.g. k of a ReLU SAE).
  const config = Object.fromEntries(Object.entries(parsed).filter(([, v]) => v !== null)) as unknown as SaeFile['config'];
  const { dIn, dSae } = config;
  const weightDtype = config.weightDtype ?? 'f32';
  const weights: SaeWeights = {
    W_enc: matrix(tensor(tensors, 'encoder', [dSae, dIn]), 'encoder', weightDtype),
    ...(config.tied === true ? {} : { W_dec: matrix(tensor(tensors, 'decoder', [dSae, dIn]), 'decoder', weightDtype) }),
    b_enc: toF32(tensor(tensors, 'b_enc', [dSae]), 'b_enc'),
    b_dec: toF32(tensor(tensors, 'b_dec', [dIn]), 'b_dec'),
    ...(tensors['threshold'] !== undefined ? { threshold: toF32(tensor(tensors, 'threshold', [dSae]), 'threshold') } : {}),
  };
  const xt = tensors['x'];
  const x = xt !== undefined ? toF32(xt, 'x') : undefined;
  const rawCase = metadata['case'];
  const fixtureCase: unknown = rawCase !== undefined ? JSON.parse(rawCase) : undefined;
  return {
    config: { ...config, weightDtype },
    weights,
    x,
    tokens: x !== undefined ? x.length / dIn : 0,
    fixtureCase: isRecord(fixtureCase) ? fixtureCase : undefined,
    tensors,
  };
}
