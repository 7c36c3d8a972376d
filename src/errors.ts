/**
 * Named errors. Every message says what was expected, what was found, and what to do — a reader
 * staring at a console should not need the source to recover.
 */

/** Base class of every error Loupe throws on purpose. */
export class LoupeError extends Error {
  override name = 'LoupeError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** An SAE description is inconsistent or asks for something unsupported (k > dSae, unknown architecture ...). */
export class SaeConfigError extends LoupeError {
  override name = 'SaeConfigError';
}

/** A tensor, input vector or buffer has the wrong shape, length or dtype. */
export class ShapeMismatchError extends LoupeError {
  override name = 'ShapeMismatchError';
}

/** A request that is well-formed but outside what this build supports (e.g. k > 256 on the GPU top-k path). */
export class UnsupportedError extends LoupeError {
  override name = 'UnsupportedError';
}

/** No usable WebGPU adapter or device, or the device was lost. */
export class GpuUnavailableError extends LoupeError {
  override name = 'GpuUnavailableError';
}

/** The GPU device was lost while Loupe was using it; results already returned stay valid. */
export class GpuDeviceLostError extends LoupeError {
  override name = 'GpuDeviceLostError';
}

/** A WebGPU validation or out-of-memory error surfaced from Loupe's own commands (a Loupe bug or an exhausted device). */
export class GpuValidationError extends LoupeError {
  override name = 'GpuValidationError';
}

/** A method was called on an `Sae` after `destroy()`. */
export class DestroyedError extends LoupeError {
  override name = 'DestroyedError';
}

/** A safetensors file is truncated, hostile or malformed. */
export class SafetensorsError extends LoupeError {
  override name = 'SafetensorsError';
}

/** A PyTorch checkpoint is malformed, truncated, or names a pickle global Loupe refuses to load. */
export class TorchCheckpointError extends LoupeError {
  override name = 'TorchCheckpointError';
}

/** An SAE's files could not be fetched or found (HTTP status, missing file, unreadable folder). */
export class SaeSourceError extends LoupeError {
  override name = 'SaeSourceError';
}

/** A stream speaks a Loupe protocol major version this client does not know. */
export class ProtocolVersionError extends LoupeError {
  override name = 'ProtocolVersionError';
}

/** A frame of the Loupe stream protocol is malformed (bad length, sizes, order, dIn). */
export class MalformedFrameError extends LoupeError {
  override name = 'MalformedFrameError';
}

/** The activation server refused the request or reported an error frame. */
export class RemoteSourceError extends LoupeError {
  override name = 'RemoteSourceError';
  constructor(
    message: string,
    readonly code: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The stream dropped and could not be resumed; every token received so far is kept. */
export class StreamDroppedError extends LoupeError {
  override name = 'StreamDroppedError';
}

/** An ONNX model is malformed or hostile, or a graph edit cannot find or rewrite the tensor it was asked for. */
export class OnnxGraphError extends LoupeError {
  override name = 'OnnxGraphError';
}

/** A label, example or feature-map file (CSV, SQLite, Neuronpedia JSON, DuckDB) is malformed or lacks an expected table/column. */
export class FeatureCatalogError extends LoupeError {
  override name = 'FeatureCatalogError';
}

/** A recorded trace file is malformed, truncated, or from an incompatible version. */
export class TraceFormatError extends LoupeError {
  override name = 'TraceFormatError';
}

/** A Session was asked for something its state does not allow (run while running, a source and SAE that disagree). */
export class SessionError extends LoupeError {
  override name = 'SessionError';
}
