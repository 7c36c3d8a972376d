/**
 * Where streamed tensor bytes go. A `MatrixSink` collects whole rows of a weight matrix (up to
 * a chunk of a few MB), converts them to the dtype asked for and hands them to a
 * `MatrixTarget` — GPU shards (gpu/weight-upload.ts) or a CPU array — then reuses its chunk
 * buffer. A `VectorSink` keeps a small tensor whole and widens it to f32.
 */
import { ShapeMismatchError } from '../../errors.js';
import type { SafetensorsDtype } from '../../formats/safetensors.js';
import type { TensorSink } from '../../formats/tensor-stream.js';
import { bf16ToF32, f16ToF32, type WeightDtype } from '../dtype.js';
import { convertWeights } from './convert.js';
import type { MatrixLayout } from './plan.js';

export interface MatrixTarget {
  /** Storage dtype of the destination. */
  readonly dtype: WeightDtype;
  /** Feature rows row .. row+rows, each dIn values ([rows][dIn]). */
  writeFeatureRows(row: number, rows: number, data: Float32Array | Uint16Array): void | Promise<void>;
  /** Input rows i0 .. i0+rows of the transpose, each dSae values ([rows][dSae]); i0 is even. */
  writeInputRows(i0: number, rows: number, data: Float32Array | Uint16Array): void | Promise<void>;
}

/** Default chunk: big enough to amortise a GPU dispatch, small against an 822 MB file. */
export const CHUNK_BYTES = 8 * 1024 * 1024;

export class MatrixSink implements TensorSink {
  readonly #target: MatrixTarget;
  readonly #from: WeightDtype;
  readonly #layout: MatrixLayout;
  readonly #rowBytes: number;
  readonly #rowCount: number;
  readonly #chunkRows: number;
  readonly #name: string;
  readonly #buf: Uint8Array;
  #filled = 0;
  #rowsDone = 0;

  /**
   * `layout` is how the bytes arrive (the file's layout, flipped for a transposed torch view);
   * `dSae`/`dIn` are the matrix's feature and input widths.
   */
  constructor(name: string, target: MatrixTarget, from: WeightDtype, layout: MatrixLayout, dSae: number, dIn: number, chunkBytes = CHUNK_BYTES) {
    // A zero-wide matrix would make a zero-byte chunk (and NaN rows per chunk): refuse it by name
    // here rather than report it later as a "truncated" file.
    if (!Number.isSafeInteger(dSae) || dSae <= 0 || !Number.isSafeInteger(dIn) || dIn <= 0) {
      throw new ShapeMismatchError(`Tensor "${name}" is a ${dSae} × ${dIn} (d_sae × d_in) weight matrix; both must be positive integers. Check d_in and d_sae in the SAE's config.`);
    }
    this.#name = name;
    this.#target = target;
    this.#from = from;
    this.#layout = layout;
    const rowLen = layout === 'feature-major' ? dIn : dSae;
    this.#rowCount = layout === 'feature-major' ? dSae : dIn;
    this.#rowBytes = rowLen * (from === 'f32' ? 4 : 2);
    // An even number of rows per chunk, so 16-bit input rows pair up into whole u32 words.
    // A NaN or infinite chunk size (a bad option) falls back to the default: NaN rows would make a
    // zero-byte buffer that write() could never fill.
    const perChunk = Math.floor(chunkBytes / this.#rowBytes);
    const rows = Math.max(2, Number.isFinite(perChunk) ? perChunk : Math.floor(CHUNK_BYTES / this.#rowBytes));
    this.#chunkRows = Math.min(rows - (rows % 2), this.#rowCount + (this.#rowCount % 2));
    this.#buf = new Uint8Array(this.#chunkRows * this.#rowBytes);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.byteLength) {
      const take = Math.min(bytes.byteLength - at, this.#buf.byteLength - this.#filled);
      this.#buf.set(bytes.subarray(at, at + take), this.#filled);
      this.#filled += take;
      at += take;
      if (this.#filled === this.#buf.byteLength) await this.#flush();
    }
  }

  async #flush(): Promise<void> {
    const rows = Math.floor(this.#filled / this.#rowBytes);
    if (rows === 0) return;
    if (this.#rowsDone + rows > this.#rowCount) {
      throw new ShapeMismatchError(`Tensor "${this.#name}" delivered more than its ${this.#rowCount} rows; the file is corrupt.`);
    }
    const n = (rows * this.#rowBytes) / (this.#from === 'f32' ? 4 : 2);
    const raw = this.#from === 'f32' ? new Float32Array(this.#buf.buffer, 0, n) : new Uint16Array(this.#buf.buffer, 0, n);
    const data = convertWeights(raw, this.#from, this.#target.dtype);
    if (this.#layout === 'feature-major') await this.#target.writeFeatureRows(this.#rowsDone, rows, data);
    else await this.#target.writeInputRows(this.#rowsDone, rows, data);
    this.#rowsDone += rows;
    const rest = this.#filled - rows * this.#rowBytes;
    this.#buf.copyWithin(0, rows * this.#rowBytes, this.#filled);
    this.#filled = rest;
  }

  async end(): Promise<void> {
    await this.#flush();
    if (this.#rowsDone !== this.#rowCount || this.#filled !== 0) {
      throw new ShapeMismatchError(`Tensor "${this.#name}" ended after ${this.#rowsDone} of ${this.#rowCount} rows; the file is truncated.`);
    }
  }
}

/** A small float tensor kept whole, then widened to f32. */
export class VectorSink implements TensorSink {
  readonly #bytes: Uint8Array;
  readonly #dtype: SafetensorsDtype;
  readonly #name: string;
  #filled = 0;
  #done: (v: Float32Array) => void;

  constructor(name: string, dtype: SafetensorsDtype, numel: number, done: (v: Float32Array) => void) {
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
      throw new ShapeMismatchError(`Tensor "${name}" is ${dtype}; biases, thresholds and scales must be floating point.`);
    }
    this.#name = name;
    this.#dtype = dtype;
    this.#bytes = new Uint8Array(numel * (dtype === 'F64' ? 8 : dtype === 'F32' ? 4 : 2));
    this.#done = done;
  }

  write(bytes: Uint8Array): void {
    if (this.#filled + bytes.byteLength > this.#bytes.byteLength) throw new ShapeMismatchError(`Tensor "${this.#name}" is longer than its shape says.`);
    this.#bytes.set(bytes, this.#filled);
    this.#filled += bytes.byteLength;
  }

  end(): void {
    if (this.#filled !== this.#bytes.byteLength) throw new ShapeMismatchError(`Tensor "${this.#name}" ended early; the file is truncated.`);
    const b = this.#bytes.buffer;
    let out: Float32Array;
    if (this.#dtype === 'F32') out = new Float32Array(b);
    else if (this.#dtype === 'F64') out = Float32Array.from(new Float64Array(b));
    else {
      const bits = new Uint16Array(b);
      const widen = this.#dtype === 'BF16' ? bf16ToF32 : f16ToF32;
      out = new Float32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = widen(bits[i] ?? 0);
    }
    this.#done(out);
  }
}

/** The CPU backend's destination: one [dSae][dIn] array, transposed rows scattered into it. */
export class CpuMatrixTarget implements MatrixTarget {
  readonly data: Float32Array | Uint16Array;
  constructor(
    readonly dtype: WeightDtype,
    readonly dSae: number,
    readonly dIn: number,
  ) {
    this.data = dtype === 'f32' ? new Float32Array(dSae * dIn) : new Uint16Array(dSae * dIn);
  }

  writeFeatureRows(row: number, _rows: number, data: Float32Array | Uint16Array): void {
    this.data.set(data, row * this.dIn);
  }

  writeInputRows(i0: number, rows: number, data: Float32Array | Uint16Array): void {
    const { dSae, dIn } = this;
    const out = this.data;
    for (let r = 0; r < rows; r++) {
      const base = r * dSae;
      for (let f = 0; f < dSae; f++) out[f * dIn + i0 + r] = data[base + f] ?? 0;
    }
  }
}
