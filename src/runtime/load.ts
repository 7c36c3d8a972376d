/**
 * `loadSae`: a published SAE, unchanged, from a URL, a Hugging Face repo id, a local folder or
 * files in memory — streamed onto the GPU while it downloads.
 *
 *   const sae = await loadSae('Goodfire/DeepSeek-R1-SAE-l37', { subfolder: 'math', onProgress });
 *
 * The steps: find the weights and config in the folder (locate.ts); open each weights file as
 * a stream and read its header (safetensors JSON, or torch's data.pkl); let the format adapter
 * plan where every tensor goes; create the GPU shards (or CPU arrays) empty; pump the rest of
 * the file through, converting dtype and transposing chunk by chunk. On any error or abort the
 * streams are cancelled and every GPU buffer created so far is freed.
 */
import { GpuUnavailableError, SafetensorsError, SaeConfigError, TorchCheckpointError } from '../errors.js';
import { streamSafetensors } from '../formats/safetensors-stream.js';
import type { StreamedTensor, TensorSink, TensorStream } from '../formats/tensor-stream.js';
import { streamTorchCheckpoint } from '../formats/torch-stream.js';
import { GpuContext } from '../gpu/device.js';
import { BufferPool } from '../gpu/resources.js';
import { GpuMatrixTarget } from '../gpu/weight-upload.js';
import { ByteReader } from '../io/byte-reader.js';
import type { SaeFiles } from '../io/folder.js';
import { resolveSaeConfig } from '../sae/config.js';
import type { WeightDtype } from '../sae/dtype.js';
import { adapterFor } from '../sae/loaders/index.js';
import { matrixDtype, type MatrixLayout, type SaeFormatName, type TensorHeaders } from '../sae/loaders/plan.js';
import { CpuMatrixTarget, MatrixSink, VectorSink } from '../sae/loaders/sinks.js';
import { CpuBackend } from './cpu-backend.js';
import { GpuBackend } from './gpu-backend.js';
import { locateSae, openSource, type SaeSource } from './locate.js';
import { Sae, type SaeOptions } from './sae.js';

export type { SaeFiles, SaeSource };

export interface LoadProgress {
  /** The weights file, relative to the SAE's folder. */
  readonly file: string;
  readonly loaded: number;
  /** Undefined when the server sends no length. */
  readonly total: number | undefined;
}

export interface LoadSaeOptions extends SaeOptions {
  /** Folder inside the source holding the SAE (a sparsify hookpoint such as 'layers.3', or Goodfire's 'math'). */
  readonly subfolder?: string;
  /** Force a format instead of detecting it from the tensor names. */
  readonly format?: SaeFormatName;
  /** Storage dtype on the device: 'auto' (default) keeps the file's; 'f16'/'bf16' halve an f32 SAE. */
  readonly weightDtype?: WeightDtype | 'auto';
  /** Branch, tag or commit of a Hugging Face repo (default 'main'). */
  readonly revision?: string;
  /** Hub endpoint for repo ids (default 'https://huggingface.co'; a mirror or a local server). */
  readonly endpoint?: string;
  /** Name of the weights file in the folder when it cannot be listed or guessed. */
  readonly weights?: string;
  /** Replaces the global fetch (auth headers, a proxy, tests). */
  readonly fetch?: typeof fetch;
  /** Bytes received per weights file. */
  readonly onProgress?: (p: LoadProgress) => void;
  /** Aborting stops the network reads and frees the GPU buffers created so far. */
  readonly signal?: AbortSignal;
  /** Keep downloads in the browser's Cache Storage so a reload does not fetch again (default true). */
  readonly cache?: boolean;
  /** Bytes of weights converted and uploaded at a time (default 8 MiB): the loader's host memory. */
  readonly chunkBytes?: number;
}

function truncatedError(path: string): (what: string, at: number) => Error {
  const torch = !path.endsWith('.safetensors');
  return (what, at) => {
    const msg = `${path} ended at byte ${at} while reading ${what}; the file is truncated (an interrupted download?). Delete any partial copy and load it again.`;
    return torch ? new TorchCheckpointError(msg) : new SafetensorsError(msg);
  };
}

/** The layout the bytes arrive in: a transposed torch view flips the file's declared layout. */
function arrivingLayout(layout: MatrixLayout, t: StreamedTensor): MatrixLayout {
  if (t.order === 'row-major') return layout;
  return layout === 'feature-major' ? 'input-major' : 'feature-major';
}

export async function loadSae(source: SaeSource | { files: SaeFiles }, options: LoadSaeOptions = {}): Promise<Sae> {
  const { signal } = options;
  signal?.throwIfAborted();
  const opened = await openSource(source, options);
  const found = await locateSae(opened, options);
  const streams: TensorStream[] = [];
  const readers: ByteReader[] = [];
  let ctx: GpuContext | undefined;
  let pool: BufferPool | undefined;
  try {
    // Headers first: every weights file is opened and read up to its tensor list.
    const headers: Record<string, StreamedTensor> = {};
    for (const path of found.weights) {
      const file = await opened.folder.open(path);
      const reader = new ByteReader(file.body, {
        signal,
        onBytes: options.onProgress !== undefined ? (loaded) => options.onProgress?.({ file: path, loaded, total: file.size }) : undefined,
        truncated: truncatedError(path),
      });
      // Registered before the header is read, so a failure inside the header still cancels the read.
      readers.push(reader);
      const stream = path.endsWith('.safetensors') ? await streamSafetensors(reader, file.size) : await streamTorchCheckpoint(reader);
      streams.push(stream);
      for (const [name, t] of stream.tensors) {
        if (headers[name] !== undefined) throw new SaeConfigError(`Tensor "${name}" appears in two weight files (${path} and another shard); the checkpoint is inconsistent.`);
        headers[name] = t;
      }
    }
    const tensorHeaders: TensorHeaders = headers;
    const plan = adapterFor(tensorHeaders, found.config, options.format).plan(tensorHeaders, found.config, found.folder !== undefined ? { folder: found.folder } : {});
    const encHeader = headers[plan.W_enc.tensor];
    if (encHeader === undefined) throw new SaeConfigError(`The plan names a missing tensor "${plan.W_enc.tensor}".`);
    const dtype = options.weightDtype === undefined || options.weightDtype === 'auto' ? matrixDtype(encHeader, plan.W_enc.tensor) : options.weightDtype;
    const { dIn, dSae } = plan;

    // Where the big matrices go: GPU shards, or CPU arrays.
    const choice = options.backend ?? 'auto';
    if (choice !== 'cpu') {
      try {
        ctx = await GpuContext.create(options);
      } catch (err) {
        if (!(choice === 'auto' && err instanceof GpuUnavailableError)) throw err;
      }
    }
    let maxShard = 0;
    if (ctx !== undefined) {
      const caps = ctx.capabilities;
      const limit = Math.min(caps.maxStorageBufferBindingSize, caps.maxBufferSize);
      maxShard = Math.min(options.maxShardBytes ?? limit, limit);
      pool = new BufferPool(ctx.device);
    }
    const gpu = ctx;
    const gpuPool = pool;
    const target = (label: string): GpuMatrixTarget | CpuMatrixTarget =>
      gpu !== undefined && gpuPool !== undefined ? new GpuMatrixTarget(gpu, gpuPool, label, dtype, dSae, dIn, maxShard) : new CpuMatrixTarget(dtype, dSae, dIn);
    const enc = target('loupe W_enc');
    const dec = plan.W_dec !== undefined ? target('loupe W_dec') : undefined;
    const values = new Map<string, Float32Array>();
    const route = (t: StreamedTensor): TensorSink | undefined => {
      if (t.name === plan.W_enc.tensor) return new MatrixSink(t.name, enc, matrixDtype(t, t.name), arrivingLayout(plan.W_enc.layout, t), dSae, dIn, options.chunkBytes);
      if (plan.W_dec !== undefined && dec !== undefined && t.name === plan.W_dec.tensor) {
        return new MatrixSink(t.name, dec, matrixDtype(t, t.name), arrivingLayout(plan.W_dec.layout, t), dSae, dIn, options.chunkBytes);
      }
      if (plan.vectors.includes(t.name)) return new VectorSink(t.name, t.dtype, t.shape.reduce((a, b) => a * b, 1), (v) => values.set(t.name, v));
      return undefined;
    };
    for (const s of streams) await s.pump(route);
    const done = plan.finish(values);
    const config = resolveSaeConfig({ ...done.config, weightDtype: dtype });
    const vectors = { b_enc: done.b_enc, b_dec: done.b_dec, ...(done.threshold !== undefined ? { threshold: done.threshold } : {}) };
    if (enc instanceof GpuMatrixTarget && gpu !== undefined && gpuPool !== undefined) {
      enc.finish();
      if (dec instanceof GpuMatrixTarget) dec.finish();
      const backend = new GpuBackend(gpu, config, { pool: gpuPool, encoder: enc.matrix, ...(dec instanceof GpuMatrixTarget ? { decoder: dec.matrix } : {}), ...vectors }, options);
      pool = undefined; // the backend owns the buffers now
      ctx = undefined; // and the Sae owns the context
      return await Sae.fromBackend(config, backend, gpu, options.warmup ?? true);
    }
    const weights = { W_enc: { dtype, data: (enc as CpuMatrixTarget).data }, ...(dec instanceof CpuMatrixTarget ? { W_dec: { dtype, data: dec.data } } : {}), ...vectors };
    return await Sae.fromBackend(config, new CpuBackend(config, weights), undefined, false);
  } catch (err) {
    await Promise.all([...streams.map((s) => s.cancel()), ...readers.map((r) => r.cancel())]);
    pool?.destroyAll();
    ctx?.release();
    if (err instanceof Error && err.name === 'AbortError') throw err;
    if (signal?.aborted === true) throw signal.reason instanceof Error ? signal.reason : err;
    throw err;
  }
}

