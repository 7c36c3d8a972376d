/**
 * What the streaming readers (safetensors-stream.ts, torch-stream.ts) hand the loader: the
 * tensor list as soon as the file's header has arrived, then a `pump` that routes each tensor's
 * bytes, in file order, to the sink the loader chose for it — or skips them.
 */
import type { SafetensorsDtype } from './safetensors.js';

export interface StreamedTensor {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /**
   * 'row-major': bytes arrive in the tensor's logical (C) order. 'column-major': a 2-D tensor
   * saved as a transposed view (strides [1, rows]), so bytes arrive as its transpose.
   */
  readonly order: 'row-major' | 'column-major';
}

export interface TensorSink {
  /** Consecutive pieces of the tensor's bytes (views valid only during the call). */
  write(bytes: Uint8Array): void | Promise<void>;
  /** All bytes delivered. */
  end(): void | Promise<void>;
}

export interface TensorStream {
  readonly tensors: ReadonlyMap<string, StreamedTensor>;
  /** Reads the rest of the file, giving each tensor's bytes to `route(tensor)` (undefined: skip). */
  pump(route: (t: StreamedTensor) => TensorSink | undefined): Promise<void>;
  /** Stops reading (abort, or an error elsewhere). */
  cancel(): Promise<void>;
}
