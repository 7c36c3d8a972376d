/**
 * What the demo page publishes on `window.__loupeDemo` for end-to-end tests: plain data only
 * (numbers, strings, arrays), so `page.evaluate` can carry it to Node as it is.
 */

export interface DemoAdapter {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  readonly isFallbackAdapter: boolean | undefined;
  /** Features the adapter offers, sorted. */
  readonly features: string[];
  /** Features of the device the Sae runs on (after Loupe's choice), sorted. */
  readonly deviceFeatures: string[];
  readonly limits: {
    readonly maxStorageBufferBindingSize: number;
    readonly maxBufferSize: number;
    readonly maxComputeInvocationsPerWorkgroup: number;
    readonly maxComputeWorkgroupStorageSize: number;
  };
}

export interface DemoToken {
  readonly index: number;
  /** The input row held a NaN or ±Inf: Loupe gives it no features. */
  readonly nonFinite: boolean;
  /** Number of active features. */
  readonly active: number;
  /** The strongest features, value descending. */
  readonly top: Array<{ readonly index: number; readonly value: number }>;
  readonly mse: number;
  readonly fvu: number;
  readonly cosine: number;
}

export interface DemoState {
  /** 'loading' until the page finished, then 'done' or 'error'. */
  status: 'loading' | 'done' | 'error';
  /** Human-readable progress / last step. */
  step: string;
  /** WebGPU adapter, or null when running on the CPU reference. */
  adapter: DemoAdapter | null;
  backend: 'webgpu' | 'cpu' | null;
  /** Why the page fell back to the CPU, when it did. */
  fallbackReason: string | null;
  model: {
    readonly file: string;
    readonly bytes: number;
    readonly format: string;
    readonly architecture: string;
    readonly dIn: number;
    readonly dSae: number;
    readonly k: number | null;
    readonly weightDtype: string;
  } | null;
  tokens: DemoToken[];
  codes: {
    readonly tokens: number;
    readonly totalActive: number;
    readonly meanActivePerToken: number;
    readonly distinctFeatures: number;
    readonly nonFiniteTokens: number[];
  } | null;
  /** Means over the tokens with finite input. */
  metrics: { readonly mse: number; readonly fvu: number; readonly cosine: number } | null;
  timings: {
    loadMs: number | null;
    createMs: number | null;
    /** Every timed encode (after one warm-up), in ms. */
    encodeRunsMs: number[];
    encodeMedianMs: number | null;
    reconstructMs: number | null;
  };
  error: string | null;
}

declare global {
  interface Window {
    __loupeDemo?: DemoState;
  }
}
