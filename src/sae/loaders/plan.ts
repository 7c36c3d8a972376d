/**
 * A load plan: what a format adapter decides from the config file and the tensor headers alone,
 * before any weight byte is read. Knowing where each tensor goes up front is what lets the
 * loader stream an 822 MB checkpoint onto the GPU chunk by chunk instead of holding it whole:
 * the two big matrices are routed to GPU (or CPU) targets as their bytes arrive, and only the
 * small tensors (biases, thresholds, scalars) are kept in memory until `finish`.
 */
import { SaeConfigError, ShapeMismatchError } from '../../errors.js';
import type { SafetensorsDtype } from '../../formats/safetensors.js';
import type { SaeConfigInput } from '../config.js';
import type { WeightDtype } from '../dtype.js';

/** A tensor as its file header describes it (no data). */
export interface TensorInfo {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
}

export type TensorHeaders = Readonly<Record<string, TensorInfo>>;

/**
 * How a file stores a weight matrix: `feature-major` is Loupe's own [dSae][dIn] (sparsify,
 * SAELens W_dec, torch Linear encoder weights); `input-major` is [dIn][dSae] (SAELens W_enc,
 * Goodfire W, torch Linear decoder weights) and is transposed while loading.
 */
export type MatrixLayout = 'feature-major' | 'input-major';

export interface MatrixRef {
  readonly tensor: string;
  readonly layout: MatrixLayout;
}

/** The small tensors, widened to f32, by file name. */
export type VectorValues = ReadonlyMap<string, Float32Array>;

export interface FinishedPlan {
  /** Everything but `weightDtype`, which the loader sets (the file's, or the one asked for). */
  readonly config: Omit<SaeConfigInput, 'weightDtype'>;
  readonly b_enc: Float32Array;
  readonly b_dec: Float32Array;
  readonly threshold?: Float32Array;
}

export interface SaeLoadPlan {
  readonly format: SaeFormatName;
  readonly dIn: number;
  readonly dSae: number;
  readonly W_enc: MatrixRef;
  /** Omitted for tied SAEs (the decoder is W_enc). */
  readonly W_dec?: MatrixRef;
  /** Tensors read whole into memory (biases, thresholds, scalar norms). */
  readonly vectors: readonly string[];
  /** Builds the config and vectors once the small tensors have arrived. */
  finish(values: VectorValues): FinishedPlan;
}

export type SaeFormatName = 'goodfire-r1' | 'goodfire-llama' | 'encoder-decoder' | 'saelens' | 'sparsify' | 'llama-scope';

export const SAE_FORMATS: readonly SaeFormatName[] = ['goodfire-r1', 'goodfire-llama', 'encoder-decoder', 'saelens', 'sparsify', 'llama-scope'];

/** The JSON config that sits next to the weights (cfg.json or config.json), if any. */
export type ConfigJson = Readonly<Record<string, unknown>> | undefined;

export interface PlanContext {
  /** The folder the SAE was found in (a sparsify hookpoint such as 'layers.3'). */
  readonly folder?: string;
}

export interface SaeFormatAdapter {
  readonly format: SaeFormatName;
  /** Whether the tensors (and config) look like this format; used when no format is forced. */
  matches(headers: TensorHeaders, cfg: ConfigJson): boolean;
  plan(headers: TensorHeaders, cfg: ConfigJson, context: PlanContext): SaeLoadPlan;
}

// ---- helpers shared by the adapters ----

export function header(headers: TensorHeaders, name: string, format: string): TensorInfo {
  const t = headers[name];
  if (t === undefined) {
    throw new SaeConfigError(`A ${format} SAE needs the tensor "${name}"; the file has: ${Object.keys(headers).join(', ') || 'none'}.`);
  }
  return t;
}

/** The dtype of a weight matrix, or a named error for integer / f64 tensors. */
export function matrixDtype(t: TensorInfo, name: string): WeightDtype {
  if (t.dtype === 'F32') return 'f32';
  if (t.dtype === 'F16') return 'f16';
  if (t.dtype === 'BF16') return 'bf16';
  throw new ShapeMismatchError(`Tensor "${name}" is ${t.dtype}; SAE weight matrices must be F32, F16 or BF16.`);
}

/** A 2-D tensor's [rows, cols], or a named error naming its real shape. */
export function dims2(t: TensorInfo, name: string, expect: string): [number, number] {
  const [a, b] = t.shape;
  if (t.shape.length !== 2 || a === undefined || b === undefined) {
    throw new ShapeMismatchError(`Tensor "${name}" has shape [${t.shape.join(', ')}]; expected a ${expect} matrix.`);
  }
  return [a, b];
}

/** Checks a matrix header against [dSae, dIn] (feature-major) or [dIn, dSae] (input-major). */
export function matrix(headers: TensorHeaders, name: string, layout: MatrixLayout, dSae: number, dIn: number, format: string): MatrixRef {
  const t = header(headers, name, format);
  matrixDtype(t, name);
  const want = layout === 'feature-major' ? [dSae, dIn] : [dIn, dSae];
  if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1]) {
    throw new ShapeMismatchError(
      `Tensor "${name}" has shape [${t.shape.join(', ')}], but the ${format} config (dIn ${dIn}, dSae ${dSae}) needs [${want.join(', ')}].`,
    );
  }
  return { tensor: name, layout };
}

/** A vector's values, checked against its expected length. */
export function vectorOf(values: VectorValues, name: string, length: number, dimName: string): Float32Array {
  const v = values.get(name);
  if (v === undefined) throw new SaeConfigError(`The tensor "${name}" was not read; the file is incomplete.`);
  if (v.length !== length) throw new ShapeMismatchError(`Tensor "${name}" has ${v.length} values, but ${dimName} is ${length}.`);
  return v;
}

/** A checked vector header (1-D, of the given length). */
export function vectorHeader(headers: TensorHeaders, name: string, length: number, dimName: string, format: string): string {
  const t = header(headers, name, format);
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (n !== length) throw new ShapeMismatchError(`Tensor "${name}" has shape [${t.shape.join(', ')}], but ${dimName} is ${length}.`);
  return name;
}

export function num(cfg: ConfigJson, key: string, file: string): number {
  const v = cfg?.[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new SaeConfigError(`${file} needs a number "${key}", got ${JSON.stringify(v)}.`);
  return v;
}
