/**
 * The feature map: a 2-D place for every SAE feature, from a UMAP of its decoder direction (row f
 * of W_dec) under cosine distance, scaled into [0, 1]² — FeatureCatalog.map's layout
 * [x0, y0, x1, y1, …]. Features whose decoder directions point the same way (they write the same
 * thing into the residual stream) land close together.
 *
 * Three ways to get one: `computeFeatureMap` on this thread (cooperative: it yields every slice),
 * `computeFeatureMapInWorker` off it, or `readFeatureMap` for a map precomputed and shipped with the
 * SAE (tools/tiny-r1/feature_map.ts writes one; the format is documented in docs/feature-map.md).
 */
import { FeatureCatalogError, LoupeError, ShapeMismatchError, UnsupportedError } from '../errors.js';
import { umap, type UmapOptions, type UmapParameters, type UmapProgress } from './umap.js';

export type { UmapOptions, UmapParameters, UmapProgress } from './umap.js';

function checkShape(decoderRows: Float32Array, dSae: number, dIn: number): void {
  if (!(decoderRows instanceof Float32Array)) {
    throw new ShapeMismatchError('The decoder rows must be a Float32Array (W_dec as [dSae, dIn], row-major); widen f16/bf16 weights first.');
  }
  for (const [name, v] of [['dSae', dSae], ['dIn', dIn]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new ShapeMismatchError(`${name} must be a positive integer; got ${String(v)}.`);
  }
  if (decoderRows.length !== dSae * dIn) {
    throw new ShapeMismatchError(
      `Expected W_dec as ${dSae} × ${dIn} = ${dSae * dIn} values (row-major, one row per feature), got ${decoderRows.length}. A [dIn, dSae] decoder must be transposed first.`,
    );
  }
}

/**
 * The feature map of an SAE on this thread: UMAP of `decoderRows` (W_dec, dSae × dIn, row-major).
 * Returns [x0, y0, …] in [0, 1]², 2·dSae values. The computation yields to the event loop every
 * `sliceMs`; prefer `computeFeatureMapInWorker` in a page. Deterministic for a given seed.
 */
export async function computeFeatureMap(decoderRows: Float32Array, dSae: number, dIn: number, options: UmapOptions = {}): Promise<Float32Array> {
  checkShape(decoderRows, dSae, dIn);
  return (await umap(decoderRows, dSae, dIn, options)).embedding;
}

// ────────────────────────────────────────────────────────────────────────────── worker

/** Main thread → worker. */
export interface FeatureMapRequest {
  readonly type: 'compute';
  readonly rows: Float32Array;
  readonly dSae: number;
  readonly dIn: number;
  readonly parameters: UmapParameters;
}

/** Worker → main thread. */
export type FeatureMapReply =
  | { readonly type: 'progress'; readonly progress: UmapProgress }
  | { readonly type: 'done'; readonly map: Float32Array }
  | { readonly type: 'error'; readonly name: string; readonly message: string };

/** The part of a Web Worker that computeFeatureMapInWorker uses. */
export interface FeatureMapWorker {
  postMessage(message: FeatureMapRequest, transfer: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
  addEventListener(type: 'error', listener: (event: ErrorEvent) => void): void;
  terminate(): void;
}

export interface FeatureMapWorkerOptions extends UmapOptions {
  /**
   * Hand `decoderRows`' buffer to the worker instead of copying it: saves a dSae × dIn copy but
   * detaches the caller's array (its length becomes 0). Default false.
   */
  readonly transfer?: boolean;
  /** Makes the worker (default: this module's feature-map.worker.ts, which Vite bundles). */
  readonly createWorker?: () => FeatureMapWorker;
}

function defaultWorker(): FeatureMapWorker {
  if (typeof Worker === 'undefined') {
    throw new UnsupportedError('This environment has no Web Workers (Node?). Call computeFeatureMap, which runs on the current thread, or pass createWorker.');
  }
  // This exact form (a literal URL next to import.meta.url) is what Vite recognises and bundles.
  return new Worker(new URL('./feature-map.worker.ts', import.meta.url), { type: 'module' });
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('The feature map computation was aborted.', 'AbortError');
}

/** Rebuilds an error the worker reported by name, so callers can `instanceof` it as if it were local. */
function errorFromWorker(name: string, message: string): Error {
  switch (name) {
    case 'FeatureCatalogError':
      return new FeatureCatalogError(message);
    case 'ShapeMismatchError':
      return new ShapeMismatchError(message);
    case 'AbortError':
      return new DOMException(message, 'AbortError');
    default:
      return new LoupeError(`The feature-map worker failed (${name}): ${message}`);
  }
}

/**
 * `computeFeatureMap` in a dedicated Web Worker, so the page stays responsive for the minutes a
 * large SAE can take. The decoder travels as a transferred buffer (a copy unless `transfer`), the
 * map comes back transferred. Aborting terminates the worker at once. One worker per call, ended
 * when the call settles.
 */
export function computeFeatureMapInWorker(decoderRows: Float32Array, dSae: number, dIn: number, options: FeatureMapWorkerOptions = {}): Promise<Float32Array> {
  const { signal, onProgress, transfer, createWorker, ...parameters } = options;
  try {
    checkShape(decoderRows, dSae, dIn);
    signal?.throwIfAborted();
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new LoupeError(String(err)));
  }
  let worker: FeatureMapWorker;
  try {
    worker = (createWorker ?? defaultWorker)();
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new LoupeError(String(err)));
  }
  const ownsWholeBuffer =
    decoderRows.buffer instanceof ArrayBuffer && decoderRows.byteOffset === 0 && decoderRows.byteLength === decoderRows.buffer.byteLength;
  const rows = transfer === true && ownsWholeBuffer ? decoderRows : decoderRows.slice();
  return new Promise<Float32Array>((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      worker.terminate();
      fn();
    };
    const onAbort = (): void => finish(() => reject(abortReason(signal as AbortSignal)));
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.addEventListener('message', (event: MessageEvent) => {
      const reply = event.data as FeatureMapReply;
      if (reply.type === 'progress') {
        if (!settled) onProgress?.(reply.progress);
      } else if (reply.type === 'done') {
        finish(() => resolve(reply.map));
      } else if (reply.type === 'error') {
        finish(() => reject(errorFromWorker(reply.name, reply.message)));
      }
    });
    worker.addEventListener('error', (event: ErrorEvent) => {
      // A script that fails to load or throws outside the handler lands here, not as a reply.
      finish(() => reject(new LoupeError(`The feature-map worker failed to run: ${event.message || 'no message'}. Check that the bundler emitted feature-map.worker.`)));
    });
    worker.postMessage({ type: 'compute', rows, dSae, dIn, parameters }, [rows.buffer as ArrayBuffer]);
  });
}

// ────────────────────────────────────────────────────────────────────────────── precomputed files

/** The JSON feature-map file, `feature_map.json` beside an SAE's weights. */
export interface FeatureMapFile {
  readonly format: typeof FEATURE_MAP_FORMAT;
  readonly version: number;
  readonly d_sae: number;
  readonly d_in?: number;
  /** What was embedded and how (free-form provenance: parameters, a hash of W_dec, quality). */
  readonly provenance?: Record<string, unknown>;
  /** [x0, y0, x1, y1, …] in [0, 1], 2·d_sae numbers. */
  readonly xy: readonly number[];
}

export const FEATURE_MAP_FORMAT = 'loupe-feature-map';
export const FEATURE_MAP_VERSION = 1;

function checkCoordinates(xy: ArrayLike<unknown>, dSae: number, where: string): Float32Array {
  if (xy.length !== 2 * dSae) {
    throw new FeatureCatalogError(
      `${where} holds ${xy.length} coordinates; an SAE with ${dSae} features needs ${2 * dSae} ([x, y] per feature). The map belongs to another SAE: recompute it for this one.`,
    );
  }
  const out = new Float32Array(2 * dSae);
  for (let i = 0; i < xy.length; i++) {
    const v = xy[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new FeatureCatalogError(`${where}: the ${i % 2 === 0 ? 'x' : 'y'} of feature ${i >> 1} is ${String(v)}, not a finite number. The file is corrupt; recompute it.`);
    }
    if (v < 0 || v > 1) {
      throw new FeatureCatalogError(`${where}: the ${i % 2 === 0 ? 'x' : 'y'} of feature ${i >> 1} is ${v}, outside [0, 1]. Map files hold coordinates scaled into the unit square; recompute it.`);
    }
    out[i] = v;
  }
  return out;
}

/**
 * Reads a precomputed feature map for an SAE with `dSae` features:
 *   - bytes (ArrayBuffer or a view): `feature_map.bin`, raw little-endian float32 [x0, y0, …], 8·dSae bytes;
 *   - a string: the text of `feature_map.json`;
 *   - an object: that JSON already parsed.
 * Throws FeatureCatalogError on a wrong format or version, a count that does not match dSae, or a
 * coordinate that is not a finite number in [0, 1].
 */
export function readFeatureMap(source: ArrayBuffer | ArrayBufferView | string | object, dSae: number): Float32Array {
  if (!Number.isSafeInteger(dSae) || dSae <= 0) throw new FeatureCatalogError(`dSae must be a positive integer; got ${String(dSae)}.`);
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    const bytes = source instanceof ArrayBuffer ? new Uint8Array(source) : new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    if (bytes.byteLength !== 8 * dSae) {
      throw new FeatureCatalogError(
        `A binary feature map holds two little-endian float32 per feature: ${8 * dSae} bytes for ${dSae} features; this one has ${bytes.byteLength}. It belongs to another SAE or is truncated.`,
      );
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const values = Array.from({ length: 2 * dSae }, (_, i) => view.getFloat32(4 * i, true));
    return checkCoordinates(values, dSae, 'The binary feature map');
  }
  let file: unknown = source;
  if (typeof source === 'string') {
    try {
      file = JSON.parse(source);
    } catch (cause) {
      throw new FeatureCatalogError(`The feature map is not valid JSON (${cause instanceof Error ? cause.message : String(cause)}). Expected feature_map.json as written by tools/tiny-r1/feature_map.ts.`, { cause });
    }
  }
  if (typeof file !== 'object' || file === null || Array.isArray(file)) {
    throw new FeatureCatalogError(`A feature-map file is a JSON object with "format": "${FEATURE_MAP_FORMAT}"; got ${Array.isArray(file) ? 'an array' : typeof file}.`);
  }
  const f = file as Record<string, unknown>;
  if (f['format'] !== FEATURE_MAP_FORMAT) {
    throw new FeatureCatalogError(`Expected "format": "${FEATURE_MAP_FORMAT}" in the feature-map file, got ${JSON.stringify(f['format']) ?? 'none'}.`);
  }
  if (f['version'] !== FEATURE_MAP_VERSION) {
    throw new FeatureCatalogError(`This build reads feature-map version ${FEATURE_MAP_VERSION}; the file is version ${JSON.stringify(f['version']) ?? 'missing'}. Update Loupe or rewrite the file.`);
  }
  if (f['d_sae'] !== dSae) {
    throw new FeatureCatalogError(`The feature map is for an SAE with d_sae = ${JSON.stringify(f['d_sae']) ?? 'missing'}, but this SAE has ${dSae} features. Recompute the map for this SAE.`);
  }
  const xy = f['xy'];
  if (!Array.isArray(xy)) throw new FeatureCatalogError('The feature-map file has no "xy" array of coordinates.');
  return checkCoordinates(xy, dSae, 'The feature-map file');
}

/** The JSON file for a map (coordinates rounded to 6 decimals: 1e-6 of the map is far below a pixel). */
export function featureMapFile(map: Float32Array, dSae: number, dIn: number | undefined, provenance: Record<string, unknown> = {}): FeatureMapFile {
  const xy = checkCoordinates(map, dSae, 'The map');
  return {
    format: FEATURE_MAP_FORMAT,
    version: FEATURE_MAP_VERSION,
    d_sae: dSae,
    ...(dIn === undefined ? {} : { d_in: dIn }),
    provenance,
    xy: Array.from(xy, (v) => Math.round(v * 1e6) / 1e6),
  };
}

/** The binary form: little-endian float32 [x0, y0, …]. */
export function featureMapBytes(map: Float32Array, dSae: number): Uint8Array {
  const xy = checkCoordinates(map, dSae, 'The map');
  const out = new Uint8Array(8 * dSae);
  const view = new DataView(out.buffer);
  xy.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return out;
}
