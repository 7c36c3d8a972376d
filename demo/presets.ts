/**
 * What the demo offers: its sources and SAEs. Paths of the embedded Tiny-R1 are relative to the
 * page, so the static build works from any folder of any static host.
 */

export type SourceChoice = 'tiny-r1' | 'r1-distill' | 'remote' | 'trace';
export type SaeChoice = 'preset' | 'goodfire-math' | 'goodfire-logic' | 'custom';

export interface SaePreset {
  /** Folder URL, file URL or Hugging Face repo id (resolved by loadSae). */
  readonly source: string;
  readonly subfolder?: string;
  /** Labels file (CSV, SQLite or Neuronpedia JSON). */
  readonly labels?: string;
  /** Goodfire-schema max-activating examples (DuckDB). */
  readonly examples?: string;
  /** Precomputed feature map. */
  readonly map?: string;
  readonly description: string;
}

/** Tiny-R1 (tools/tiny-r1, docs/tiny-r1.md): a 0.9 M-parameter Qwen2 and its 1024-feature SAE. */
export const TINY_R1 = {
  /** transformers.js resolves `{localModelPath}{model}/…`. */
  localModelPath: 'models/',
  model: 'tiny-r1/model',
  /** The SAE reads model.layers.2's output (cfg.json hook_name). */
  layer: 2,
  sae: {
    source: 'models/tiny-r1/sae/',
    labels: 'models/tiny-r1/examples/autointerp.csv',
    examples: 'models/tiny-r1/examples/examples.duckdb',
    map: 'models/tiny-r1/sae/feature_map.json',
    description: "Tiny-R1's TopK SAE (1024 features, k = 16)",
  } satisfies SaePreset,
  prompt: 'Calculate 3 × 6 ÷ 3 ÷ 6.',
  maxNewTokens: 120,
} as const;

/** DeepSeek-R1-Distill-Qwen-1.5B (onnx-community export, q4f16): needs the network once. */
export const R1_DISTILL = {
  model: 'onnx-community/DeepSeek-R1-Distill-Qwen-1.5B-ONNX',
  dtype: 'q4f16',
  /** A middle layer of its 28. */
  layer: 14,
  prompt: 'What is 17 × 23? Check your work.',
  maxNewTokens: 512,
} as const;

/** Goodfire's SAEs read layer 37 of the full R1: only a remote endpoint serves that. */
export const GOODFIRE: Record<'goodfire-math' | 'goodfire-logic', SaePreset> = {
  'goodfire-math': { source: 'Goodfire/DeepSeek-R1-SAE-l37', subfolder: 'math', description: 'Goodfire R1 SAE, layer 37, math (k = 128, 411 MB bf16)' },
  'goodfire-logic': { source: 'Goodfire/DeepSeek-R1-SAE-l37', subfolder: 'logic', description: 'Goodfire R1 SAE, layer 37, logic (k = 64, 822 MB f32)' },
};

export const REMOTE_DEFAULT_LAYER = 37;

/** DuckDB-WASM's engine and worker, served by the page itself (vite.config.ts duckdbAssets). */
export const DUCKDB_BUNDLE = { mainModule: 'duckdb/duckdb-eh.wasm', mainWorker: 'duckdb/duckdb-browser-eh.worker.js' } as const;

/** onnxruntime-web's runtime, served by the page itself (vite.config.ts ortAssets). */
export const ORT_WASM_PATH = 'ort/';
