/**
 * Streams a weight matrix into GPU shards chunk by chunk (the `MatrixTarget` the loader writes
 * to). Feature rows are copied into place; input rows — the transpose, as Goodfire's W and
 * SAELens' W_enc are stored — are uploaded to one reusable staging buffer and scattered into
 * the feature-major shards by shaders/transpose_rows.wgsl. Host memory stays at one chunk; GPU
 * memory at the matrix plus one chunk.
 */
import { bytesPerElement, type WeightDtype } from '../sae/dtype.js';
import type { MatrixTarget } from '../sae/loaders/sinks.js';
import type { GpuContext } from './device.js';
import { buildKernel, type Kernel } from './kernels/simple.js';
import type { BufferPool } from './resources.js';
import { rowsPerShard, type ShardedMatrix, type WeightShard } from './sharded-weights.js';

/** Queue at most this many bytes before waiting for the GPU, so staging copies cannot pile up. */
const MAX_IN_FLIGHT = 64 * 1024 * 1024;
const WG = 64;

function transposeKernel(ctx: GpuContext, dtype: WeightDtype): Kernel {
  const half = dtype === 'f32' ? 0 : 1;
  return buildKernel(ctx, 'transposeRows', half ? 'u16' : 'u32', ['uniform', 'read', 'rw'], [], {}, { WG, HALF: half });
}

export class GpuMatrixTarget implements MatrixTarget {
  readonly matrix: ShardedMatrix;
  readonly #ctx: GpuContext;
  readonly #pool: BufferPool;
  readonly #label: string;
  readonly #dSae: number;
  #staging: GPUBuffer | undefined;
  #params: GPUBuffer | undefined;
  #inFlight = 0;

  constructor(ctx: GpuContext, pool: BufferPool, label: string, readonly dtype: WeightDtype, dSae: number, dIn: number, maxShardBytes: number) {
    this.#ctx = ctx;
    this.#pool = pool;
    this.#label = label;
    this.#dSae = dSae;
    const dInPad = Math.ceil(dIn / 8) * 8;
    const perShard = rowsPerShard(dInPad, dtype, maxShardBytes);
    const shards: WeightShard[] = [];
    for (let rowStart = 0; rowStart < dSae; rowStart += perShard) {
      const rows = Math.min(perShard, dSae - rowStart);
      // New buffers are zero-filled, which is also the row padding the kernels expect.
      const buffer = pool.create(`${label} rows ${rowStart}..${rowStart + rows}`, rows * dInPad * bytesPerElement(dtype), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
      shards.push({ buffer, rowStart, rows });
    }
    this.matrix = { dtype, dIn, dInPad, rowsTotal: dSae, shards };
  }

  async #throttle(bytes: number): Promise<void> {
    this.#inFlight += bytes;
    if (this.#inFlight >= MAX_IN_FLIGHT) {
      await this.#ctx.device.queue.onSubmittedWorkDone();
      this.#inFlight = 0;
    }
  }

  async writeFeatureRows(row: number, rows: number, data: Float32Array | Uint16Array): Promise<void> {
    const { dIn, dInPad, shards } = this.matrix;
    const bpe = bytesPerElement(this.dtype);
    const queue = this.#ctx.device.queue;
    for (const s of shards) {
      const from = Math.max(row, s.rowStart);
      const to = Math.min(row + rows, s.rowStart + s.rows);
      if (from >= to) continue;
      if (dInPad === dIn) {
        const view = data.subarray((from - row) * dIn, (to - row) * dIn);
        queue.writeBuffer(s.buffer, (from - s.rowStart) * dInPad * bpe, view.buffer, view.byteOffset, view.byteLength);
      } else {
        // Rows not a multiple of 8 wide get zero padding so every row starts 16-byte aligned.
        const padded = this.dtype === 'f32' ? new Float32Array((to - from) * dInPad) : new Uint16Array((to - from) * dInPad);
        for (let r = from; r < to; r++) padded.set(data.subarray((r - row) * dIn, (r - row + 1) * dIn), (r - from) * dInPad);
        queue.writeBuffer(s.buffer, (from - s.rowStart) * dInPad * bpe, padded.buffer, 0, padded.byteLength);
      }
    }
    await this.#throttle(data.byteLength);
  }

  async writeInputRows(i0: number, rows: number, data: Float32Array | Uint16Array): Promise<void> {
    const { device } = this.#ctx;
    const bytes = Math.ceil(data.byteLength / 4) * 4;
    if (this.#staging === undefined || this.#staging.size < bytes) {
      if (this.#staging !== undefined) this.#pool.release(this.#staging);
      this.#staging = this.#pool.create(`${this.#label} transpose staging`, bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    }
    this.#params ??= this.#pool.uniform(`${this.#label} transpose params`, 256 * this.matrix.shards.length);
    const staging = this.#staging;
    const params = this.#params;
    if (data.byteLength % 4 === 0) device.queue.writeBuffer(staging, 0, data.buffer, data.byteOffset, data.byteLength);
    else {
      // An odd count of 16-bit values: pad to whole words (writeBuffer moves multiples of 4).
      const padded = new Uint16Array(data.length + 1);
      padded.set(data);
      device.queue.writeBuffer(staging, 0, padded.buffer, 0, padded.byteLength);
    }
    const kernel = transposeKernel(this.#ctx, this.dtype);
    const enc = device.createCommandEncoder({ label: `${this.#label} transpose` });
    const pass = enc.beginComputePass({ label: `${this.#label} transpose` });
    pass.setPipeline(kernel.pipeline);
    const ys = this.dtype === 'f32' ? rows : Math.ceil(rows / 2);
    this.matrix.shards.forEach((s, i) => {
      const p = new Uint32Array([this.#dSae, rows, i0, this.matrix.dInPad, s.rowStart, s.rows]);
      device.queue.writeBuffer(params, i * 256, p);
      const bg = device.createBindGroup({
        label: `${this.#label} transpose shard ${i}`,
        layout: kernel.layout,
        entries: [
          { binding: 0, resource: { buffer: params, offset: i * 256, size: 32 } },
          { binding: 1, resource: { buffer: staging } },
          { binding: 2, resource: { buffer: s.buffer } },
        ],
      });
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(Math.ceil(s.rows / WG), ys);
    });
    pass.end();
    device.queue.submit([enc.finish()]);
    await this.#throttle(data.byteLength);
  }

  /** Frees the staging buffers once the matrix is complete (the shards stay). */
  finish(): void {
    if (this.#staging !== undefined) this.#pool.release(this.#staging);
    if (this.#params !== undefined) this.#pool.release(this.#params);
    this.#staging = undefined;
    this.#params = undefined;
  }
}

