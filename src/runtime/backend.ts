/**
 * What an `Sae` backend does. The CPU reference and the WebGPU kernels implement the same
 * contract, so the public `Sae` is one class whatever runs underneath.
 */
import type { SparseCodes } from '../sae/codes.js';
import type { ReconstructionMetrics } from '../sae/reference/index.js';

/** Input vectors: f32 [T][dIn] on the CPU, or (WebGPU backend, same device) a storage buffer. */
export type SaeInput = Float32Array | GPUBuffer;

export interface Reconstruction {
  readonly codes: SparseCodes;
  readonly xHat: Float32Array;
  readonly metrics: ReconstructionMetrics;
}

export interface SaeBackend {
  readonly kind: 'webgpu' | 'cpu';
  encode(x: SaeInput, tokens: number): Promise<SparseCodes>;
  decode(codes: SparseCodes): Promise<Float32Array>;
  reconstruct(x: SaeInput, tokens: number): Promise<Reconstruction>;
  /** Decoder rows W_dec[f] as f32 (length dIn): steering directions. */
  decoderRows(features: readonly number[]): Promise<Float32Array[]>;
  destroy(): void;
}
