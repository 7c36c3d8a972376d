/**
 * What crosses between the browser test pages and the Node side (`page.evaluate`): plain JSON
 * data only (typed arrays travel as number arrays; NaN and ±Inf survive Playwright's serialiser).
 */

export type GpuProbe =
  | { readonly ok: false; readonly reason: string }
  | {
      readonly ok: true;
      readonly vendor: string;
      readonly architecture: string;
      readonly device: string;
      readonly description: string;
      readonly isFallbackAdapter: boolean | null;
      readonly features: string[];
    };

/** One golden fixture run on WebGPU in the page. */
export interface ParityResult {
  readonly file: string;
  readonly backend: 'webgpu' | 'cpu';
  /** `Sae.adapter` (vendor / architecture / device / description). */
  readonly adapter: string;
  /** Features of the device the Sae created. */
  readonly deviceFeatures: string[];
  readonly tokens: number;
  readonly codes: {
    readonly offsets: number[];
    readonly indices: number[];
    readonly values: number[];
    readonly nonFiniteTokens: number[];
  };
  /** `sae.decode(codes)` of the codes above, [T][dIn]. */
  readonly xHat: number[];
  /** `sae.reconstruct(x)`: its x̂ and per-token metrics. */
  readonly reconstruct: {
    readonly xHat: number[];
    readonly mse: number[];
    readonly fvu: number[];
    readonly cosine: number[];
  };
  /** Uncaptured WebGPU errors seen on the device while the case ran. */
  readonly gpuErrors: string[];
  readonly timings: { readonly loadMs: number; readonly createMs: number; readonly encodeMs: number; readonly decodeMs: number };
}

export interface ParityApi {
  run(file: string): Promise<ParityResult>;
}

declare global {
  interface Window {
    __parity?: ParityApi;
  }
}

/** loadSae in the page (page/load.ts): codes of `x` and what the network saw. */
export interface LoadResult {
  readonly backend: 'webgpu' | 'cpu';
  readonly format: string;
  readonly weightDtype: string;
  readonly tokens: number;
  readonly codes: { readonly offsets: number[]; readonly indices: number[]; readonly values: number[] };
  /** 'METHOD url' of every request the loader's fetch made (a Cache Storage hit never reaches fetch). */
  readonly fetched: string[];
  /** Progress events: [loaded, total] of the weights file. */
  readonly progress: Array<[number, number | null]>;
  /** URLs now in the loader's Cache Storage. */
  readonly cached: string[];
}

export interface LoadApi {
  run(url: string, options: { subfolder?: string; cache?: boolean }, x: number[], tokens: number): Promise<LoadResult>;
  clearCache(): Promise<void>;
}

declare global {
  interface Window {
    __load?: LoadApi;
  }
}

/** A remote generation streamed into the page (page/remote.ts). */
export interface RemoteRunResult {
  readonly header: { readonly d_in: number; readonly dtype: string; readonly layer: number; readonly prompt_tokens: number };
  readonly tokens: Array<{ readonly position: number; readonly tokenId: number; readonly phase: string; readonly steered: boolean }>;
  /** Each token's activation widened on the CPU from the wire bytes, [T][dIn]. */
  readonly activations: number[][];
  /** The same activations widened on the GPU from the ring (shaders/widen_activations.wgsl). */
  readonly gpuWidened: number[];
  /** SAE codes of all tokens, encoded on the GPU straight from the widened ring buffer. */
  readonly codes: { readonly offsets: number[]; readonly indices: number[]; readonly values: number[] };
  readonly events: string[];
  readonly gpuErrors: string[];
}

export interface RemoteApi {
  run(options: {
    url: string;
    token: string;
    request: unknown;
    sae: { dIn: number; dSae: number; k: number; wEnc: number[]; wDec: number[]; bEnc: number[]; bDec: number[] };
  }): Promise<RemoteRunResult>;
}

declare global {
  interface Window {
    __remote?: RemoteApi;
  }
}

/** A local (transformers.js + onnxruntime-web) generation in the page (page/local.ts). */
export interface LocalRunResult {
  readonly tap: { readonly name: string; readonly elemType: number; readonly dIn: number; readonly tensor: string };
  readonly frames: Array<{ readonly position: number; readonly tokenId: number; readonly phase: string; readonly steered: boolean; readonly x: number[] | null }>;
  readonly stats: { readonly readbacks: number; readonly gpuHooks: number; readonly gpuSnapshots: number; readonly cpuHooks: number };
  readonly sameDevice: boolean;
  readonly gpuErrors: string[];
  readonly steeredFrames?: LocalRunResult['frames'];
}

export interface LocalApi {
  run(options: { layer: number; maxNewTokens: number; messages: Array<{ role: 'user'; content: string }>; steer: { vector: number[]; start: number } }): Promise<LocalRunResult>;
}

declare global {
  interface Window {
    __local?: LocalApi;
  }
}
