/**
 * onnxruntime-web running the SAE encode / dense-decode graphs, as the side-by-side competitor of
 * our WGSL kernels (Node only: it uses `webgpu` (dawn.node) and loads ORT's wasm from
 * node_modules, never from the network).
 *
 * Node/Dawn pitfalls handled here (see shared/reference/performance.md):
 *  1. dawn.node fails in `GPUQueue.writeBuffer` on a view of a SharedArrayBuffer (webgpu 0.6.2
 *     here throws "Invalid argument"; a segfault was seen before), and ORT's wasm memory is
 *     always shared: `GPUQueue.prototype.writeBuffer` is wrapped, process-wide, to copy such
 *     views into a plain ArrayBuffer first (ORT's uploads of weights and inputs pay one extra
 *     CPU copy; calls with ordinary buffers, like our kernels', pass straight through).
 *  2. V8 compiles ORT's ~26 MB wasm with TurboFan in the background for 30–60 s of CPU time on
 *     this 2-core machine. Without a live (ref'd) interval timer created before ORT is imported,
 *     the event loop stalls for that whole time. `initOrt()` starts such a timer; it stops once
 *     `waitForOrtCompile()` sees the process go quiet, or when the last bench is disposed.
 *     The background compile also competes for a core and keeps the process from exiting, so
 *     benchmarks should call `waitForOrtCompile()` once before timing anything.
 *  3. The `create([])` GPU object must stay reachable or dawn.node crashes: it is held in a
 *     module-level variable for the life of the process.
 *
 * Threads: ORT's wasm is used with numThreads = 1. Multi-threading does not work in Node with
 * the web bundle of 1.30: for threads it fetch()es its .mjs to build a worker blob URL, and
 * Node's fetch rejects file: URLs ("[wasm] TypeError: fetch failed").
 */

import type * as OrtNs from 'onnxruntime-web/webgpu';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { create, globals } from 'webgpu';
import { f32ToF16 } from '../../src/sae/dtype.js';
import {
  buildDecodeModel,
  buildEncodeModel,
  type BuiltModel,
  type OrtDtype,
  type WeightArray,
} from './graphs.js';

type Ort = typeof OrtNs;
type OrtSession = OrtNs.InferenceSession;
type OrtTensor = OrtNs.Tensor;

export type OrtEp = 'wasm' | 'webgpu';
export type OrtGraph = 'encode' | 'decode';
export type { OrtDtype, WeightArray } from './graphs.js';

/**
 * SAE weights in our layout. Matrices are [dSae][dIn] row-major (feature-major) for BOTH the
 * encoder and the decoder. Float32Array for dtype 'f32'; for 'f16' either Uint16Array (f16 bits,
 * used as is) or Float32Array (converted once here). Biases are optional (zeros).
 */
export interface OrtBenchWeights {
  readonly encoder?: WeightArray;
  readonly encoderBias?: WeightArray;
  readonly decoder?: WeightArray;
  readonly decoderBias?: WeightArray;
}

export interface OrtBenchOptions {
  readonly graph: OrtGraph;
  readonly ep: OrtEp;
  readonly dtype: OrtDtype;
  readonly dIn: number;
  readonly dSae: number;
  /** Top-k of the encode graph; for decode, the nonzeros per row of the random sparse input. */
  readonly k: number;
  /** Tokens per run. Fixed in the graph unless `dynamicTokens`. */
  readonly tokens: number;
  /**
   * Build the graph with a symbolic token dimension ("T") so that `setTokens` can switch T
   * without rebuilding an up-to-820 MB model and session. Default false: T fixed in the graph.
   */
  readonly dynamicTokens?: boolean;
  readonly weights: OrtBenchWeights;
  /**
   * Input fed to every run: x [tokens][dIn] (encode) or f [tokens][dSae] (decode), same typing
   * rule as the weights. Default: seeded random x in [-1, 1), or a sparse f with k positive
   * entries per row at random features.
   */
  readonly input?: WeightArray;
  readonly seed?: number;
  /**
   * webgpu: the GPUDevice ORT runs on. Pass the device our kernels use to compare on the same
   * device; when omitted one is created on the default adapter of the shared `create([])` GPU,
   * with the adapter's maximum buffer/binding limits and shader-f16/subgroups when offered.
   */
  readonly device?: GPUDevice;
  /**
   * Split weight matrices into column blocks no larger than this many bytes (see graphs.ts).
   * 'auto' (default): on webgpu only when a weight exceeds the device's maxBufferSize (ORT binds
   * tensors above maxStorageBufferBindingSize as several segments itself, but one tensor must
   * fit one GPUBuffer); never on wasm. With the device made by `requestOrtDevice` on lavapipe
   * (maxBufferSize 4 GiB) nothing is split. 'never': one MatMul regardless. A number: that
   * limit, e.g. `device.limits.maxStorageBufferBindingSize` for binding-sized blocks.
   */
  readonly maxInitializerBytes?: number | 'auto' | 'never';
  /**
   * webgpu only. 'cpu' (default): inputs are uploaded by ORT each run and outputs are read back
   * to the CPU inside `run()` (values/indices are what our pipeline reads back too).
   * 'gpu-buffer': the input is uploaded once to a GPUBuffer, outputs stay on the GPU and `run()`
   * waits for `queue.onSubmittedWorkDone()` instead of reading them back.
   */
  readonly ioLocation?: 'cpu' | 'gpu-buffer';
}

export interface OrtBenchInfo {
  readonly graph: OrtGraph;
  readonly ep: OrtEp;
  readonly dtype: OrtDtype;
  readonly dIn: number;
  readonly dSae: number;
  readonly k: number;
  readonly tokens: number;
  readonly dynamicTokens: boolean;
  /** Column blocks per weight matrix (1 = a single MatMul). */
  readonly blocks: number;
  readonly blockCols: number;
  readonly modelBytes: number;
  /** ms to build and serialise the ONNX model. */
  readonly buildMs: number;
  /** ms for InferenceSession.create (includes weight upload for webgpu). */
  readonly createMs: number;
  /** Adapter description (webgpu) or 'cpu'. */
  readonly adapter: string;
  readonly ioLocation: 'cpu' | 'gpu-buffer';
  readonly numThreads: number;
}

/** Outputs of one run, on the CPU. Float outputs are Float32Array (f32) or Uint16Array (f16). */
export interface OrtBenchOutputs {
  readonly values?: WeightArray;
  readonly indices?: BigInt64Array;
  readonly xHat?: WeightArray;
}

export interface OrtBench {
  /** Current settings and setup costs (a fresh object on each access). */
  readonly info: OrtBenchInfo;
  /**
   * Switch the token count (only with `dynamicTokens`): prepares a new input (given, or random
   * with the same seed) once; the session is kept.
   */
  setTokens(tokens: number, input?: WeightArray): void;
  /** One session.run; resolves when the outputs are complete (see `ioLocation`). */
  run(): Promise<void>;
  /** One run, returning copies of the outputs on the CPU (for checks, not for timing). */
  runAndRead(): Promise<OrtBenchOutputs>;
  dispose(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Process-wide ORT / Dawn state.

let ortPromise: Promise<Ort> | undefined;
/** Pitfall 3: dawn.node crashes if this object is garbage-collected while devices live. */
let sharedGpu: GPU | undefined;
let compileTimer: ReturnType<typeof setInterval> | undefined;
let liveBenches = 0;

/** The `create([])` GPU shared by ORT and (optionally) the caller; created once per process. */
export function getSharedGpu(): GPU {
  if (sharedGpu === undefined) {
    Object.assign(globalThis, globals);
    sharedGpu = create([]);
  }
  return sharedGpu;
}

function navigatorGpu(): GPU | undefined {
  const nav: unknown = (globalThis as { navigator?: unknown }).navigator;
  if (typeof nav !== 'object' || nav === null || !('gpu' in nav)) return undefined;
  const gpu: unknown = nav.gpu;
  return typeof gpu === 'object' && gpu !== null && 'requestAdapter' in gpu ? (gpu as GPU) : undefined;
}

/** ORT's WebGPU build looks for `navigator.gpu`; Node 20 has no navigator at all. */
function installNavigatorGpu(gpu: GPU): void {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator === undefined) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  } else if (g.navigator.gpu === undefined) {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  }
}

const patchedQueues = new WeakSet<object>();

/** Pitfall 1: copy SharedArrayBuffer-backed uploads into a plain ArrayBuffer. */
function patchWriteBuffer(): void {
  const ctor = (globalThis as { GPUQueue?: { prototype: GPUQueue } }).GPUQueue;
  if (ctor === undefined) throw new Error('GPUQueue is not defined: install the webgpu globals first');
  const proto = ctor.prototype;
  if (patchedQueues.has(proto)) return;
  patchedQueues.add(proto);
  const original = proto.writeBuffer;
  proto.writeBuffer = function writeBuffer(
    this: GPUQueue,
    buffer: GPUBuffer,
    bufferOffset: GPUSize64,
    data: GPUAllowSharedBufferSource,
    dataOffset?: GPUSize64,
    size?: GPUSize64,
  ): undefined {
    const shared = ArrayBuffer.isView(data)
      ? data.buffer instanceof SharedArrayBuffer
      : data instanceof SharedArrayBuffer;
    if (!shared) return original.call(this, buffer, bufferOffset, data, dataOffset, size);
    // dataOffset/size count elements for typed arrays and bytes otherwise (WebGPU spec).
    const view = ArrayBuffer.isView(data) ? data : new Uint8Array(data);
    const elem = 'BYTES_PER_ELEMENT' in view && typeof view.BYTES_PER_ELEMENT === 'number' ? view.BYTES_PER_ELEMENT : 1;
    const start = (dataOffset ?? 0) * elem;
    const len = size !== undefined ? size * elem : view.byteLength - start;
    const copy = new Uint8Array(len);
    copy.set(new Uint8Array(view.buffer, view.byteOffset + start, len));
    return original.call(this, buffer, bufferOffset, copy, 0, len);
  };
}

function distDir(): string {
  // The package exports its .wasm files but not package.json; resolve one and take its folder.
  const require = createRequire(import.meta.url);
  return path.dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
}

/**
 * Loads `onnxruntime-web/webgpu` once (it also provides the wasm EP: same asyncify build), with
 * the wasm served from node_modules, numThreads 1, navigator.gpu and the writeBuffer fix set.
 * createOrtBench calls it; call it first yourself with your own `create([])` GPU object to keep
 * one Dawn instance per process (a `navigator.gpu` already set is reused too).
 */
export function initOrt(gpu?: GPU): Promise<Ort> {
  if (ortPromise === undefined) {
    // Reuse the caller's GPU object (given, or already on navigator) rather than a second one.
    sharedGpu ??= gpu ?? navigatorGpu();
    const g = getSharedGpu();
    Object.assign(globalThis, globals);
    installNavigatorGpu(g);
    patchWriteBuffer();
    // Pitfall 2: must exist before the import starts compiling the wasm.
    compileTimer ??= setInterval(() => {}, 1000);
    ortPromise = import('onnxruntime-web/webgpu').then((ort) => {
      ort.env.wasm.wasmPaths = pathToFileURL(distDir() + path.sep).href;
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      ort.env.logLevel = 'error';
      return ort;
    });
  }
  return ortPromise;
}

/**
 * Waits until V8 has finished compiling ORT's wasm in the background, detected as the process
 * using less than `quietFraction` of one core over two consecutive `sampleMs` windows. Call it
 * after the first session was created (compilation starts with the first session) and before
 * timing anything. Resolves with the ms waited. Stops the keep-alive timer when done.
 */
export async function waitForOrtCompile(
  opts: { quietFraction?: number; sampleMs?: number; timeoutMs?: number } = {},
): Promise<number> {
  const quietFraction = opts.quietFraction ?? 0.15;
  const sampleMs = opts.sampleMs ?? 500;
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const t0 = performance.now();
  let quiet = 0;
  while (performance.now() - t0 < timeoutMs) {
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, sampleMs));
    const c = process.cpuUsage(c0);
    const frac = (c.user + c.system) / 1000 / (performance.now() - w0);
    quiet = frac < quietFraction ? quiet + 1 : 0;
    if (quiet >= 2) break;
  }
  stopCompileTimer();
  return performance.now() - t0;
}

function stopCompileTimer(): void {
  if (compileTimer !== undefined) clearInterval(compileTimer);
  compileTimer = undefined;
}

/** A device for ORT on the default adapter, with the adapter's maximum sizes. */
export async function requestOrtDevice(gpu: GPU = getSharedGpu()): Promise<GPUDevice> {
  const adapter = await gpu.requestAdapter();
  if (adapter === null) throw new Error('webgpu: no adapter (is Mesa lavapipe installed?)');
  const wanted: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  return adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
      maxComputeWorkgroupSizeZ: l.maxComputeWorkgroupSizeZ,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Inputs and weights.

/** mulberry32: small, fast, seeded; reproducible inputs across runs and implementations. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded dense input x [tokens][dIn], uniform in [-1, 1). */
export function randomDenseInput(tokens: number, dIn: number, seed = 1): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(tokens * dIn);
  for (let i = 0; i < x.length; i++) x[i] = r() * 2 - 1;
  return x;
}

/** Seeded sparse codes f [tokens][dSae] with exactly k positive entries per row. */
export function randomSparseCodes(tokens: number, dSae: number, k: number, seed = 2): Float32Array {
  const r = rng(seed);
  const f = new Float32Array(tokens * dSae);
  for (let t = 0; t < tokens; t++) {
    let placed = 0;
    while (placed < k) {
      const j = Math.floor(r() * dSae);
      if (f[t * dSae + j] === 0) {
        f[t * dSae + j] = 0.1 + r() * 4;
        placed++;
      }
    }
  }
  return f;
}

function asDtype(what: string, a: WeightArray, dtype: OrtDtype): WeightArray {
  if (dtype === 'f32') {
    if (!(a instanceof Float32Array)) throw new TypeError(`${what}: dtype f32 needs a Float32Array`);
    return a;
  }
  return a instanceof Float32Array ? Uint16Array.from(a, f32ToF16) : a;
}

function need(what: string, a: WeightArray | undefined): WeightArray {
  if (a === undefined) throw new TypeError(`weights.${what} is required for this graph`);
  return a;
}

// ---------------------------------------------------------------------------------------------

export async function createOrtBench(opts: OrtBenchOptions): Promise<OrtBench> {
  const { graph, ep, dtype, dIn, dSae, k } = opts;
  const ioLocation = ep === 'webgpu' ? (opts.ioLocation ?? 'cpu') : 'cpu';
  const graphTokens = opts.dynamicTokens === true ? 'T' : opts.tokens;
  const ort = await initOrt();

  let device: GPUDevice | undefined;
  let ownDevice = false;
  if (ep === 'webgpu') {
    device = opts.device;
    if (device === undefined) {
      device = await requestOrtDevice();
      ownDevice = true;
    }
    if (dtype === 'f16' && !device.features.has('shader-f16')) {
      throw new Error('webgpu: the device lacks shader-f16, required by f16 graphs');
    }
  }

  const split = opts.maxInitializerBytes ?? 'auto';
  const maxInitializerBytes =
    split === 'never' ? undefined : split === 'auto' ? device?.limits.maxBufferSize : split;
  const limit = maxInitializerBytes === undefined ? {} : { maxInitializerBytes };

  const tBuild = performance.now();
  const w = opts.weights;
  let model: BuiltModel =
    graph === 'encode'
      ? buildEncodeModel({
          dtype,
          dIn,
          dSae,
          k,
          tokens: graphTokens,
          encoder: asDtype('encoder', need('encoder', w.encoder), dtype),
          ...(w.encoderBias !== undefined ? { encoderBias: asDtype('encoderBias', w.encoderBias, dtype) } : {}),
          ...limit,
        })
      : buildDecodeModel({
          dtype,
          dIn,
          dSae,
          tokens: graphTokens,
          decoder: asDtype('decoder', need('decoder', w.decoder), dtype),
          ...(w.decoderBias !== undefined ? { decoderBias: asDtype('decoderBias', w.decoderBias, dtype) } : {}),
          ...limit,
        });
  const buildMs = performance.now() - tBuild;
  const modelBytes = model.bytes.byteLength;

  const tCreate = performance.now();
  const sessionOptions: OrtNs.InferenceSession.SessionOptions = {
    executionProviders: ep === 'webgpu' && device !== undefined ? [{ name: 'webgpu', device }] : ['wasm'],
    graphOptimizationLevel: 'all',
    ...(ioLocation === 'gpu-buffer' ? { preferredOutputLocation: 'gpu-buffer' as const } : {}),
  };
  let session: OrtSession;
  try {
    session = await ort.InferenceSession.create(model.bytes, sessionOptions);
  } catch (e) {
    if (ownDevice) device?.destroy();
    throw e;
  }
  const createMs = performance.now() - tCreate;
  liveBenches++;
  const { inputName, blocks, blockCols } = model;
  // Drop our reference to the serialised model (up to ~820 MB): ORT has copied it.
  model = { ...model, bytes: new Uint8Array(0) };

  const inputCols = graph === 'encode' ? dIn : dSae;
  const tensorType = dtype === 'f32' ? 'float32' : 'float16';
  let tokens = opts.tokens;
  let inputBuffer: GPUBuffer | undefined;
  let feeds: OrtNs.InferenceSession.FeedsType = {};

  const setInput = (t: number, data: WeightArray | undefined): void => {
    const inputData = asDtype(
      'input',
      data ??
        (graph === 'encode'
          ? randomDenseInput(t, dIn, opts.seed ?? 1)
          : randomSparseCodes(t, dSae, k, opts.seed ?? 2)),
      dtype,
    );
    if (inputData.length !== t * inputCols) {
      throw new RangeError(`input length ${inputData.length}, expected ${t * inputCols}`);
    }
    inputBuffer?.destroy();
    inputBuffer = undefined;
    let input: OrtTensor;
    if (ioLocation === 'gpu-buffer' && device !== undefined) {
      // Buffer sizes must be 4-byte multiples; an f16 input with an odd element count is padded.
      const size = Math.ceil(inputData.byteLength / 4) * 4;
      inputBuffer = device.createBuffer({
        size,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      const padded = new Uint8Array(size);
      padded.set(new Uint8Array(inputData.buffer, inputData.byteOffset, inputData.byteLength));
      device.queue.writeBuffer(inputBuffer, 0, padded);
      input = ort.Tensor.fromGpuBuffer(inputBuffer, { dataType: tensorType, dims: [t, inputCols] });
    } else {
      input = new ort.Tensor(tensorType, inputData, [t, inputCols]);
    }
    feeds = { [inputName]: input };
    tokens = t;
  };
  setInput(tokens, opts.input);

  const adapterInfo = device?.adapterInfo;
  const adapter =
    adapterInfo !== undefined
      ? [adapterInfo.vendor, adapterInfo.architecture, adapterInfo.device, adapterInfo.description]
          .filter((x) => x !== '')
          .join(' / ')
      : 'cpu';

  const release = (out: OrtNs.InferenceSession.ReturnType): void => {
    for (const v of Object.values(out)) {
      if ('dispose' in v && typeof v.dispose === 'function') v.dispose();
    }
  };

  const floatCopy = (v: unknown): WeightArray => {
    if (v instanceof Float32Array) return v.slice();
    if (v instanceof Uint16Array) return v.slice();
    // Where a global Float16Array exists ORT returns one; keep its bits.
    if (ArrayBuffer.isView(v)) {
      return new Uint16Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
    }
    throw new TypeError('unexpected float output type');
  };

  let disposed = false;
  return {
    get info(): OrtBenchInfo {
      return {
        graph,
        ep,
        dtype,
        dIn,
        dSae,
        k,
        tokens,
        dynamicTokens: graphTokens === 'T',
        blocks,
        blockCols,
        modelBytes,
        buildMs,
        createMs,
        adapter,
        ioLocation,
        numThreads: 1,
      };
    },
    setTokens(t: number, input?: WeightArray): void {
      if (graphTokens !== 'T') throw new Error('setTokens needs dynamicTokens: true');
      setInput(t, input);
    },
    async run(): Promise<void> {
      const out = await session.run(feeds);
      if (ioLocation === 'gpu-buffer' && device !== undefined) {
        await device.queue.onSubmittedWorkDone();
        release(out);
      }
    },
    async runAndRead(): Promise<OrtBenchOutputs> {
      const out = await session.run(feeds);
      const read = async (name: string): Promise<unknown> => {
        const t = out[name];
        if (t === undefined) throw new Error(`ORT returned no output ${name}`);
        return ioLocation === 'gpu-buffer' ? (t as OrtTensor).getData() : (t as OrtTensor).data;
      };
      let result: OrtBenchOutputs;
      if (graph === 'encode') {
        const idx = await read('indices');
        if (!(idx instanceof BigInt64Array)) throw new TypeError('indices: expected BigInt64Array');
        result = { values: floatCopy(await read('values')), indices: idx.slice() };
      } else {
        result = { xHat: floatCopy(await read('x_hat')) };
      }
      release(out);
      return result;
    },
    async dispose(): Promise<void> {
      if (disposed) return;
      disposed = true;
      await session.release();
      inputBuffer?.destroy();
      if (ownDevice) device?.destroy();
      liveBenches--;
      if (liveBenches === 0) stopCompileTimer();
    },
  };
}
