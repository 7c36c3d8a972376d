/**
 * Sparse selection on the GPU for the cases the fused per-token kernel (topk_select.wgsl,
 * k ≤ 256) does not cover: Goodfire's batch top-k over several tokens, per-token top-k with
 * any k ≤ dSae, ReLU and JumpReLU. Only the sparse codes come back, not the dense [T][dSae]
 * pre-activations.
 *
 * Kernels, all recorded into one compute pass per submission:
 * - rank modes ('batchtopk', 'topk'): 4 rounds of select_histogram (multi-workgroup 256-bin
 *   histogram of one 8-bit key digit) + select_bin (one workgroup per selection picks the bin
 *   of the K-th largest key) give the exact threshold key and how many ties at it to take
 *   (a round whose bin holds exactly the keys still needed ends the search: later histogram
 *   dispatches see the flag and skip their pass); K = k × finite tokens is computed on the
 *   GPU from the transform flags, so no readback comes before the compaction;
 *   'batchtopk' is one selection over the flattened batch of finite tokens, 'topk' one per
 *   token (per-token histograms and state slots, same kernels);
 * - compaction: compact_count (per-token kept / tie counts) → compact_scan (CSR offsets and
 *   tie budgets, ties in flattened order) → compact_write (pairs in index order).
 *
 * Output sizing: the rank modes keep at most k per finite token (batch: exactly
 * min(k·T', positives)), so the index/value buffers are sized k·T up front and the whole
 * selection is one submission and one readback. ReLU / nonzero can keep anything up to T·dSae;
 * sizing for that worst case would double the memory of the dense pre-activations and still
 * need the count to know how much to copy back, so those modes read back the T + 1 offsets
 * first (a few bytes, one extra round trip) and then write into buffers of the exact size.
 *
 * Order: compact_write emits each token's pairs in index order; the host sorts each token's
 * list by value descending, ties by index ascending (the SparseCodes order). For the rank
 * modes that is ≤ k entries per token; the sort packs (value, index) into one f64 key so it is
 * a numeric typed-array sort, not a comparator sort.
 */
import { GpuDeviceLostError, GpuValidationError, ShapeMismatchError, UnsupportedError } from '../../errors.js';
import type { GpuContext } from '../device.js';
import { BufferPool, GrowableBuffer, roundUp } from '../resources.js';
import {
  compactCountKernel,
  compactScanKernel,
  compactWriteKernel,
  selectBinKernel,
  selectHistogramKernel,
  type Kernel,
} from './simple.js';

export type ThresholdSelectMode = 'batchtopk' | 'topk' | 'relu' | 'nonzero';

export interface ThresholdSelectArgs {
  /** Pre-activations [tokens][dSae] f32 (for 'nonzero': already pre·(pre > threshold)). */
  readonly pre: GPUBuffer;
  /** prepare_input's per-token records [tokens] vec4<f32>; .z > 0 marks a non-finite input. */
  readonly transform: GPUBuffer;
  readonly tokens: number;
  readonly dSae: number;
  readonly mode: ThresholdSelectMode;
  /** Features per token ('topk') or per finite token on average ('batchtopk'). */
  readonly k?: number;
}

/** CSR codes: token t's pairs are [offsets[t], offsets[t+1]), value descending, index ascending. */
export interface ThresholdSelectResult {
  readonly offsets: Uint32Array;
  readonly indices: Uint32Array;
  readonly values: Float32Array;
}

/** Values one select_histogram workgroup counts along dSae (256 threads × 16 each). */
const HIST_CHUNK = 4096;
/** Bytes of one selection's state (prefix, remaining, flag, round). */
const STATE_BYTES = 16;
/** Kernel mode codes of compact_*.wgsl. */
const MODE_CODE: Record<ThresholdSelectMode, number> = { batchtopk: 0, topk: 0, relu: 1, nonzero: 2 };
/** Feature ids below this fit beside a 32-bit value key in an exactly representable f64. */
const PACK_INDEX_LIMIT = 2 ** 21;

interface Scratch {
  hist: GrowableBuffer;
  state: GrowableBuffer;
  counts: GrowableBuffer;
  offsets: GrowableBuffer;
  budgets: GrowableBuffer;
  indices: GrowableBuffer;
  values: GrowableBuffer;
}

export class ThresholdSelect {
  readonly #ctx: GpuContext;
  readonly #pool: BufferPool;
  readonly #scratch: Scratch;
  readonly #histogram: Kernel;
  readonly #bin: Kernel;
  readonly #count: Kernel;
  readonly #scan: Kernel;
  readonly #write: Kernel;
  #transient: GPUBuffer[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  #destroyed = false;

  constructor(ctx: GpuContext) {
    this.#ctx = ctx;
    const pool = new BufferPool(ctx.device);
    this.#pool = pool;
    this.#histogram = selectHistogramKernel(ctx);
    this.#bin = selectBinKernel(ctx);
    this.#count = compactCountKernel(ctx);
    this.#scan = compactScanKernel(ctx);
    this.#write = compactWriteKernel(ctx);
    const storage = (p: BufferPool, label: string, size: number): GPUBuffer => p.storage(label, size);
    const g = (label: string): GrowableBuffer => new GrowableBuffer(pool, `loupe select ${label}`, storage);
    this.#scratch = {
      hist: g('histogram'),
      state: g('state'),
      counts: g('counts'),
      offsets: g('offsets'),
      budgets: g('tie budgets'),
      indices: g('indices'),
      values: g('values'),
    };
  }

  /** Selects the sparse codes of `pre`; calls on one instance run one at a time (shared scratch). */
  select(args: ThresholdSelectArgs): Promise<ThresholdSelectResult> {
    const run = this.#chain.then(
      () => this.#select(args),
      () => this.#select(args),
    );
    this.#chain = run.catch(() => undefined);
    return run;
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#pool.destroyAll();
  }

  /** Buffers this object currently owns (tests check that destroy frees them all). */
  get ownedBufferCount(): number {
    return this.#pool.size;
  }

  #check(args: ThresholdSelectArgs): number {
    if (this.#destroyed) throw new UnsupportedError('This ThresholdSelect was destroyed; create a new one.');
    this.#ctx.assertAlive();
    const { tokens, dSae, mode } = args;
    if (!Number.isInteger(tokens) || tokens < 0) throw new ShapeMismatchError(`tokens must be a non-negative integer, got ${String(tokens)}.`);
    if (!Number.isInteger(dSae) || dSae <= 0) throw new ShapeMismatchError(`dSae must be a positive integer, got ${String(dSae)}.`);
    if (args.pre.size < tokens * dSae * 4) {
      throw new ShapeMismatchError(`The pre-activation buffer holds ${args.pre.size} bytes; tokens × dSae f32 = ${tokens} × ${dSae} needs ${tokens * dSae * 4}.`);
    }
    if (args.transform.size < tokens * 16) {
      throw new ShapeMismatchError(`The transform buffer holds ${args.transform.size} bytes; ${tokens} tokens need ${tokens * 16} (one vec4<f32> each).`);
    }
    const maxBinding = this.#ctx.capabilities.maxStorageBufferBindingSize;
    if (tokens * dSae * 4 > maxBinding) {
      throw new UnsupportedError(`The pre-activations of ${tokens} tokens × ${dSae} features (${tokens * dSae * 4} bytes) exceed this device's storage binding limit (${maxBinding} bytes); select in smaller batches.`);
    }
    const maxGrid = this.#ctx.capabilities.maxWorkgroupsPerDimension;
    if (tokens > maxGrid) {
      throw new UnsupportedError(`Selection runs one workgroup per token, at most ${maxGrid} on this device; got ${tokens} tokens. Select in smaller batches.`);
    }
    if (mode === 'batchtopk' || mode === 'topk') {
      const k = args.k;
      if (k === undefined || !Number.isInteger(k) || k < 1 || k > dSae) {
        throw new ShapeMismatchError(`Mode '${mode}' needs an integer k with 1 ≤ k ≤ dSae (${dSae}); got ${String(k)}.`);
      }
      return k;
    }
    return 0;
  }

  async #select(args: ThresholdSelectArgs): Promise<ThresholdSelectResult> {
    const k = this.#check(args);
    const { tokens: T, dSae, mode } = args;
    if (T === 0) return { offsets: new Uint32Array(1), indices: new Uint32Array(0), values: new Float32Array(0) };
    const { device } = this.#ctx;
    const s = this.#scratch;
    const rank = mode === 'batchtopk' || mode === 'topk';
    const perToken = mode === 'topk' ? 1 : 0;
    const selections = perToken === 1 ? T : 1;
    const modeCode = MODE_CODE[mode];
    const pre: GPUBufferBinding = { buffer: args.pre, offset: 0, size: T * dSae * 4 };
    const transform: GPUBufferBinding = { buffer: args.transform, offset: 0, size: T * 16 };
    try {
      const state = s.state.ensure(selections * STATE_BYTES).buffer;
      const counts = s.counts.ensure(T * 8).buffer;
      const offsets = s.offsets.ensure((T + 1) * 4).buffer;
      const budgets = s.budgets.ensure(T * 4).buffer;
      const countParams = this.#uniform('compact params', [dSae, T, modeCode, perToken]);
      const scanParams = this.#uniform('compact scan params', [T, modeCode, perToken, 0]);
      const entries = (kernel: Kernel, label: string, bindings: Array<GPUBuffer | GPUBufferBinding>): GPUBindGroup =>
        device.createBindGroup({
          label: `loupe ${label}`,
          layout: kernel.layout,
          entries: bindings.map((b, binding) => ({ binding, resource: 'buffer' in b ? b : { buffer: b } })),
        });
      const recordCompact = (pass: GPUComputePassEncoder): void => {
        pass.setPipeline(this.#count.pipeline);
        pass.setBindGroup(0, entries(this.#count, 'compact_count', [countParams, pre, transform, state, counts]));
        pass.dispatchWorkgroups(T);
        pass.setPipeline(this.#scan.pipeline);
        pass.setBindGroup(0, entries(this.#scan, 'compact_scan', [scanParams, counts, state, offsets, budgets]));
        pass.dispatchWorkgroups(1);
      };
      const recordWrite = (pass: GPUComputePassEncoder, indices: GPUBuffer, values: GPUBuffer): void => {
        pass.setPipeline(this.#write.pipeline);
        pass.setBindGroup(0, entries(this.#write, 'compact_write', [countParams, pre, transform, state, offsets, budgets, indices, values]));
        pass.dispatchWorkgroups(T);
      };

      if (rank) {
        // At most k per finite token in both rank modes (see the file comment).
        const capacity = k * T;
        const indices = s.indices.ensure(capacity * 4).buffer;
        const values = s.values.ensure(capacity * 4).buffer;
        const hist = s.hist.ensure(selections * 256 * 4).buffer;
        const histParams = this.#uniform('select histogram params', [dSae, T, perToken, HIST_CHUNK]);
        const binParams = this.#uniform('select bin params', [k, T, perToken, 0]);
        const staging = this.#staging('codes', [(T + 1) * 4, capacity * 4, capacity * 4]);
        await this.#submit('threshold select', (enc) => {
          // select_bin clears the histogram after each round and starts from round 0 of a zeroed state.
          enc.clearBuffer(state, 0, roundUp(selections * STATE_BYTES, 4));
          enc.clearBuffer(hist, 0, selections * 256 * 4);
          const pass = enc.beginComputePass({ label: 'loupe threshold select' });
          const histGroup = entries(this.#histogram, 'select_histogram', [histParams, pre, transform, state, hist]);
          const binGroup = entries(this.#bin, 'select_bin', [binParams, transform, hist, state]);
          for (let round = 0; round < 4; round++) {
            pass.setPipeline(this.#histogram.pipeline);
            pass.setBindGroup(0, histGroup);
            pass.dispatchWorkgroups(Math.ceil(dSae / HIST_CHUNK), T);
            pass.setPipeline(this.#bin.pipeline);
            pass.setBindGroup(0, binGroup);
            pass.dispatchWorkgroups(selections);
          }
          recordCompact(pass);
          recordWrite(pass, indices, values);
          pass.end();
          staging.copy(enc, [offsets, indices, values]);
        });
        const [offBytes, idxBytes, valBytes] = await this.#map(staging.buffer, staging.sections);
        const off = new Uint32Array(offBytes ?? new ArrayBuffer(0));
        const nnz = off[T] ?? 0;
        if (nnz > capacity) throw new GpuValidationError(`threshold select kept ${nnz} codes, more than the bound k·T = ${capacity} (Loupe bug).`);
        const indicesOut = new Uint32Array(idxBytes ?? new ArrayBuffer(0)).slice(0, nnz);
        const valuesOut = new Float32Array(valBytes ?? new ArrayBuffer(0)).slice(0, nnz);
        return sortedCsr(off, indicesOut, valuesOut, dSae);
      }

      // ReLU / nonzero: count and place first, then write into buffers of the exact size.
      const countStaging = this.#staging('offsets', [(T + 1) * 4]);
      await this.#submit('threshold select count', (enc) => {
        const pass = enc.beginComputePass({ label: 'loupe threshold count' });
        recordCompact(pass);
        pass.end();
        countStaging.copy(enc, [offsets]);
      });
      const [offBytes] = await this.#map(countStaging.buffer, countStaging.sections);
      const off = new Uint32Array(offBytes ?? new ArrayBuffer(0));
      const nnz = off[T] ?? 0;
      if (nnz > T * dSae) throw new GpuValidationError(`threshold select counted ${nnz} codes in ${T} × ${dSae} values (Loupe bug).`);
      if (nnz === 0) return { offsets: off, indices: new Uint32Array(0), values: new Float32Array(0) };
      const indices = s.indices.ensure(nnz * 4).buffer;
      const values = s.values.ensure(nnz * 4).buffer;
      const staging = this.#staging('codes', [nnz * 4, nnz * 4]);
      await this.#submit('threshold select write', (enc) => {
        const pass = enc.beginComputePass({ label: 'loupe threshold write' });
        recordWrite(pass, indices, values);
        pass.end();
        staging.copy(enc, [indices, values]);
      });
      const [idxBytes, valBytes] = await this.#map(staging.buffer, staging.sections);
      return sortedCsr(off, new Uint32Array(idxBytes ?? new ArrayBuffer(0)), new Float32Array(valBytes ?? new ArrayBuffer(0)), dSae);
    } finally {
      for (const b of this.#transient) this.#pool.release(b);
      this.#transient = [];
    }
  }

  /** A small uniform buffer, freed when the current call ends. */
  #uniform(label: string, words: readonly number[]): GPUBuffer {
    const data = new Uint32Array(words);
    const buffer = this.#pool.uniform(`loupe ${label}`, data.byteLength);
    this.#ctx.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    this.#transient.push(buffer);
    return buffer;
  }

  /** One mappable buffer holding several sections (16-byte aligned), freed when the call ends. */
  #staging(what: string, bytes: readonly number[]): { buffer: GPUBuffer; sections: Array<{ offset: number; bytes: number }>; copy: (enc: GPUCommandEncoder, src: readonly GPUBuffer[]) => void } {
    const sections: Array<{ offset: number; bytes: number }> = [];
    let total = 0;
    for (const b of bytes) {
      sections.push({ offset: total, bytes: b });
      total += roundUp(b, 16);
    }
    const buffer = this.#pool.readback(`loupe select ${what} readback`, total);
    this.#transient.push(buffer);
    const copy = (enc: GPUCommandEncoder, src: readonly GPUBuffer[]): void => {
      sections.forEach((sec, i) => {
        const from = src[i];
        if (from !== undefined && sec.bytes > 0) enc.copyBufferToBuffer(from, 0, buffer, sec.offset, roundUp(sec.bytes, 4));
      });
    };
    return { buffer, sections, copy };
  }

  /** Records and submits inside validation and out-of-memory scopes; a caught error is thrown as GpuValidationError. */
  async #submit(what: string, record: (enc: GPUCommandEncoder) => void): Promise<void> {
    const { device } = this.#ctx;
    this.#ctx.assertAlive();
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    let failure: { error: unknown } | undefined;
    try {
      const enc = device.createCommandEncoder({ label: `loupe ${what}` });
      record(enc);
      device.queue.submit([enc.finish()]);
    } catch (error) {
      failure = { error };
    }
    // Both scopes are popped even when recording threw, so the caller's scope stack stays balanced.
    const oom = await device.popErrorScope();
    const validation = await device.popErrorScope();
    if (failure !== undefined) throw failure.error;
    const err = validation ?? oom;
    if (err !== null) {
      throw new GpuValidationError(`WebGPU rejected Loupe's ${what}: ${err.message}. This is a Loupe bug or an exhausted device; please report it with the SAE's shape.`);
    }
  }

  async #map(buffer: GPUBuffer, sections: ReadonlyArray<{ offset: number; bytes: number }>): Promise<ArrayBuffer[]> {
    try {
      await buffer.mapAsync(GPUMapMode.READ);
    } catch (cause) {
      throw new GpuDeviceLostError(
        `Reading selected codes back from the GPU failed (${this.#ctx.lostReason ?? String(cause)}). Results returned before stay valid; create a new Sae to continue.`,
        { cause },
      );
    }
    const mapped = buffer.getMappedRange();
    const out = sections.map((s) => mapped.slice(s.offset, s.offset + s.bytes));
    buffer.unmap();
    return out;
  }
}

/**
 * Sorts each token's pairs (index order from compact_write) by value descending, index
 * ascending, in place. Each pair becomes one f64 (descending order key of the value's bits ×
 * 2^21 + index, exact below 2^53), so the sort is a numeric typed-array sort; feature ids
 * beyond 2^21 fall back to a comparator sort.
 */
export function sortedCsr(offsets: Uint32Array, indices: Uint32Array, values: Float32Array, dSae: number): ThresholdSelectResult {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const tokens = offsets.length - 1;
  let keys = new Float64Array(0);
  for (let t = 0; t < tokens; t++) {
    const begin = offsets[t] ?? 0;
    const end = offsets[t + 1] ?? begin;
    const n = end - begin;
    if (n <= 1) continue;
    if (dSae > PACK_INDEX_LIMIT) {
      const order = Array.from({ length: n }, (_, j) => begin + j);
      order.sort((a, b) => (values[b] ?? 0) - (values[a] ?? 0) || (indices[a] ?? 0) - (indices[b] ?? 0));
      const idx = Uint32Array.from(order, (j) => indices[j] ?? 0);
      const val = Float32Array.from(order, (j) => values[j] ?? 0);
      indices.set(idx, begin);
      values.set(val, begin);
      continue;
    }
    if (keys.length < n) keys = new Float64Array(n);
    const view = keys.subarray(0, n);
    for (let j = 0; j < n; j++) {
      const u = bits[begin + j] ?? 0;
      // Order-preserving key (larger float → larger key), inverted so ascending = value descending.
      const ordered = u >>> 31 === 1 ? ~u >>> 0 : (u ^ 0x80000000) >>> 0;
      view[j] = (0xffffffff - ordered) * PACK_INDEX_LIMIT + (indices[begin + j] ?? 0);
    }
    view.sort();
    for (let j = 0; j < n; j++) {
      const key = view[j] ?? 0;
      const ordered = 0xffffffff - Math.floor(key / PACK_INDEX_LIMIT);
      indices[begin + j] = key % PACK_INDEX_LIMIT;
      bits[begin + j] = ordered >>> 31 === 1 ? (ordered ^ 0x80000000) >>> 0 : ~ordered >>> 0;
    }
  }
  return { offsets, indices, values };
}
