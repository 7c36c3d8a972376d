/**
 * A [dSae][dIn] weight matrix on the GPU, split by feature range into shards that each fit one
 * storage binding. An R1 SAE (7168 × 28672) is 411 MB in bf16 and 822 MB in f32 — 4 or 7
 * shards under the default 128 MiB binding limit. Rows are padded to a multiple of 8 weights
 * (dInPad) so every row starts 16-byte aligned for vec4 loads; real widths (1536, 4096, 7168)
 * need no padding and upload without a copy.
 */
import { UnsupportedError } from '../errors.js';
import { bytesPerElement, type WeightDtype } from '../sae/dtype.js';
import type { WeightMatrix } from '../sae/weights.js';
import type { BufferPool } from './resources.js';

export interface WeightShard {
  readonly buffer: GPUBuffer;
  /** First feature (row) in this shard. */
  readonly rowStart: number;
  readonly rows: number;
}

export interface ShardedMatrix {
  readonly dtype: WeightDtype;
  readonly dIn: number;
  readonly dInPad: number;
  readonly rowsTotal: number;
  readonly shards: readonly WeightShard[];
}

/** Rows per shard so that a shard fits `maxBytes` (binding and buffer limits). */
export function rowsPerShard(dInPad: number, dtype: WeightDtype, maxBytes: number): number {
  const rowBytes = dInPad * bytesPerElement(dtype);
  const rows = Math.floor(maxBytes / rowBytes);
  if (rows < 1) {
    throw new UnsupportedError(
      `One weight row (${rowBytes} bytes) exceeds the device's storage binding limit (${maxBytes} bytes); request a device with higher limits.`,
    );
  }
  return rows;
}

/** Uploads a matrix, shard by shard; `maxShardBytes` caps each shard (tests force small shards). */
export function uploadSharded(
  device: GPUDevice,
  pool: BufferPool,
  label: string,
  m: WeightMatrix,
  rowsTotal: number,
  dIn: number,
  maxShardBytes: number,
): ShardedMatrix {
  const dInPad = Math.ceil(dIn / 8) * 8;
  const perShard = rowsPerShard(dInPad, m.dtype, maxShardBytes);
  const shards: WeightShard[] = [];
  for (let rowStart = 0; rowStart < rowsTotal; rowStart += perShard) {
    const rows = Math.min(perShard, rowsTotal - rowStart);
    const bytes = rows * dInPad * bytesPerElement(m.dtype);
    const buffer = pool.create(`${label} rows ${rowStart}..${rowStart + rows}`, bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC);
    if (dInPad === dIn) {
      const view = m.data.subarray(rowStart * dIn, (rowStart + rows) * dIn);
      device.queue.writeBuffer(buffer, 0, view.buffer, view.byteOffset, view.byteLength);
    } else {
      // Pad each row with zeros; done once per load, only for widths that are not multiples of 8.
      const padded = m.data instanceof Float32Array ? new Float32Array(rows * dInPad) : new Uint16Array(rows * dInPad);
      for (let r = 0; r < rows; r++) {
        padded.set(m.data.subarray((rowStart + r) * dIn, (rowStart + r + 1) * dIn), r * dInPad);
      }
      device.queue.writeBuffer(buffer, 0, padded.buffer, 0, padded.byteLength);
    }
    shards.push({ buffer, rowStart, rows });
  }
  return { dtype: m.dtype, dIn, dInPad, rowsTotal, shards };
}
