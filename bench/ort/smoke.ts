/**
 * Smoke test and feasibility timings for the onnxruntime-web side of the benchmark.
 *
 *   XDG_RUNTIME_DIR=/tmp node --import tsx bench/ort/smoke.ts            # checks + all full-size groups
 *   node --import tsx bench/ort/smoke.ts --checks                         # small correctness checks only
 *   node --import tsx bench/ort/smoke.ts --group r1-f32 [--ep wasm|webgpu] [--graph encode|decode]
 *       [--tokens 1,64] [--split binding]                                  # one full-size group, in-process
 *
 * Part 1 builds small graphs (dIn 96, dSae 1000, k 16, T 1 and 7), runs them on the wasm and
 * webgpu EPs in f32 and f16 and compares with a plain-JS f64 computation: top-k values within
 * 1e-4 (f32; f16 outputs within f16 rounding of the accumulated sum), indices equal wherever
 * the reference values are separated by more than that tolerance; x_hat likewise.
 *
 * Part 2 times full-size shapes once per process group (each group runs in a child process so
 * that its memory peak is its own and ORT's 4 GiB wasm heap starts empty):
 *   r1-f32:      dIn 7168, dSae 28672, k 128, f32
 *   distill-f32: dIn 1536, dSae 65536, k 32, f32
 *   distill-f16: dIn 1536, dSae 65536, k 32, f16
 * each encode and decode, T 1 and 64, wasm and webgpu (one session per graph/EP with a symbolic
 * T). Timings are the median of a few runs after one warm-up run, after waiting for V8 to finish
 * compiling ORT's wasm. Absolute numbers on lavapipe say nothing about a real GPU.
 */

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { f32ToF16, widenToF32 } from '../../src/sae/dtype.js';

const f32ArrayToF16 = (a: Float32Array): Uint16Array => Uint16Array.from(a, f32ToF16);
const f16ArrayToF32 = (a: Uint16Array): Float32Array => widenToF32(a, 'f16');
import {
  createOrtBench,
  randomDenseInput,
  randomSparseCodes,
  waitForOrtCompile,
  type OrtBench,
  type OrtBenchOptions,
  type OrtDtype,
  type OrtEp,
  type OrtGraph,
  type WeightArray,
} from './session.js';

// ---------------------------------------------------------------------------------------------
// CLI

const argv = process.argv.slice(2);
function flag(name: string): boolean {
  return argv.includes(name);
}
function option(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

// ---------------------------------------------------------------------------------------------
// Plain-JS references (f64 accumulation).

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function randomMatrix(n: number, scale: number, seed: number): Float32Array {
  const r = seeded(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

/** What the graph sees: f32 as is, f16 after rounding (so the reference uses the same values). */
function effective(a: Float32Array, dtype: OrtDtype): Float32Array {
  return dtype === 'f32' ? a : f16ArrayToF32(f32ArrayToF16(a));
}

function toF32(a: WeightArray): Float32Array {
  return a instanceof Float32Array ? a : f16ArrayToF32(a);
}

function refEncode(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  tokens: number,
  dIn: number,
  dSae: number,
  k: number,
): { values: Float64Array; indices: Int32Array; next: Float64Array } {
  const values = new Float64Array(tokens * k);
  const indices = new Int32Array(tokens * k);
  /** The (k+1)-th largest activation per token: separates the last kept value from the rest. */
  const next = new Float64Array(tokens);
  const act = new Float64Array(dSae);
  const order = new Int32Array(dSae);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < dSae; j++) {
      let s = b[j] ?? 0;
      for (let i = 0; i < dIn; i++) s += (x[t * dIn + i] ?? 0) * (w[j * dIn + i] ?? 0);
      act[j] = Math.max(0, s);
      order[j] = j;
    }
    order.sort((p, q) => (act[q] ?? 0) - (act[p] ?? 0) || p - q);
    for (let p = 0; p < k; p++) {
      const j = order[p] ?? 0;
      values[t * k + p] = act[j] ?? 0;
      indices[t * k + p] = j;
    }
    next[t] = k < dSae ? (act[order[k] ?? 0] ?? 0) : -Infinity;
  }
  return { values, indices, next };
}

function refDecode(
  f: Float32Array,
  w: Float32Array,
  b: Float32Array,
  tokens: number,
  dIn: number,
  dSae: number,
): Float64Array {
  const out = new Float64Array(tokens * dIn);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < dIn; i++) out[t * dIn + i] = b[i] ?? 0;
    for (let j = 0; j < dSae; j++) {
      const c = f[t * dSae + j] ?? 0;
      if (c === 0) continue;
      for (let i = 0; i < dIn; i++) out[t * dIn + i] = (out[t * dIn + i] ?? 0) + c * (w[j * dIn + i] ?? 0);
    }
  }
  return out;
}

/** Absolute tolerance for a value of magnitude `v`: 1e-4 in f32; f16 keeps ~3 decimal digits. */
function tol(dtype: OrtDtype, v: number): number {
  return dtype === 'f32' ? 1e-4 : 5e-3 * Math.max(1, Math.abs(v));
}

// ---------------------------------------------------------------------------------------------
// Part 1: small correctness checks.

interface CheckResult {
  readonly ok: boolean;
  readonly line: string;
}

async function checkSmall(): Promise<boolean> {
  const dIn = 96;
  const dSae = 1000;
  const k = 16;
  const wEnc = randomMatrix(dSae * dIn, 0.3, 11);
  const bEnc = randomMatrix(dSae, 0.5, 12);
  const wDec = randomMatrix(dSae * dIn, 0.3, 13);
  const bDec = randomMatrix(dIn, 0.5, 14);

  let allOk = true;
  for (const ep of ['wasm', 'webgpu'] as const) {
    for (const dtype of ['f32', 'f16'] as const) {
      for (const graph of ['encode', 'decode'] as const) {
        for (const tokens of [1, 7]) {
          const r = await checkOne({ ep, dtype, graph, tokens, dIn, dSae, k, wEnc, bEnc, wDec, bDec });
          console.log(r.line);
          if (!r.ok) allOk = false;
        }
      }
    }
  }
  // Inputs uploaded once to a GPUBuffer, outputs left on the GPU (read back here for the check).
  for (const graph of ['encode', 'decode'] as const) {
    const r = await checkOne({ ep: 'webgpu', dtype: 'f32', graph, tokens: 7, dIn, dSae, k, wEnc, bEnc, wDec, bDec, io: 'gpu-buffer' });
    console.log(r.line);
    if (!r.ok) allOk = false;
  }
  return allOk;
}

/** maxStorageBufferBindingSize of lavapipe (and the WebGPU default): 128 MiB. */
const LAVAPIPE_BINDING_LIMIT = 128 * 2 ** 20;

/**
 * Weights larger than maxStorageBufferBindingSize: 1536 x 24576 f32 is 144 MiB. Checked on
 * webgpu both split into binding-sized column blocks and as one initializer.
 */
async function checkLarge(): Promise<boolean> {
  const dIn = 1536;
  const dSae = 24576;
  const k = 32;
  const wEnc = randomMatrix(dSae * dIn, 0.05, 31);
  const bEnc = randomMatrix(dSae, 0.5, 32);
  const bDec = randomMatrix(dIn, 0.5, 34);
  let allOk = true;
  for (const split of ['binding', 'never'] as const) {
    for (const graph of ['encode', 'decode'] as const) {
      const r = await checkOne({
        ep: 'webgpu',
        dtype: 'f32',
        graph,
        tokens: 2,
        dIn,
        dSae,
        k,
        wEnc,
        bEnc,
        wDec: wEnc,
        bDec,
        split,
      });
      console.log(r.line);
      if (!r.ok) allOk = false;
    }
  }
  return allOk;
}

async function checkOne(c: {
  ep: OrtEp;
  dtype: OrtDtype;
  graph: OrtGraph;
  tokens: number;
  dIn: number;
  dSae: number;
  k: number;
  wEnc: Float32Array;
  bEnc: Float32Array;
  wDec: Float32Array;
  bDec: Float32Array;
  split?: 'binding' | 'never';
  io?: 'cpu' | 'gpu-buffer';
}): Promise<CheckResult> {
  const { ep, dtype, graph, tokens, dIn, dSae, k } = c;
  let label = `${graph.padEnd(6)} ${ep.padEnd(6)} ${dtype} T=${tokens}`;
  if (c.io === 'gpu-buffer') label += ' io=gpu-buffer';
  if (c.split !== undefined) label = `${graph.padEnd(6)} ${ep.padEnd(6)} ${dtype} T=${tokens} ${dIn}x${dSae} split=${c.split}`;
  const input =
    graph === 'encode' ? randomDenseInput(tokens, dIn, 21) : randomSparseCodes(tokens, dSae, k, 22);
  let bench: OrtBench | undefined;
  try {
    bench = await createOrtBench({
      graph,
      ep,
      dtype,
      dIn,
      dSae,
      k,
      tokens,
      input,
      ...(c.split !== undefined ? { maxInitializerBytes: c.split === 'binding' ? LAVAPIPE_BINDING_LIMIT : 'never' } : {}),
      ...(c.io !== undefined ? { ioLocation: c.io } : {}),
      weights:
        graph === 'encode'
          ? { encoder: c.wEnc, encoderBias: c.bEnc }
          : { decoder: c.wDec, decoderBias: c.bDec },
    });
    // Exercise the timed path too (for gpu-buffer it waits on the queue and frees the outputs).
    await bench.run();
    const out = await bench.runAndRead();
    const xe = effective(input, dtype);
    if (graph === 'encode') {
      const ref = refEncode(xe, effective(c.wEnc, dtype), effective(c.bEnc, dtype), tokens, dIn, dSae, k);
      if (out.values === undefined || out.indices === undefined) throw new Error('missing outputs');
      const values = toF32(out.values);
      let maxErr = 0;
      let idxChecked = 0;
      let idxBad = 0;
      let valBad = 0;
      for (let t = 0; t < tokens; t++) {
        for (let p = 0; p < k; p++) {
          const q = t * k + p;
          const rv = ref.values[q] ?? 0;
          const err = Math.abs((values[q] ?? NaN) - rv);
          maxErr = Math.max(maxErr, err);
          if (!(err <= tol(dtype, rv))) valBad++;
          const prev = p > 0 ? (ref.values[q - 1] ?? Infinity) : Infinity;
          const nxt = p + 1 < k ? (ref.values[q + 1] ?? -Infinity) : (ref.next[t] ?? -Infinity);
          const sep = 2 * tol(dtype, rv);
          if (rv > sep && prev - rv > sep && rv - nxt > sep) {
            idxChecked++;
            if (Number(out.indices[q]) !== ref.indices[q]) idxBad++;
          }
        }
      }
      const ok = valBad === 0 && idxBad === 0 && idxChecked > 0;
      const blocks = bench.info.blocks > 1 ? ` (${bench.info.blocks} blocks)` : '';
      return {
        ok,
        line: `${ok ? 'OK  ' : 'FAIL'} ${label}${blocks} max|dv|=${maxErr.toExponential(2)} bad values ${valBad}/${tokens * k}, indices checked ${idxChecked}, wrong ${idxBad}`,
      };
    }
    const ref = refDecode(xe, effective(c.wDec, dtype), effective(c.bDec, dtype), tokens, dIn, dSae);
    if (out.xHat === undefined) throw new Error('missing output');
    const xHat = toF32(out.xHat);
    let maxErr = 0;
    let bad = 0;
    for (let i = 0; i < ref.length; i++) {
      const rv = ref[i] ?? 0;
      const err = Math.abs((xHat[i] ?? NaN) - rv);
      maxErr = Math.max(maxErr, err);
      if (!(err <= tol(dtype, rv))) bad++;
    }
    const ok = bad === 0;
    const blocks = bench.info.blocks > 1 ? ` (${bench.info.blocks} blocks)` : '';
    return { ok, line: `${ok ? 'OK  ' : 'FAIL'} ${label}${blocks} max|dx|=${maxErr.toExponential(2)} bad ${bad}/${ref.length}` };
  } catch (e) {
    const msg = firstLine(e);
    // f16 on the wasm (CPU) EP is a limitation of ORT, not of our graphs: report, do not fail.
    const unsupported = ep === 'wasm' && dtype === 'f16';
    return { ok: unsupported, line: `${unsupported ? 'UNSUPPORTED' : 'FAIL'} ${label}: ${msg}` };
  } finally {
    await bench?.dispose();
  }
}

function firstLine(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return s.split('\n').find((l) => l.trim() !== '')?.slice(0, 300) ?? s.slice(0, 300);
}

// ---------------------------------------------------------------------------------------------
// Part 2: full-size feasibility timings.

interface Group {
  readonly name: string;
  readonly dIn: number;
  readonly dSae: number;
  readonly k: number;
  readonly dtype: OrtDtype;
}

const GROUPS: readonly Group[] = [
  { name: 'r1-f32', dIn: 7168, dSae: 28672, k: 128, dtype: 'f32' },
  { name: 'distill-f32', dIn: 1536, dSae: 65536, k: 32, dtype: 'f32' },
  { name: 'distill-f16', dIn: 1536, dSae: 65536, k: 32, dtype: 'f16' },
];

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const maxRssMiB = (): string => `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`;

function median(a: readonly number[]): number {
  const s = [...a].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}

/**
 * One warm-up run, then timed runs until `budgetMs` is spent (at least 1, at most `maxRuns`):
 * on lavapipe one R1 run can take tens of seconds, on wasm a few ms.
 */
async function timeRuns(bench: OrtBench, budgetMs: number, maxRuns: number): Promise<{ warmMs: number; ms: number[] }> {
  let t = performance.now();
  await bench.run();
  const warmMs = performance.now() - t;
  const ms: number[] = [];
  const start = performance.now();
  do {
    t = performance.now();
    await bench.run();
    ms.push(performance.now() - t);
  } while (ms.length < maxRuns && performance.now() - start + (ms[ms.length - 1] ?? 0) < budgetMs);
  return { warmMs, ms };
}

async function runGroup(
  g: Group,
  eps: readonly OrtEp[],
  graphs: readonly OrtGraph[],
  tokensList: readonly number[],
  split: 'binding' | 'auto',
): Promise<void> {
  console.log(`\n== ${g.name}: dIn ${g.dIn}, dSae ${g.dSae}, k ${g.k}, ${g.dtype} (pid ${process.pid})`);
  const tGen = performance.now();
  // One random matrix serves as both encoder and decoder ([dSae][dIn] each): the values do not
  // matter for timing, and sharing halves the JS-side memory of the R1 case.
  const w32 = randomMatrix(g.dSae * g.dIn, 0.02, 99);
  const w: WeightArray = g.dtype === 'f32' ? w32 : f32ArrayToF16(w32);
  console.log(`weights ${mib(w.byteLength)} generated in ${(performance.now() - tGen).toFixed(0)} ms; maxRSS ${maxRssMiB()}`);
  let compileWaited = false;
  for (const ep of eps) {
    for (const graph of graphs) {
      const label = `${graph.padEnd(6)} ${ep.padEnd(6)} ${g.dtype}`;
      let bench: OrtBench | undefined;
      try {
        const opts: OrtBenchOptions = {
          graph,
          ep,
          dtype: g.dtype,
          dIn: g.dIn,
          dSae: g.dSae,
          k: g.k,
          tokens: tokensList[0] ?? 1,
          dynamicTokens: true,
          maxInitializerBytes: split === 'binding' ? LAVAPIPE_BINDING_LIMIT : 'auto',
          weights: graph === 'encode' ? { encoder: w } : { decoder: w },
        };
        bench = await createOrtBench(opts);
        const i = bench.info;
        console.log(
          `${label} session: model ${mib(i.modelBytes)} in ${i.blocks} block(s) of ${i.blockCols} cols, build ${i.buildMs.toFixed(0)} ms, create ${i.createMs.toFixed(0)} ms, adapter ${i.adapter}; maxRSS ${maxRssMiB()}`,
        );
        if (!compileWaited) {
          // The first run triggers nothing new; the wasm compile started with ORT's import.
          await bench.run();
          const waited = await waitForOrtCompile();
          compileWaited = true;
          console.log(`(waited ${(waited / 1000).toFixed(1)} s for V8 to finish compiling ORT's wasm)`);
        }
        for (const tokens of tokensList) {
          bench.setTokens(tokens);
          const heavy = ep === 'webgpu' || tokens > 1;
          const { warmMs, ms } = await timeRuns(bench, heavy ? 20_000 : 3_000, heavy ? 3 : 7);
          console.log(
            `${label} T=${String(tokens).padEnd(3)} median ${median(ms).toFixed(1)} ms over ${ms.length} run(s) [${ms.map((m) => m.toFixed(0)).join(', ')}], warm-up ${warmMs.toFixed(0)} ms; maxRSS ${maxRssMiB()}`,
          );
        }
      } catch (e) {
        console.log(`FAIL ${label}: ${firstLine(e)}; maxRSS ${maxRssMiB()}`);
      } finally {
        await bench?.dispose();
      }
    }
  }
  console.log(`== ${g.name} done; process maxRSS ${maxRssMiB()}`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const groupName = option('--group');
  if (groupName !== undefined) {
    const g = GROUPS.find((x) => x.name === groupName);
    if (g === undefined) throw new Error(`unknown group ${groupName}; one of ${GROUPS.map((x) => x.name).join(', ')}`);
    const ep = option('--ep');
    const graph = option('--graph');
    const t = option('--tokens');
    await runGroup(
      g,
      ep === 'wasm' || ep === 'webgpu' ? [ep] : ['wasm', 'webgpu'],
      graph === 'encode' || graph === 'decode' ? [graph] : ['encode', 'decode'],
      t !== undefined ? t.split(',').map(Number) : [1, 64],
      option('--split') === 'binding' ? 'binding' : 'auto',
    );
    return 0;
  }

  console.log('== small checks: dIn 96, dSae 1000, k 16');
  const smallOk = await checkSmall();
  console.log('== large-weight checks (webgpu, weights over maxStorageBufferBindingSize)');
  const largeOk = await checkLarge();
  const ok = smallOk && largeOk;
  console.log(ok ? 'checks: OK' : 'checks: FAIL');
  if (flag('--checks')) return ok ? 0 : 1;

  // Full-size groups, each in its own process (own memory peak, fresh wasm heap).
  const self = fileURLToPath(import.meta.url);
  for (const g of GROUPS) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--group', g.name], {
      stdio: 'inherit',
      timeout: 40 * 60_000,
    });
    if (r.status !== 0) console.log(`FAIL group ${g.name}: exit ${r.status ?? r.signal ?? 'unknown'}`);
  }
  return ok ? 0 : 1;
}

// process.exit: ORT's background wasm compile and dawn.node would otherwise keep Node alive.
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
