/**
 * The public `Sae`: one API over the WebGPU kernels and the CPU reference.
 *
 *   const sae = await createSae({ config, weights }, { backend: 'auto' });
 *   const codes = await sae.encode(x, { tokens: T });   // SparseCodes (CSR)
 *   const xHat = await sae.decode(codes);
 *   sae.destroy();
 */
import { DestroyedError, GpuUnavailableError, ShapeMismatchError } from '../errors.js';
import { resolveSaeConfig, type SaeConfig, type SaeConfigInput } from '../sae/config.js';
import type { SparseCodes } from '../sae/codes.js';
import { checkSaeWeights, type SaeWeights } from '../sae/weights.js';
import { GpuContext, type GpuContextOptions } from '../gpu/device.js';
import type { Reconstruction, SaeBackend, SaeInput } from './backend.js';
import { CpuBackend } from './cpu-backend.js';
import { GpuBackend, type GpuBackendOptions } from './gpu-backend.js';

export type BackendChoice = 'webgpu' | 'cpu' | 'auto';

export interface SaeOptions extends GpuContextOptions, GpuBackendOptions {
  /** 'auto' (default): WebGPU when an adapter exists, else the CPU reference. */
  readonly backend?: BackendChoice;
  /**
   * Run one zero-vector encode and decode inside `create` (default true), so shader compilation
   * (2–3 s on SwiftShader) happens while loading, not on the first streamed token.
   */
  readonly warmup?: boolean;
}

export interface EncodeOptions {
  /** Number of tokens T in x (default: x.length / dIn). */
  readonly tokens?: number;
}

export class Sae {
  readonly config: SaeConfig;
  readonly backend: 'webgpu' | 'cpu';
  /** Adapter description when on WebGPU (for the demo and benchmark records). */
  readonly adapter: string | undefined;
  readonly #impl: SaeBackend;
  readonly #ctx: GpuContext | undefined;
  #destroyed = false;

  private constructor(config: SaeConfig, impl: SaeBackend, ctx: GpuContext | undefined) {
    this.config = config;
    this.#impl = impl;
    this.#ctx = ctx;
    this.backend = impl.kind;
    this.adapter = ctx?.adapterDescription;
  }

  /** Builds an SAE from in-memory weights in Loupe's feature-major layout (see `SaeWeights`). */
  static async create(source: { config: SaeConfigInput | SaeConfig; weights: SaeWeights }, options: SaeOptions = {}): Promise<Sae> {
    const config = resolveSaeConfig(source.config);
    checkSaeWeights(config, source.weights);
    const choice = options.backend ?? 'auto';
    if (choice === 'cpu') return new Sae(config, new CpuBackend(config, source.weights), undefined);
    let ctx: GpuContext;
    try {
      ctx = await GpuContext.create(options);
    } catch (err) {
      if (choice === 'auto' && err instanceof GpuUnavailableError) {
        return new Sae(config, new CpuBackend(config, source.weights), undefined);
      }
      throw err;
    }
    let backend: GpuBackend | undefined;
    try {
      backend = new GpuBackend(ctx, config, source.weights, options);
      if (options.warmup ?? true) await backend.decode(await backend.encode(new Float32Array(config.dIn), 1));
      return new Sae(config, backend, ctx);
    } catch (err) {
      backend?.destroy();
      ctx.release();
      throw err;
    }
  }

  /**
   * Wraps a backend whose weights are already in place (streamed by `loadSae`). Takes over
   * `ctx`: released on destroy, or here if the warmup fails.
   * @internal
   */
  static async fromBackend(config: SaeConfig, impl: CpuBackend | GpuBackend, ctx: GpuContext | undefined, warmup: boolean): Promise<Sae> {
    try {
      if (warmup && impl instanceof GpuBackend) await impl.decode(await impl.encode(new Float32Array(config.dIn), 1));
      return new Sae(config, impl, ctx);
    } catch (err) {
      impl.destroy();
      ctx?.release();
      throw err;
    }
  }

  #tokens(x: SaeInput, options: EncodeOptions): number {
    const { dIn } = this.config;
    if (options.tokens !== undefined) {
      if (!Number.isInteger(options.tokens) || options.tokens < 0) {
        throw new ShapeMismatchError(`tokens must be a non-negative integer, got ${String(options.tokens)}.`);
      }
      return options.tokens;
    }
    if (x instanceof Float32Array) {
      if (x.length % dIn !== 0) {
        throw new ShapeMismatchError(`x has ${x.length} floats, not a multiple of dIn = ${dIn}; pass a [T][dIn] array or { tokens }.`);
      }
      return x.length / dIn;
    }
    throw new ShapeMismatchError('A GPUBuffer input needs { tokens }.');
  }

  #alive(): void {
    if (this.#destroyed) throw new DestroyedError('This Sae was destroyed; create or load it again to keep using it.');
  }

  /**
   * Sparse codes of x [T][dIn]. T = 0 gives empty codes. A token whose input holds a NaN or ±Inf
   * gets no features and is listed in `codes.nonFiniteTokens`.
   */
  async encode(x: SaeInput, options: EncodeOptions = {}): Promise<SparseCodes> {
    this.#alive();
    const tokens = this.#tokens(x, options);
    if (tokens === 0) return emptyCodes();
    return this.#impl.encode(x, tokens);
  }

  /** x̂ [T][dIn] from codes (input normalisation undone when the codes carry it). */
  async decode(codes: SparseCodes): Promise<Float32Array> {
    this.#alive();
    return this.#impl.decode(codes);
  }

  /** Encode, decode and per-token metrics (MSE, FVU, cosine) in one go. */
  async reconstruct(x: SaeInput, options: EncodeOptions = {}): Promise<Reconstruction> {
    this.#alive();
    const tokens = this.#tokens(x, options);
    if (tokens === 0) {
      const none = new Float32Array(0);
      return { codes: emptyCodes(), xHat: none, metrics: { mse: none, fvu: none, cosine: none } };
    }
    return this.#impl.reconstruct(x, tokens);
  }

  /**
   * Decoder rows W_dec[f] as f32 vectors of length dIn — the directions a feature writes into
   * the residual stream (before any input normalisation is undone).
   */
  async decoderRows(features: readonly number[]): Promise<Float32Array[]> {
    this.#alive();
    return this.#impl.decoderRows(features);
  }

  /** Frees Loupe's GPU buffers; destroys the device only if Loupe created it. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#impl.destroy();
    this.#ctx?.release();
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Per-pass kernel times for benchmarks (WebGPU backend only; undefined on the CPU). */
  profile(tokens: number, reps = 5): Promise<{ encodeMs: number; selectMs: number }> | undefined {
    this.#alive();
    return this.#impl instanceof GpuBackend ? this.#impl.profile(tokens, reps) : undefined;
  }

  /** The WebGPU device in use (undefined on the CPU backend). */
  get device(): GPUDevice | undefined {
    return this.#ctx?.device;
  }
}

function emptyCodes(): SparseCodes {
  return { tokens: 0, offsets: new Uint32Array(1), indices: new Uint32Array(0), values: new Float32Array(0), nonFiniteTokens: new Uint32Array(0) };
}

/** Shorthand for `Sae.create`. */
export function createSae(source: { config: SaeConfigInput | SaeConfig; weights: SaeWeights }, options: SaeOptions = {}): Promise<Sae> {
  return Sae.create(source, options);
}
