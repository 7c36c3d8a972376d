/**
 * Encode kernels, all writing pre-activations [T][dSae] (JumpReLU fused), one dispatch per
 * weight shard:
 * - `gemv-subgroup` (shaders/encode_gemv_subgroup.wgsl): one subgroup per row, tokens in
 *   blocks of TB — the streaming path when the device has `subgroups`;
 * - `gemv` (shaders/encode_gemv.wgsl): one workgroup per row, barrier reduction — without subgroups;
 * - `gemm` (shaders/encode_gemm.wgsl): (16·TM) × (64 or 128) workgroup tiles for many tokens.
 */
import type { GpuContext } from '../device.js';
import { encodeIo, reduction, weightAccess } from '../shaders.js';
import { buildKernel } from './simple.js';
import type { ShardedMatrix } from '../sharded-weights.js';

export type EncodeVariant = 'gemv-subgroup' | 'gemv' | 'gemm';

/** Params struct of both encode kernels (8 × u32). */
export const ENCODE_PARAMS_BYTES = 32;

export interface EncodeKernelOptions {
  readonly variant: EncodeVariant;
  readonly jumprelu: boolean;
  /** GEMV threads per row (`gemv`) or per workgroup (`gemv-subgroup`). */
  readonly workgroupSize?: number;
  /** Tokens per block of `gemv-subgroup`: 1, 2, 4 or 8. */
  readonly tokenBlock?: 1 | 2 | 4 | 8;
  /** Token rows per thread of `gemm` (tile of 16·TM tokens): 2 or 4. */
  readonly tokenRows?: 2 | 4;
  /** Features per `gemm` tile: 64, or 128 (needs gemmWorkgroupBytes(TM, 128) of workgroup memory). */
  readonly featureTile?: 64 | 128;
}

/** Workgroup memory of a `gemm` tile: 32-float slices of 16·TM tokens and `featureTile` rows. */
export function gemmWorkgroupBytes(tokenRows: 2 | 4, featureTile: 64 | 128): number {
  return (16 * tokenRows + featureTile) * 8 * 16;
}

/** Picks the token block of the subgroup GEMV for T tokens. */
export function tokenBlockFor(tokens: number): 1 | 2 | 4 | 8 {
  return tokens <= 1 ? 1 : tokens === 2 ? 2 : tokens <= 4 ? 4 : 8;
}

const LAYOUT = ['uniform', 'read', 'read', 'read', 'read', 'rw'] as const;

export class EncodeKernel {
  readonly layout: GPUBindGroupLayout;
  readonly pipeline: GPUComputePipeline;
  readonly variant: EncodeVariant;
  readonly #maxGrid: number;
  /** Rows per workgroup of `gemv-subgroup`. */
  readonly #rowsPerWorkgroup: number;
  /** Tokens per tile of `gemm`. */
  #tokensPerTile = 32;

  constructor(ctx: GpuContext, weights: Pick<ShardedMatrix, 'dtype'>, options: EncodeKernelOptions) {
    const caps = ctx.capabilities;
    this.variant = options.variant;
    this.#maxGrid = caps.maxWorkgroupsPerDimension;
    const features = { f16: caps.nativeF16Weights && weights.dtype === 'f16', subgroups: caps.subgroups };
    const act = options.jumprelu ? 1 : 0;
    const access = weightAccess(weights.dtype, features);
    let built;
    if (options.variant === 'gemv-subgroup') {
      const wg = options.workgroupSize ?? 64;
      // every subgroup size the adapter may pick divides the workgroup into ≥ 1 subgroups
      this.#rowsPerWorkgroup = Math.max(1, Math.floor(wg / Math.max(1, caps.subgroupMinSize)));
      const constants = { WG: wg, ROWS_PER_WG: this.#rowsPerWorkgroup, TB: options.tokenBlock ?? 1, ACT: act };
      built = buildKernel(ctx, 'encodeGemvSubgroup', weights.dtype, LAYOUT, [encodeIo, access], { f16: features.f16, subgroups: true }, constants);
    } else if (options.variant === 'gemv') {
      this.#rowsPerWorkgroup = 1;
      const constants = { WG: options.workgroupSize ?? 64, ACT: act };
      built = buildKernel(ctx, 'encodeGemv', weights.dtype, LAYOUT, [encodeIo, access, reduction(features)], features, constants);
    } else {
      this.#rowsPerWorkgroup = options.featureTile ?? 64;
      this.#tokensPerTile = 16 * (options.tokenRows ?? 2);
      const constants = { ACT: act, TM: options.tokenRows ?? 2, BN: options.featureTile ?? 64 };
      built = buildKernel(ctx, 'encodeGemm', weights.dtype, LAYOUT, [encodeIo, access], { f16: features.f16 }, constants);
    }
    this.layout = built.layout;
    this.pipeline = built.pipeline;
  }

  /** Workgroup grid for a shard of `rows` rows and `tokens` tokens. */
  grid(rows: number, tokens: number): { x: number; y: number } {
    if (this.variant === 'gemm') return { x: Math.ceil(rows / this.#rowsPerWorkgroup), y: Math.ceil(tokens / this.#tokensPerTile) };
    const blocks = Math.ceil(rows / this.#rowsPerWorkgroup);
    const x = Math.min(blocks, this.#maxGrid);
    return { x, y: Math.ceil(blocks / x) };
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
