/**
 * Encode kernels: GEMV (shaders/encode_gemv.wgsl) for few tokens, tiled GEMM
 * (shaders/encode_gemm.wgsl) for many. Both write pre-activations [T][dSae] (JumpReLU fused),
 * one dispatch per weight shard.
 */
import type { GpuContext } from '../device.js';
import { reduction, weightAccess } from '../shaders.js';
import { buildKernel } from './simple.js';
import type { ShardedMatrix } from '../sharded-weights.js';

export type EncodeVariant = 'gemv' | 'gemm';

/** Params struct of both encode kernels (8 × u32). */
export const ENCODE_PARAMS_BYTES = 32;

export interface EncodeKernelOptions {
  readonly variant: EncodeVariant;
  readonly jumprelu: boolean;
  /** GEMV threads per row. */
  readonly workgroupSize?: number;
}

export class EncodeKernel {
  readonly layout: GPUBindGroupLayout;
  readonly pipeline: GPUComputePipeline;
  readonly variant: EncodeVariant;
  readonly #maxGrid: number;

  constructor(ctx: GpuContext, weights: Pick<ShardedMatrix, 'dtype'>, options: EncodeKernelOptions) {
    const caps = ctx.capabilities;
    this.variant = options.variant;
    this.#maxGrid = caps.maxWorkgroupsPerDimension;
    const features = { f16: caps.f16 && weights.dtype === 'f16', subgroups: caps.subgroups };
    const wg = options.workgroupSize ?? 64;
    const act = options.jumprelu ? 1 : 0;
    const libs = options.variant === 'gemv' ? [weightAccess(weights.dtype, features), reduction(features)] : [weightAccess(weights.dtype, features)];
    const enables = { f16: features.f16, subgroups: options.variant === 'gemv' && features.subgroups };
    const kernel = options.variant === 'gemv' ? 'encodeGemv' : 'encodeGemm';
    const constants: Record<string, number> = options.variant === 'gemv' ? { WG: wg, ACT: act } : { ACT: act };
    const built = buildKernel(ctx, kernel, weights.dtype, ['uniform', 'read', 'read', 'read', 'read', 'rw'], libs, enables, constants);
    this.layout = built.layout;
    this.pipeline = built.pipeline;
  }

  /** Workgroup grid for a shard of `rows` rows and `tokens` tokens. */
  grid(rows: number, tokens: number): { x: number; y: number } {
    if (this.variant === 'gemm') return { x: Math.ceil(rows / 64), y: Math.ceil(tokens / 32) };
    const x = Math.min(rows, this.#maxGrid);
    return { x, y: Math.ceil(rows / x) };
  }

  /** Params for one shard dispatch. */
  params(matrix: ShardedMatrix, shardIndex: number, dSae: number, tokens: number): Uint32Array {
    const shard = matrix.shards[shardIndex];
    const rows = shard?.rows ?? 0;
    const { x } = this.grid(rows, tokens);
    return new Uint32Array([matrix.dInPad / 8, shard?.rowStart ?? 0, rows, dSae, tokens, x, 0, 0]);
  }

  record(pass: GPUComputePassEncoder, bindGroup: GPUBindGroup, rows: number, tokens: number): void {
    const { x, y } = this.grid(rows, tokens);
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y);
  }
}
