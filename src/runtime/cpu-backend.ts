/** `backend: 'cpu'`: the CPU reference behind the `Sae` API (a fallback for small SAEs). */
import { ShapeMismatchError, UnsupportedError } from '../errors.js';
import { widenToF32 } from '../sae/dtype.js';
import type { SaeConfig } from '../sae/config.js';
import type { SparseCodes } from '../sae/codes.js';
import { decodeCodes, reconstructionMetrics, referenceEncode } from '../sae/reference/index.js';
import { decoderOf, type SaeWeights } from '../sae/weights.js';
import type { Reconstruction, SaeBackend, SaeInput } from './backend.js';

export class CpuBackend implements SaeBackend {
  readonly kind = 'cpu';
  constructor(
    readonly config: SaeConfig,
    readonly weights: SaeWeights,
  ) {}

  #cpuInput(x: SaeInput): Float32Array {
    if (!(x instanceof Float32Array)) {
      throw new UnsupportedError('The CPU backend takes a Float32Array; a GPUBuffer input needs backend: "webgpu".');
    }
    return x;
  }

  async encode(x: SaeInput, tokens: number): Promise<SparseCodes> {
    const { codes, transform } = referenceEncode(this.config, this.weights, this.#cpuInput(x), tokens);
    return withTransform(this.config, codes, transform);
  }

  async decode(codes: SparseCodes): Promise<Float32Array> {
    return decodeCodes(this.config, this.weights, codes, codes.inputTransform);
  }

  async reconstruct(x: SaeInput, tokens: number): Promise<Reconstruction> {
    const input = this.#cpuInput(x);
    const codes = await this.encode(input, tokens);
    const xHat = await this.decode(codes);
    return { codes, xHat, metrics: reconstructionMetrics(input, xHat, tokens, this.config.dIn) };
  }

  async decoderRows(features: readonly number[]): Promise<Float32Array[]> {
    const { dIn, dSae } = this.config;
    const m = decoderOf(this.config, this.weights);
    return features.map((f) => {
      if (!Number.isInteger(f) || f < 0 || f >= dSae) throw new ShapeMismatchError(`Feature ${f} is outside 0 … ${dSae - 1}.`);
      return Float32Array.from(widenToF32(m.data.subarray(f * dIn, (f + 1) * dIn), m.dtype));
    });
  }

  destroy(): void {}
}

/** Attaches the per-token inverse transform when the SAE normalises its input per token. */
export function withTransform(
  config: SaeConfig,
  codes: SparseCodes,
  transform: { outScale: Float32Array; outShift: Float32Array },
): SparseCodes {
  if (config.inputNorm === 'none') return codes;
  return { ...codes, inputTransform: { outScale: transform.outScale, outShift: transform.outShift } };
}
