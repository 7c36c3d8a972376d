/**
 * `backend: 'webgpu'`: the WGSL kernels behind the `Sae` API. One encode is one command buffer
 * — prepare_input → encode (GEMV or GEMM, per weight shard) → select — and one readback. Calls
 * are serialised (they share scratch buffers), every submission runs inside validation and
 * out-of-memory error scopes, and a lost device turns into `GpuDeviceLostError`.
 */
import { GpuDeviceLostError, GpuValidationError, ShapeMismatchError, UnsupportedError } from '../errors.js';
import type { SaeConfig } from '../sae/config.js';
import { widenToF32 } from '../sae/dtype.js';
import type { SparseCodes } from '../sae/codes.js';
import { decoderOf, type SaeWeights } from '../sae/weights.js';
import type { GpuContext } from '../gpu/device.js';
import { EncodeKernel, gemmWorkgroupBytes, tokenBlockFor } from '../gpu/kernels/encode.js';
import { decodeSparseKernel, metricsKernel, prepareInputKernel, topkSelectKernel, type Kernel } from '../gpu/kernels/simple.js';
import { bindGroup, BufferPool, GrowableBuffer, roundUp } from '../gpu/resources.js';
import { uploadSharded, type ShardedMatrix } from '../gpu/sharded-weights.js';
import { ThresholdSelect } from '../gpu/kernels/threshold-select.js';
import type { Reconstruction, SaeBackend, SaeInput } from './backend.js';
import { checkCodes, codesFromTopk, concatCodes, splitTransform } from './csr.js';

/** Largest k the fused per-token selection handles (its sort network has 256 slots). */
export const TOPK_MAX_K = 256;

export interface GpuBackendOptions {
  /** Cap on one weight shard, in bytes (default: the device's binding and buffer limits). */
  readonly maxShardBytes?: number;
  /** Largest T encoded with the GEMV kernel; more tokens use the tiled GEMM. */
  readonly gemvMaxTokens?: number;
  /** GEMV threads per feature row. */
  readonly gemvWorkgroupSize?: number;
  /** Features per tile of the 64-token GEMM (default: 128 where workgroup memory allows). */
  readonly gemmFeatureTile?: 64 | 128;
}

interface Scratch {
  x: GrowableBuffer;
  saeIn: GrowableBuffer;
  transform: GrowableBuffer;
  pre: GrowableBuffer;
  topIndices: GrowableBuffer;
  topActs: GrowableBuffer;
  counts: GrowableBuffer;
  offsets: GrowableBuffer;
  codeIndices: GrowableBuffer;
  codeValues: GrowableBuffer;
  xHat: GrowableBuffer;
  metrics: GrowableBuffer;
}

/** Weight matrices already on the GPU (streamed by loadSae), with the pool that owns them. */
export interface UploadedWeights {
  readonly pool: BufferPool;
  readonly encoder: ShardedMatrix;
  /** Omitted when tied. */
  readonly decoder?: ShardedMatrix;
  readonly b_enc: Float32Array;
  readonly b_dec: Float32Array;
  readonly threshold?: Float32Array;
}

export class GpuBackend implements SaeBackend {
  readonly kind = 'webgpu';
  readonly encoder: ShardedMatrix;
  readonly decoder: ShardedMatrix;
  readonly #ctx: GpuContext;
  readonly #config: SaeConfig;
  readonly #pool: BufferPool;
  readonly #bEnc: GPUBuffer;
  readonly #bDec: GPUBuffer;
  readonly #thresholdBuf: GPUBuffer;
  /** Batch top-k, large-k top-k, ReLU and JumpReLU selection. */
  readonly #threshold: ThresholdSelect;
  readonly #scratch: Scratch;
  readonly #gemv: EncodeKernel | undefined;
  readonly #gemvSubgroup = new Map<number, EncodeKernel>();
  readonly #gemm: EncodeKernel;
  readonly #gemm64: EncodeKernel;
  readonly #jumprelu: boolean;
  readonly #gemvWorkgroupSize: number | undefined;

  readonly #prepare: Kernel;
  readonly #select: Kernel;
  readonly #decode: Kernel;
  readonly #metrics: Kernel;
  readonly #gemvMaxTokens: number;
  /** Tokens one submission can hold (pre-activations and inputs must each fit one binding). */
  readonly maxTokensPerPass: number;
  #chain: Promise<unknown> = Promise.resolve();
  #destroyed = false;

  /**
   * `weights` are either in memory (uploaded here) or already on the GPU — streamed there by
   * `loadSae`, in which case the backend takes over their pool and frees it on destroy.
   */
  constructor(ctx: GpuContext, config: SaeConfig, weights: SaeWeights | UploadedWeights, options: GpuBackendOptions = {}) {
    this.#ctx = ctx;
    this.#config = config;
    const { device, capabilities: caps } = ctx;
    const pool = 'pool' in weights ? weights.pool : new BufferPool(device);
    this.#pool = pool;
    const limit = Math.min(caps.maxStorageBufferBindingSize, caps.maxBufferSize);
    const maxShard = Math.min(options.maxShardBytes ?? limit, limit);
    try {
      if ('pool' in weights) {
        this.encoder = weights.encoder;
        this.decoder = weights.decoder ?? weights.encoder;
      } else {
        this.encoder = uploadSharded(device, pool, 'loupe W_enc', weights.W_enc, config.dSae, config.dIn, maxShard);
        this.decoder = config.tied
          ? this.encoder
          : uploadSharded(device, pool, 'loupe W_dec', decoderOf(config, weights), config.dSae, config.dIn, maxShard);
      }
      this.#bEnc = this.#upload('loupe b_enc', weights.b_enc);
      this.#bDec = this.#upload('loupe b_dec', weights.b_dec);
      this.#thresholdBuf = this.#upload('loupe threshold', weights.threshold ?? new Float32Array(1));
    } catch (err) {
      pool.destroyAll();
      throw err;
    }
    const rowBytes = Math.max(this.encoder.dInPad * 4, config.dSae * 4);
    // sae_in is allocated in whole blocks of 8 tokens (the subgroup GEMV reads full blocks)
    const fit = Math.floor(limit / rowBytes);
    this.maxTokensPerPass = Math.max(1, fit >= 8 ? fit - (fit % 8) : fit);
    const jumprelu = config.architecture === 'jumprelu';
    this.#jumprelu = jumprelu;
    this.#gemvWorkgroupSize = options.gemvWorkgroupSize;
    this.#gemvMaxTokens = options.gemvMaxTokens ?? 8;
    this.#gemv = caps.subgroups
      ? undefined
      : new EncodeKernel(ctx, this.encoder, {
          variant: 'gemv',
          jumprelu,
          ...(options.gemvWorkgroupSize !== undefined ? { workgroupSize: options.gemvWorkgroupSize } : {}),
        });
    this.#gemm = new EncodeKernel(ctx, this.encoder, { variant: 'gemm', jumprelu, tokenRows: 2 });
    // 128-feature tiles halve the workgroup-memory reads per multiply-add; they need 24 KiB,
    // above the 16 KiB every WebGPU device guarantees, so only where the device grants it.
    const wide = options.gemmFeatureTile ?? (caps.maxWorkgroupStorageSize >= gemmWorkgroupBytes(4, 128) ? 128 : 64);
    this.#gemm64 = new EncodeKernel(ctx, this.encoder, { variant: 'gemm', jumprelu, tokenRows: 4, featureTile: wide });
    this.#prepare = prepareInputKernel(ctx, config.inputNorm, config.applyBDecToInput);
    this.#select = topkSelectKernel(ctx);
    this.#decode = decodeSparseKernel(ctx, this.decoder.dtype);
    this.#metrics = metricsKernel(ctx);
    this.#threshold = new ThresholdSelect(ctx);
    const storage = (p: BufferPool, label: string, size: number): GPUBuffer => p.storage(label, size);
    const g = (label: string): GrowableBuffer => new GrowableBuffer(pool, `loupe ${label}`, storage);
    this.#scratch = {
      x: g('x'),
      saeIn: g('sae_in'),
      transform: g('transform'),
      pre: g('pre_acts'),
      topIndices: g('top_indices'),
      topActs: g('top_acts'),
      counts: g('counts'),
      offsets: g('code offsets'),
      codeIndices: g('code indices'),
      codeValues: g('code values'),
      xHat: g('x_hat'),
      metrics: g('metrics'),
    };
  }

  #upload(label: string, data: Float32Array): GPUBuffer {
    const buffer = this.#pool.storage(label, data.byteLength);
    this.#ctx.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }

  /** Runs calls one at a time: they share scratch buffers. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn, fn);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Submits inside error scopes; a validation or OOM error becomes a named error. */
  async #submit(encoder: GPUCommandEncoder, what: string): Promise<void> {
    const { device } = this.#ctx;
    this.#ctx.assertAlive();
    device.queue.submit([encoder.finish()]);
    const oom = await device.popErrorScope();
    const validation = await device.popErrorScope();
    const err = validation ?? oom;
    if (err !== null) {
      throw new GpuValidationError(`WebGPU rejected Loupe's ${what}: ${err.message}. This is a Loupe bug or an exhausted device; please report it with the SAE's shape.`);
    }
  }

  #scopes(): void {
    this.#ctx.device.pushErrorScope('validation');
    this.#ctx.device.pushErrorScope('out-of-memory');
  }

  async #read(buffers: ReadonlyArray<{ src: GPUBuffer; bytes: number }>, what: string): Promise<ArrayBuffer[]> {
    const { device } = this.#ctx;
    const total = buffers.reduce((n, b) => n + roundUp(b.bytes, 16), 0);
    const staging = this.#pool.readback(`loupe ${what} readback`, total);
    try {
      this.#scopes();
      const enc = device.createCommandEncoder({ label: `loupe ${what} readback` });
      let offset = 0;
      for (const b of buffers) {
        if (b.bytes > 0) enc.copyBufferToBuffer(b.src, 0, staging, offset, roundUp(b.bytes, 4));
        offset += roundUp(b.bytes, 16);
      }
      await this.#submit(enc, `${what} readback`);
      try {
        await staging.mapAsync(GPUMapMode.READ);
      } catch (cause) {
        throw new GpuDeviceLostError(
          `Reading ${what} back from the GPU failed (${this.#ctx.lostReason ?? String(cause)}). Results returned before stay valid; create a new Sae to continue.`,
          { cause },
        );
      }
      const mapped = staging.getMappedRange();
      const out: ArrayBuffer[] = [];
      offset = 0;
      for (const b of buffers) {
        out.push(mapped.slice(offset, offset + b.bytes));
        offset += roundUp(b.bytes, 16);
      }
      staging.unmap();
      return out;
    } finally {
      this.#pool.release(staging);
    }
  }

  #checkInput(x: SaeInput, tokens: number): void {
    const need = tokens * this.#config.dIn;
    if (x instanceof Float32Array) {
      if (x.length !== need) {
        throw new ShapeMismatchError(
          `encode expected tokens × dIn = ${tokens} × ${this.#config.dIn} = ${need} floats, got ${x.length}. Pass { tokens } matching the data, or reshape the input.`,
        );
      }
      return;
    }
    if ((x.usage & GPUBufferUsage.STORAGE) === 0) {
      throw new ShapeMismatchError('A GPUBuffer input must have STORAGE usage so the kernels can bind it.');
    }
    if (x.size < need * 4) {
      throw new ShapeMismatchError(`The input GPUBuffer holds ${x.size} bytes; tokens × dIn f32 needs ${need * 4}.`);
    }
  }

  /** Records prepare_input and encode for `tokens` tokens of `x`; returns the pre buffer. */
  #recordEncode(enc: GPUCommandEncoder, x: GPUBuffer, xOffsetBytes: number, tokens: number): { pre: GPUBuffer; transform: GPUBuffer } {
    const { device } = this.#ctx;
    const cfg = this.#config;
    const s = this.#scratch;
    const dInPad = this.encoder.dInPad;
    // rounded up to 8 rows: the subgroup GEMV reads whole token blocks
    const saeIn = s.saeIn.ensure(roundUp(tokens, 8) * dInPad * 4).buffer;
    const transform = s.transform.ensure(tokens * 16).buffer;
    const pre = s.pre.ensure(tokens * cfg.dSae * 4).buffer;
    const prepParams = this.#uniform('prepare params', new Uint32Array([cfg.dIn, dInPad, tokens, 0]), (view) => {
      new Float32Array(view.buffer)[3] = cfg.inputScale;
    });
    const xBinding: GPUBufferBinding = { buffer: x, offset: xOffsetBytes, size: tokens * cfg.dIn * 4 };
    const prepGroup = device.createBindGroup({
      label: 'loupe prepare_input',
      layout: this.#prepare.layout,
      entries: [
        { binding: 0, resource: { buffer: prepParams } },
        { binding: 1, resource: xBinding },
        { binding: 2, resource: { buffer: this.#bDec } },
        { binding: 3, resource: { buffer: saeIn } },
        { binding: 4, resource: { buffer: transform } },
      ],
    });
    const kernel = this.#encodeKernel(tokens);
    const groups = this.encoder.shards.map((shard, i) => {
      const params = this.#uniform(`encode params shard ${i}`, kernel.params(this.encoder, i, cfg.dSae, tokens));
      return bindGroup(device, `loupe encode shard ${i}`, kernel.layout, [params, shard.buffer, saeIn, this.#bEnc, this.#thresholdBuf, pre]);
    });
    const pass = enc.beginComputePass({ label: 'loupe encode' });
    pass.setPipeline(this.#prepare.pipeline);
    pass.setBindGroup(0, prepGroup);
    pass.dispatchWorkgroups(tokens);
    this.encoder.shards.forEach((shard, i) => {
      const group = groups[i];
      if (group !== undefined) kernel.record(pass, group, shard.rows, tokens);
    });
    pass.end();
    return { pre, transform };
  }

  /** The encode kernel for T tokens: subgroup GEMV, barrier GEMV, or tiled GEMM (32- or 64-token tiles). */
  #encodeKernel(tokens: number): EncodeKernel {
    if (tokens > this.#gemvMaxTokens) return tokens > 32 ? this.#gemm64 : this.#gemm;
    if (this.#gemv !== undefined) return this.#gemv;
    const tb = tokenBlockFor(tokens);
    let kernel = this.#gemvSubgroup.get(tb);
    if (kernel === undefined) {
      kernel = new EncodeKernel(this.#ctx, this.encoder, {
        variant: 'gemv-subgroup',
        jumprelu: this.#jumprelu,
        tokenBlock: tb,
        ...(this.#gemvWorkgroupSize !== undefined ? { workgroupSize: this.#gemvWorkgroupSize } : {}),
      });
      this.#gemvSubgroup.set(tb, kernel);
    }
    return kernel;
  }

  /** A small uniform buffer, freed once the current call's work is submitted. */
  #uniform(label: string, data: Uint32Array, patch?: (view: Uint32Array) => void): GPUBuffer {
    patch?.(data);
    const buffer = this.#pool.uniform(`loupe ${label}`, data.byteLength);
    this.#ctx.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    this.#transient.push(buffer);
    return buffer;
  }

  #transient: GPUBuffer[] = [];
  #releaseTransient(): void {
    for (const b of this.#transient) this.#pool.release(b);
    this.#transient = [];
  }

  #usesFusedTopk(tokens: number): boolean {
    const cfg = this.#config;
    const k = cfg.k ?? 0;
    return k <= TOPK_MAX_K && (cfg.architecture === 'topk' || (cfg.architecture === 'batchtopk' && tokens === 1));
  }

  async #encodeChunk(x: SaeInput, xOffsetTokens: number, tokens: number): Promise<SparseCodes> {
    const { device } = this.#ctx;
    const cfg = this.#config;
    const s = this.#scratch;
    let xBuf: GPUBuffer;
    let xOffset = 0;
    if (x instanceof Float32Array) {
      xBuf = s.x.ensure(tokens * cfg.dIn * 4).buffer;
      const view = x.subarray(xOffsetTokens * cfg.dIn, (xOffsetTokens + tokens) * cfg.dIn);
      device.queue.writeBuffer(xBuf, 0, view.buffer, view.byteOffset, view.byteLength);
    } else {
      xBuf = x;
      xOffset = xOffsetTokens * cfg.dIn * 4;
    }
    try {
      this.#scopes();
      const enc = device.createCommandEncoder({ label: 'loupe encode' });
      const { pre, transform } = this.#recordEncode(enc, xBuf, xOffset, tokens);
      if (this.#usesFusedTopk(tokens)) {
        const k = cfg.k ?? 0;
        const topIndices = s.topIndices.ensure(tokens * k * 4).buffer;
        const topActs = s.topActs.ensure(tokens * k * 4).buffer;
        const counts = s.counts.ensure(tokens * 4).buffer;
        const params = this.#uniform('topk params', new Uint32Array([cfg.dSae, k, tokens, 0]));
        const group = bindGroup(device, 'loupe topk_select', this.#select.layout, [params, pre, topIndices, topActs, counts, transform]);
        const pass = enc.beginComputePass({ label: 'loupe topk_select' });
        pass.setPipeline(this.#select.pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(tokens);
        pass.end();
        await this.#submit(enc, 'encode');
        const [idx, val, cnt, tr] = await this.#read(
          [
            { src: topIndices, bytes: tokens * k * 4 },
            { src: topActs, bytes: tokens * k * 4 },
            { src: counts, bytes: tokens * 4 },
            { src: transform, bytes: tokens * 16 },
          ],
          'top-k codes',
        );
        return codesFromTopk(cfg, tokens, k, new Uint32Array(idx ?? new ArrayBuffer(0)), new Float32Array(val ?? new ArrayBuffer(0)), new Uint32Array(cnt ?? new ArrayBuffer(0)), new Float32Array(tr ?? new ArrayBuffer(0)));
      }
      // Batch top-k over several tokens, top-k with k > 256, ReLU and JumpReLU: a radix select
      // over the whole batch and a compaction, on the GPU (threshold-select.ts); only the codes
      // and the per-token transform come back.
      await this.#submit(enc, 'encode');
      const mode = cfg.architecture === 'batchtopk' ? 'batchtopk' : cfg.architecture === 'topk' ? 'topk' : 'relu';
      const selected = await this.#threshold.select({ pre, transform, tokens, dSae: cfg.dSae, mode, ...(cfg.k !== undefined ? { k: cfg.k } : {}) });
      const [tr] = await this.#read([{ src: transform, bytes: tokens * 16 }], 'input transform');
      const { nonFinite, outScale, outShift } = splitTransform(new Float32Array(tr ?? new ArrayBuffer(0)), tokens);
      const codes: SparseCodes = {
        tokens,
        offsets: selected.offsets,
        indices: selected.indices,
        values: selected.values,
        nonFiniteTokens: Uint32Array.from([...nonFinite.keys()].filter((t) => nonFinite[t] === 1)),
      };
      return cfg.inputNorm === 'none' ? codes : { ...codes, inputTransform: { outScale, outShift } };
    } finally {
      this.#releaseTransient();
    }
  }

  encode(x: SaeInput, tokens: number): Promise<SparseCodes> {
    return this.#serial(async () => {
      this.#checkAlive();
      this.#checkInput(x, tokens);
      const cfg = this.#config;
      const per = this.maxTokensPerPass;
      if (tokens <= per) return this.#encodeChunk(x, 0, tokens);
      if (cfg.architecture === 'batchtopk') {
        throw new UnsupportedError(
          `Batch top-k ranks all ${tokens} tokens together, but one pass holds at most ${per} tokens of this SAE on this device; encode in batches of at most ${per} tokens.`,
        );
      }
      const parts: SparseCodes[] = [];
      for (let t0 = 0; t0 < tokens; t0 += per) parts.push(await this.#encodeChunk(x, t0, Math.min(per, tokens - t0)));
      return concatCodes(parts);
    });
  }

  /** Decoder rows W_dec[f] (f32, length dIn), copied out of the GPU shards. */
  decoderRows(features: readonly number[]): Promise<Float32Array[]> {
    return this.#serial(async () => {
      this.#checkAlive();
      const { dIn, dInPad, dtype, shards } = this.decoder;
      const rowBytes = dInPad * (dtype === 'f32' ? 4 : 2);
      const { device } = this.#ctx;
      // Checked before any GPU work so a bad index leaves no error scope open.
      const sources = features.map((f) => {
        const shard = Number.isInteger(f) ? shards.find((s) => f >= s.rowStart && f < s.rowStart + s.rows) : undefined;
        if (shard === undefined) throw new ShapeMismatchError(`Feature ${f} is outside 0 … ${this.#config.dSae - 1}.`);
        return { buffer: shard.buffer, offset: (f - shard.rowStart) * rowBytes };
      });
      const staging = this.#pool.readback('loupe decoder rows readback', Math.max(16, features.length * rowBytes));
      try {
        this.#scopes();
        const enc = device.createCommandEncoder({ label: 'loupe decoder rows' });
        sources.forEach((src, k) => enc.copyBufferToBuffer(src.buffer, src.offset, staging, k * rowBytes, rowBytes));
        await this.#submit(enc, 'decoder row copy');
        await staging.mapAsync(GPUMapMode.READ);
        const bytes = staging.getMappedRange().slice(0);
        staging.unmap();
        return features.map((_, k) => {
          const row = dtype === 'f32' ? new Float32Array(bytes, k * rowBytes, dIn) : new Uint16Array(bytes, k * rowBytes, dIn);
          return Float32Array.from(widenToF32(row, dtype));
        });
      } finally {
        this.#pool.release(staging);
      }
    });
  }

  decode(codes: SparseCodes): Promise<Float32Array> {
    return this.#serial(async () => {
      this.#checkAlive();
      const out = await this.#decodeCodes(codes, undefined);
      return out.xHat;
    });
  }

  reconstruct(x: SaeInput, tokens: number): Promise<Reconstruction> {
    return this.#serial(async () => {
      this.#checkAlive();
      this.#checkInput(x, tokens);
      if (tokens > this.maxTokensPerPass) {
        throw new UnsupportedError(`reconstruct handles at most ${this.maxTokensPerPass} tokens per call for this SAE; split the input.`);
      }
      const codes = await this.#encodeChunk(x, 0, tokens);
      const xBuf = x instanceof Float32Array ? this.#scratch.x.ensure(tokens * this.#config.dIn * 4).buffer : x;
      const { xHat, metrics } = await this.#decodeCodes(codes, xBuf);
      if (metrics === undefined) throw new GpuValidationError('metrics missing after reconstruct (Loupe bug)');
      return { codes, xHat, metrics };
    });
  }

  /** Uploads codes, decodes shard by shard, optionally computes metrics against `x`. */
  async #decodeCodes(codes: SparseCodes, x: GPUBuffer | undefined): Promise<{ xHat: Float32Array; metrics?: Reconstruction['metrics'] }> {
    const { device } = this.#ctx;
    const cfg = this.#config;
    const T = codes.tokens;
    checkCodes(codes, cfg.dSae);
    if (T === 0) return { xHat: new Float32Array(0), ...(x ? { metrics: { mse: new Float32Array(0), fvu: new Float32Array(0), cosine: new Float32Array(0) } } : {}) };
    const s = this.#scratch;
    const nnz = codes.indices.length;
    const offsets = s.offsets.ensure((T + 1) * 4).buffer;
    const indices = s.codeIndices.ensure(Math.max(4, nnz * 4)).buffer;
    const values = s.codeValues.ensure(Math.max(4, nnz * 4)).buffer;
    const transform = s.transform.ensure(T * 16).buffer;
    const xHat = s.xHat.ensure(T * cfg.dIn * 4).buffer;
    const q = device.queue;
    q.writeBuffer(offsets, 0, codes.offsets.buffer, codes.offsets.byteOffset, codes.offsets.byteLength);
    if (nnz > 0) {
      q.writeBuffer(indices, 0, codes.indices.buffer, codes.indices.byteOffset, codes.indices.byteLength);
      q.writeBuffer(values, 0, codes.values.buffer, codes.values.byteOffset, codes.values.byteLength);
    }
    const tr = new Float32Array(T * 4);
    for (let t = 0; t < T; t++) {
      tr[t * 4] = codes.inputTransform?.outScale[t] ?? 1 / cfg.inputScale;
      tr[t * 4 + 1] = codes.inputTransform?.outShift[t] ?? 0;
    }
    q.writeBuffer(transform, 0, tr.buffer, 0, tr.byteLength);
    try {
      this.#scopes();
      const enc = device.createCommandEncoder({ label: 'loupe decode' });
      const pass = enc.beginComputePass({ label: 'loupe decode_sparse' });
      pass.setPipeline(this.#decode.pipeline);
      const gpr = this.decoder.dInPad / 8;
      const n = this.decoder.shards.length;
      this.decoder.shards.forEach((shard, i) => {
        const params = this.#uniform(
          `decode params shard ${i}`,
          new Uint32Array([gpr, shard.rowStart, shard.rows, cfg.dIn, T, i === 0 ? 1 : 0, i === n - 1 ? 1 : 0, 0]),
        );
        pass.setBindGroup(0, bindGroup(device, `loupe decode shard ${i}`, this.#decode.layout, [params, shard.buffer, offsets, indices, values, this.#bDec, transform, xHat]));
        pass.dispatchWorkgroups(Math.ceil(gpr / 64), T);
      });
      let metricsBuf: GPUBuffer | undefined;
      if (x !== undefined) {
        metricsBuf = s.metrics.ensure(T * 16).buffer;
        const params = this.#uniform('metrics params', new Uint32Array([cfg.dIn, T, 0, 0]));
        pass.setPipeline(this.#metrics.pipeline);
        pass.setBindGroup(0, bindGroup(device, 'loupe metrics', this.#metrics.layout, [params, x, xHat, metricsBuf]));
        pass.dispatchWorkgroups(T);
      }
      pass.end();
      await this.#submit(enc, 'decode');
      const reads = [{ src: xHat, bytes: T * cfg.dIn * 4 }];
      if (metricsBuf !== undefined) reads.push({ src: metricsBuf, bytes: T * 16 });
      const [xh, m] = await this.#read(reads, 'x_hat');
      const out = new Float32Array(xh ?? new ArrayBuffer(0));
      if (m === undefined) return { xHat: out };
      const mv = new Float32Array(m);
      const pick = (c: number): Float32Array => Float32Array.from({ length: T }, (_, t) => mv[t * 4 + c] ?? NaN);
      const nonFinite = new Set(codes.nonFiniteTokens);
      const metric = (c: number): Float32Array => pick(c).map((v, t) => (nonFinite.has(t) ? NaN : v));
      return { xHat: out, metrics: { mse: metric(0), fvu: metric(1), cosine: metric(2) } };
    } finally {
      this.#releaseTransient();
    }
  }

  /**
   * Profiling (benchmarks): wall time per pass of the encode kernels (prepare + GEMV/GEMM over all
   * shards) and of the fused top-k select, each recorded `reps` times in one submission so the
   * submit/readback overhead is amortised. Uses the scratch buffers of a normal encode.
   */
  profile(tokens: number, reps: number): Promise<{ encodeMs: number; selectMs: number }> {
    return this.#serial(async () => {
      this.#checkAlive();
      const { device } = this.#ctx;
      const cfg = this.#config;
      const s = this.#scratch;
      const x = s.x.ensure(tokens * cfg.dIn * 4).buffer;
      const k = Math.min(cfg.k ?? TOPK_MAX_K, TOPK_MAX_K);
      const timeIt = async (record: (enc: GPUCommandEncoder) => void): Promise<number> => {
        const enc = device.createCommandEncoder({ label: 'loupe profile' });
        record(enc);
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        return (performance.now() - t0) / reps;
      };
      try {
        let pre: GPUBuffer | undefined;
        let transform: GPUBuffer | undefined;
        const encodeMs = await timeIt((enc) => {
          for (let i = 0; i < reps; i++) ({ pre, transform } = this.#recordEncode(enc, x, 0, tokens));
        });
        if (pre === undefined || transform === undefined) return { encodeMs, selectMs: NaN };
        const topIndices = s.topIndices.ensure(tokens * k * 4).buffer;
        const topActs = s.topActs.ensure(tokens * k * 4).buffer;
        const counts = s.counts.ensure(tokens * 4).buffer;
        const params = this.#uniform('topk params', new Uint32Array([cfg.dSae, k, tokens, 0]));
        const group = bindGroup(device, 'loupe topk_select', this.#select.layout, [params, pre, topIndices, topActs, counts, transform]);
        const selectMs = await timeIt((enc) => {
          const pass = enc.beginComputePass({ label: 'loupe topk_select' });
          pass.setPipeline(this.#select.pipeline);
          pass.setBindGroup(0, group);
          for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(tokens);
          pass.end();
        });
        return { encodeMs, selectMs };
      } finally {
        this.#releaseTransient();
      }
    });
  }

  #checkAlive(): void {
    if (this.#destroyed) throw new UnsupportedError('This Sae was destroyed; load it again to use it.');
    this.#ctx.assertAlive();
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#threshold.destroy();
    this.#pool.destroyAll();
  }

  /** Buffers this backend currently owns (tests check that destroy frees them all). */
  get ownedBufferCount(): number {
    return this.#pool.size;
  }
}
