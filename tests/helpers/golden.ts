/**
 * Loads the PyTorch-generated golden fixtures (tests/fixtures/golden, written by
 * tools/golden/make_golden.py; layout in docs/golden-fixtures.md) into Loupe's types.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readSafetensors, type SafetensorsTensor } from '../../src/formats/safetensors.js';
import { resolveSaeConfig, type SaeConfig } from '../../src/sae/config.js';
import { widenToF32 } from '../../src/sae/dtype.js';
import type { SaeWeights, WeightMatrix } from '../../src/sae/weights.js';
import type { Tolerance } from './compare.js';
import { TOLERANCE } from './compare.js';

export const GOLDEN_DIR = fileURLToPath(new URL('../fixtures/golden/', import.meta.url));

export interface GoldenCase {
  readonly name: string;
  readonly config: SaeConfig;
  readonly weights: SaeWeights;
  readonly tokens: number;
  readonly computeDtype: 'f32' | 'bf16';
  readonly nonFiniteTokens: readonly number[];
  readonly allNegativeTokens: readonly number[];
  readonly x: Float32Array;
  readonly preActs: Float32Array;
  readonly featureActs: Float32Array;
  readonly xHat: Float32Array;
  readonly mse: Float32Array;
  readonly fvu: Float32Array;
  readonly cosine: Float32Array;
}

interface IndexFile {
  cases: Array<{ name: string; file: string; weightDtype: string }>;
}

export function goldenIndex(): IndexFile['cases'] {
  return (JSON.parse(readFileSync(`${GOLDEN_DIR}index.json`, 'utf8')) as IndexFile).cases;
}

function f32(t: SafetensorsTensor | undefined, name: string): Float32Array {
  if (t === undefined) throw new Error(`fixture lacks ${name}`);
  if (t.dtype === 'F32') return t.data as Float32Array;
  if (t.dtype === 'BF16') return widenToF32(t.data as Uint16Array, 'bf16');
  if (t.dtype === 'F16') return widenToF32(t.data as Uint16Array, 'f16');
  throw new Error(`${name}: unexpected dtype ${t.dtype}`);
}

function matrix(t: SafetensorsTensor | undefined, name: string): WeightMatrix {
  if (t === undefined) throw new Error(`fixture lacks ${name}`);
  if (t.dtype === 'F32') return { dtype: 'f32', data: t.data as Float32Array };
  if (t.dtype === 'BF16') return { dtype: 'bf16', data: t.data as Uint16Array };
  if (t.dtype === 'F16') return { dtype: 'f16', data: t.data as Uint16Array };
  throw new Error(`${name}: unexpected dtype ${t.dtype}`);
}

/** Parses one fixture file's bytes (used in Node and, via the same code, in the browser). */
export function parseGolden(bytes: Uint8Array): GoldenCase {
  const { tensors, metadata } = readSafetensors(bytes);
  const config = resolveSaeConfig(JSON.parse(metadata['config'] ?? '{}') as SaeConfig);
  const info = JSON.parse(metadata['case'] ?? '{}') as {
    name: string;
    tokens: number;
    computeDtype: 'f32' | 'bf16';
    nonFiniteTokens?: number[];
    allNegativeTokens?: number[];
  };
  const weights: SaeWeights = {
    W_enc: matrix(tensors['encoder'], 'encoder'),
    ...(tensors['decoder'] !== undefined ? { W_dec: matrix(tensors['decoder'], 'decoder') } : {}),
    b_enc: f32(tensors['b_enc'], 'b_enc'),
    b_dec: f32(tensors['b_dec'], 'b_dec'),
    ...(tensors['threshold'] !== undefined ? { threshold: f32(tensors['threshold'], 'threshold') } : {}),
  };
  return {
    name: info.name,
    config,
    weights,
    tokens: info.tokens,
    computeDtype: info.computeDtype,
    nonFiniteTokens: info.nonFiniteTokens ?? [],
    allNegativeTokens: info.allNegativeTokens ?? [],
    x: f32(tensors['x'], 'x'),
    preActs: f32(tensors['pre_acts'], 'pre_acts'),
    featureActs: f32(tensors['feature_acts'], 'feature_acts'),
    xHat: f32(tensors['x_hat'], 'x_hat'),
    mse: f32(tensors['mse'], 'mse'),
    fvu: f32(tensors['fvu'], 'fvu'),
    cosine: f32(tensors['cosine'], 'cosine'),
  };
}

export function loadGolden(file: string): GoldenCase {
  return parseGolden(new Uint8Array(readFileSync(`${GOLDEN_DIR}${file}`)));
}

/** Tolerance for a case: bf16-computed references carry bf16 rounding. */
export function goldenTolerance(c: GoldenCase): Tolerance {
  return c.computeDtype === 'bf16' ? TOLERANCE['bf16-compute'] : TOLERANCE[c.config.weightDtype];
}

/** Typical magnitude of a row set (RMS of finite values), the `scale` for absolute tolerance. */
export function rms(v: Float32Array): number {
  let s = 0;
  let n = 0;
  for (const a of v) {
    if (Number.isFinite(a)) {
      s += a * a;
      n++;
    }
  }
  return n > 0 ? Math.sqrt(s / n) : 1;
}
