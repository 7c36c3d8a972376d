/**
 * Where the SAE runs when a page has no WebGPU. The CPU reference (runtime/cpu-backend.ts) does
 * dIn × dSae multiply-adds per token in JavaScript; measured at ~600 M/s on one core of a 2-core
 * Linux VM (Node 20: 2048 × 16384 = 33.6 M weights → 55 ms per token), so up to 2^25 ≈ 33.5 M
 * weights per matrix it keeps pace with a streamed generation (~18 tokens/s and more), and its
 * two f32 matrices (encoder + decoder, 128 MiB each at the limit) stay within what a tab gets.
 * Above that, encoding falls behind the stream and memory grows past what mobile browsers allow:
 * the Session reports 'unsupported' and says what to do instead. Goodfire's R1 SAE
 * (7168 × 65536 = 470 M) needs WebGPU; Tiny-R1's (128 × 1024) runs anywhere.
 */
import { SaeConfigError, UnsupportedError } from '../errors.js';
import { streamSafetensors } from '../formats/safetensors-stream.js';
import type { TensorStream } from '../formats/tensor-stream.js';
import { streamTorchCheckpoint } from '../formats/torch-stream.js';
import { ByteReader } from '../io/byte-reader.js';
import type { SaeFiles } from '../io/folder.js';
import { loadSae, type LoadSaeOptions } from '../runtime/load.js';
import { locateSae, openSource, type SaeSource } from '../runtime/locate.js';
import type { Sae } from '../runtime/sae.js';

/** Largest dIn × dSae the CPU fallback takes (see the module comment for why). */
export const CPU_FALLBACK_MAX_WEIGHTS = 2 ** 25;

export interface SaeShape {
  readonly dIn: number;
  readonly dSae: number;
}

export type BackendDecision =
  | { readonly backend: 'webgpu'; readonly reason: string }
  | { readonly backend: 'cpu'; readonly reason: string }
  | { readonly backend: 'unsupported'; readonly reason: string };

export interface ChooseBackendOptions {
  /** The WebGPU entry point (default navigator.gpu; in Node, `create([])` of the webgpu package). */
  readonly gpu?: GPU | undefined;
  /** A device to run on (borrowed, e.g. the local model's): WebGPU without asking for an adapter. */
  readonly device?: GPUDevice | undefined;
  /** The CPU fallback's limit on dIn × dSae (default CPU_FALLBACK_MAX_WEIGHTS). */
  readonly cpuMaxWeights?: number;
}

/** Whether a WebGPU adapter can be had here. */
export async function hasWebGpu(gpu?: GPU): Promise<boolean> {
  const g = gpu ?? (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (g === undefined) return false;
  try {
    return (await g.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

function millions(n: number): string {
  return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} M`;
}

/**
 * WebGPU when there is an adapter (or a device is given); else the CPU when dIn × dSae ≤ the
 * limit; else 'unsupported' with a reason that says what to do. `shape` may be a function, so
 * the SAE's size is only looked up when there is no GPU.
 */
export async function chooseBackend(shape: SaeShape | (() => Promise<SaeShape>), options: ChooseBackendOptions = {}): Promise<BackendDecision> {
  if (options.device !== undefined) return { backend: 'webgpu', reason: 'Running on the GPU device given.' };
  if (await hasWebGpu(options.gpu)) return { backend: 'webgpu', reason: 'WebGPU is available.' };
  const { dIn, dSae } = typeof shape === 'function' ? await shape() : shape;
  const weights = dIn * dSae;
  const limit = options.cpuMaxWeights ?? CPU_FALLBACK_MAX_WEIGHTS;
  if (weights <= limit) {
    return { backend: 'cpu', reason: `No WebGPU here: the SAE (${dIn} × ${dSae} = ${millions(weights)} weights) runs on the CPU, more slowly.` };
  }
  return {
    backend: 'unsupported',
    reason:
      `This SAE has ${dIn} × ${dSae} = ${millions(weights)} weights per matrix, and this browser has no WebGPU; ` +
      `without it Loupe runs SAEs on the CPU only up to ${millions(limit)} weights, which keep pace with a stream. ` +
      'Open Loupe in a browser with WebGPU (a recent Chrome, Edge or Safari, with hardware acceleration on), or pick a smaller SAE.',
  };
}

/**
 * dIn and dSae of an SAE from its files' tensor headers only (a few kilobytes: the header of
 * each weights file, then the read is cancelled): the largest matrix is [dSae, dIn] or its
 * transpose, and no SAE is narrower than its input.
 */
export async function probeSaeShape(source: SaeSource | { files: SaeFiles }, options: LoadSaeOptions = {}): Promise<SaeShape> {
  // Not through the download cache: it tees the body and would keep downloading the whole file
  // into Cache Storage after this read is cancelled.
  const uncached = { ...options, cache: false };
  const opened = await openSource(source, uncached);
  const found = await locateSae(opened, uncached);
  let best: readonly number[] | undefined;
  for (const path of found.weights) {
    const file = await opened.folder.open(path);
    const reader = new ByteReader(file.body, {
      signal: options.signal,
      truncated: (what, at) => new SaeConfigError(`${path} ended at byte ${at} while reading ${what}; the file is truncated.`),
    });
    let stream: TensorStream | undefined;
    try {
      stream = path.endsWith('.safetensors') ? await streamSafetensors(reader, file.size) : await streamTorchCheckpoint(reader);
      for (const t of stream.tensors.values()) {
        if (t.shape.length !== 2) continue;
        const n = (t.shape[0] ?? 0) * (t.shape[1] ?? 0);
        if (best === undefined || n > (best[0] ?? 0) * (best[1] ?? 0)) best = t.shape;
      }
    } finally {
      await stream?.cancel();
      await reader.cancel();
    }
  }
  if (best === undefined) throw new SaeConfigError(`No weight matrix in ${found.weights.join(', ')}; is this an SAE?`);
  const [a = 0, b = 0] = best;
  return { dIn: Math.min(a, b), dSae: Math.max(a, b) };
}

export interface ChooseSaeBackendOptions extends LoadSaeOptions {
  /** dIn and dSae when known (skips reading the weights' header when there is no GPU). */
  readonly shape?: SaeShape;
  /** The CPU fallback's limit on dIn × dSae (default CPU_FALLBACK_MAX_WEIGHTS). */
  readonly cpuMaxWeights?: number;
}

/**
 * `loadSae` with the backend chosen by `chooseBackend` (an explicit backend 'webgpu' or 'cpu'
 * is obeyed as it is). Throws `UnsupportedError` with the reason and what to do when the SAE
 * cannot run here.
 */
export async function chooseSaeBackend(source: SaeSource | { files: SaeFiles }, options: ChooseSaeBackendOptions = {}): Promise<Sae> {
  const { shape, cpuMaxWeights, ...load } = options;
  if (load.backend === 'webgpu' || load.backend === 'cpu') return loadSae(source, load);
  const decision = await chooseBackend(shape ?? (() => probeSaeShape(source, load)), {
    gpu: load.gpu,
    device: load.device,
    ...(cpuMaxWeights !== undefined ? { cpuMaxWeights } : {}),
  });
  if (decision.backend === 'unsupported') throw new UnsupportedError(decision.reason);
  return loadSae(source, { ...load, backend: decision.backend });
}
