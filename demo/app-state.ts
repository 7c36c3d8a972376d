/**
 * What the demo app publishes on `window.__loupeApp` for end-to-end tests: plain data only, so
 * `page.evaluate` carries it to Node as it is.
 */
export interface AppState {
  /** 'idle' before Load; 'loading'; then the Session's status ('ready', 'generating', 'done', …). */
  status: string;
  /** The line shown in #status. */
  step: string;
  source: string | null;
  /** The SAE's description. */
  sae: string | null;
  backend: 'webgpu' | 'cpu' | null;
  /** The WebGPU adapter's description, or null without WebGPU. */
  adapter: string | null;
  /** Bytes received per download ("model onnx/model.onnx", "SAE sae_weights.safetensors", …). */
  downloads: Record<string, { loaded: number; total: number | null }>;
  /** Tokens in the readouts (prompt included). */
  tokens: number;
  /** Generated text of the last finished run. */
  text: string;
  /** Every token of the last finished run with its codes (plain arrays). */
  readouts: AppToken[];
  /** The unsteered run of the last side-by-side comparison. */
  baseline: AppToken[];
  error: string | null;
}

export interface AppToken {
  readonly position: number;
  readonly tokenId: number;
  readonly phase: string;
  readonly steered: boolean;
  readonly indices: number[];
  readonly values: number[];
}

declare global {
  interface Window {
    __loupeApp?: AppState;
  }
}
