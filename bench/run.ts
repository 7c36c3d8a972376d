/**
 * `npm run bench`: Loupe's WGSL SAE kernels side by side with onnxruntime-web (WebGPU EP and wasm
 * EP, the same graph: MatMul → Add → Relu → TopK for encode, a dense MatMul for decode) and the
 * CPU reference, on the same adapter in the same run. Writes bench/results/<date>-<adapter>.json
 * and .md (and latest.md). Not part of `npm test`.
 *
 *   npm run bench                 # every shape
 *   npm run bench -- --quick      # a small shape only (smoke run)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { GpuContext } from '../src/gpu/device.js';
import { referenceEncode, decodeCodes } from '../src/sae/reference/index.js';
import type { WeightDtype } from '../src/sae/dtype.js';
import { copyBandwidth } from './copy-roofline.js';
import { benchLoupe, createBenchSae, randomInput, randomWeights, type Shape } from './loupe.js';
import { createOrtBench, getSharedGpu, initOrt, randomSparseCodes, waitForOrtCompile, type OrtEp } from './ort/session.js';
import { time, type Timing } from './stats.js';

const quick = process.argv.includes('--quick');
const SHAPES: Array<{ shape: Shape; dtypes: WeightDtype[]; ortDtypes: Array<'f32' | 'f16'> }> = quick
  ? [{ shape: { name: 'small', dIn: 1536, dSae: 4096, k: 32 }, dtypes: ['bf16'], ortDtypes: ['f32'] }]
  : [
      { shape: { name: 'R1 (Goodfire l37)', dIn: 7168, dSae: 28672, k: 128 }, dtypes: ['bf16', 'f32'], ortDtypes: ['f32'] },
      { shape: { name: 'R1-Distill-Qwen-1.5B 65k', dIn: 1536, dSae: 65536, k: 32 }, dtypes: ['f16'], ortDtypes: ['f32', 'f16'] },
    ];
const TOKENS = [1, 64];

interface Row {
  shape: string;
  impl: string;
  dtype: string;
  tokens: number;
  op: 'encode+topk' | 'decode';
  medianMs: number;
  runs: number;
  note?: string;
}

const rows: Row[] = [];
const log = (s: string): void => console.log(s);

function add(shape: Shape, impl: string, dtype: string, tokens: number, op: Row['op'], t: Timing | undefined, note?: string): void {
  rows.push({ shape: shape.name, impl, dtype, tokens, op, medianMs: t?.medianMs ?? NaN, runs: t?.runs ?? 0, ...(note !== undefined ? { note } : {}) });
  log(`  ${impl.padEnd(28)} ${dtype.padEnd(5)} T=${String(tokens).padEnd(3)} ${op.padEnd(12)} ${t ? t.medianMs.toFixed(2) : 'n/a'} ms${note ? `  (${note})` : ''}`);
}

async function guarded<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    log(`  ${what}: FAILED ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return undefined;
  }
}

const gpu = getSharedGpu();
const ctx = await GpuContext.create({ gpu });
const device = ctx.device;
const adapter = ctx.adapterDescription;
log(`adapter: ${adapter}`);
await initOrt(gpu);

const copy = await copyBandwidth(device, 64 * 1024 * 1024, 4);
log(`copy kernel: ${copy.gbps.toFixed(2)} GB/s (bytes read + written)`);
const kernels: Array<{ shape: string; dtype: string; tokens: number; encodeKernelMs: number; selectKernelMs: number; weightGBps: number }> = [];

for (const { shape, dtypes, ortDtypes } of SHAPES) {
  log(`\n${shape.name}: dIn ${shape.dIn}, dSae ${shape.dSae}, k ${shape.k}`);
  const xs = new Map(TOKENS.map((T) => [T, randomInput(T, shape.dIn, 11 + T)]));
  let f32Weights: Float32Array | undefined;
  for (const dtype of dtypes) {
    const { f32, stored } = randomWeights(shape, dtype, 7);
    f32Weights = f32;
    const sae = await createBenchSae(shape, dtype, stored, device);
    for (const T of TOKENS) {
      const x = xs.get(T) ?? new Float32Array(0);
      const r = await guarded('loupe', () => benchLoupe(sae, x, T, T === 1 ? 7 : 3));
      if (r === undefined) continue;
      add(shape, 'loupe webgpu', dtype, T, 'encode+topk', r.encode, `kernels: encode ${r.kernelEncodeMs.toFixed(2)} ms + top-k ${r.kernelSelectMs.toFixed(2)} ms`);
      add(shape, 'loupe webgpu (sparse)', dtype, T, 'decode', r.decode);
      kernels.push({
        shape: shape.name,
        dtype,
        tokens: T,
        encodeKernelMs: r.kernelEncodeMs,
        selectKernelMs: r.kernelSelectMs,
        weightGBps: stored.byteLength / (r.kernelEncodeMs / 1000) / 1e9,
      });
    }
    sae.destroy();
    // The CPU reference reads f32 weights whatever the storage; one pass of T = 1 (and one of T = 64).
    const cfg = { format: 'memory', architecture: 'topk', dIn: shape.dIn, dSae: shape.dSae, k: shape.k, activationOrder: 'relu-then-topk', applyBDecToInput: false, inputNorm: 'none', inputScale: 1, tied: false, weightDtype: dtype } as const;
    const w = { W_enc: { dtype, data: stored }, W_dec: { dtype, data: stored }, b_enc: new Float32Array(shape.dSae), b_dec: new Float32Array(shape.dIn) };
    for (const T of TOKENS) {
      const x = xs.get(T) ?? new Float32Array(0);
      const enc = await time(async () => referenceEncode(cfg, w, x, T), { warmup: 0, runs: T === 1 ? 3 : 1 });
      add(shape, 'cpu reference (JS)', dtype, T, 'encode+topk', enc);
      const codes = referenceEncode(cfg, w, x, T).codes;
      add(shape, 'cpu reference (JS, sparse)', dtype, T, 'decode', await time(async () => decodeCodes(cfg, w, codes), { warmup: 0, runs: 3 }));
    }
  }
  // onnxruntime-web on the same weights (f32 values; f16 where the shape asks for it).
  for (const ortDtype of ortDtypes) {
    for (const ep of ['webgpu', 'wasm'] as OrtEp[]) {
      for (const graph of ['encode', 'decode'] as const) {
        const weights = graph === 'encode' ? { encoder: f32Weights ?? new Float32Array(0) } : { decoder: f32Weights ?? new Float32Array(0) };
        const ort = await guarded(`ort ${ep} ${graph} ${ortDtype}`, () =>
          createOrtBench({ graph, ep, dtype: ortDtype, dIn: shape.dIn, dSae: shape.dSae, k: shape.k, tokens: 1, dynamicTokens: true, weights, ...(ep === 'webgpu' ? { device } : {}) }),
        );
        if (ort === undefined) continue;
        await waitForOrtCompile();
        for (const T of TOKENS) {
          const input = graph === 'encode' ? xs.get(T) : randomSparseCodes(T, shape.dSae, shape.k, 5);
          ort.setTokens(T, input);
          const t = await guarded(`ort ${ep} ${graph}`, () => time(() => ort.run(), { warmup: 1, runs: T === 1 ? 5 : 3, budgetMs: 90_000 }));
          add(shape, `onnxruntime-web ${ep}${graph === 'decode' ? ' (dense)' : ''}`, ortDtype, T, graph === 'encode' ? 'encode+topk' : 'decode', t, ep === 'webgpu' ? 'same device' : `${ort.info.numThreads} thread`);
        }
        await ort.dispose();
      }
    }
  }
  f32Weights = undefined;
}

// Summary ratios.
const find = (shape: string, impl: string, dtype: string, tokens: number, op: Row['op']): number =>
  rows.find((r) => r.shape === shape && r.impl === impl && r.dtype === dtype && r.tokens === tokens && r.op === op)?.medianMs ?? NaN;
const summary: string[] = [];
for (const { shape, dtypes, ortDtypes } of SHAPES) {
  for (const dtype of dtypes) {
    for (const T of TOKENS) {
      const ours = find(shape.name, 'loupe webgpu', dtype, T, 'encode+topk');
      for (const od of ortDtypes) {
        const gpuOrt = find(shape.name, 'onnxruntime-web webgpu', od, T, 'encode+topk');
        const wasm = find(shape.name, 'onnxruntime-web wasm', od, T, 'encode+topk');
        summary.push(
          `| ${shape.name} | ${dtype} (ORT ${od}) | ${T} | ${ours.toFixed(1)} | ${(gpuOrt / ours).toFixed(2)}× | ${(wasm / ours).toFixed(2)}× | ${(find(shape.name, 'onnxruntime-web webgpu (dense)', od, T, 'decode') / find(shape.name, 'loupe webgpu (sparse)', dtype, T, 'decode')).toFixed(1)}× |`,
        );
      }
    }
  }
}

const pkg = (name: string): string => (JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8')) as { version: string }).version;
const meta = {
  date: new Date().toISOString(),
  adapter,
  capabilities: ctx.capabilities,
  versions: { node: process.version, webgpu: pkg('webgpu'), 'onnxruntime-web': pkg('onnxruntime-web') },
  machine: { cpus: (await import('node:os')).cpus().length, cpuModel: (await import('node:os')).cpus()[0]?.model ?? 'unknown' },
  copyBandwidthGBps: copy.gbps,
  quick,
};
mkdirSync('bench/results', { recursive: true });
const slug = `${meta.date.slice(0, 10)}-${adapter.replace(/[^a-z0-9]+/gi, '-').slice(0, 40).toLowerCase()}${quick ? '-quick' : ''}`;
writeFileSync(`bench/results/${slug}.json`, JSON.stringify({ meta, kernels, rows }, null, 2));
const md = [
  `# SAE kernel benchmark — ${meta.date.slice(0, 10)}`,
  '',
  `Adapter: **${adapter}** (${ctx.capabilities.cpuAdapter ? 'a CPU adapter: absolute times say nothing about a GPU; the ratios are the result' : 'GPU'}).`,
  `Versions: Node ${meta.versions.node}, webgpu (Dawn) ${meta.versions.webgpu}, onnxruntime-web ${meta.versions['onnxruntime-web']}. Machine: ${meta.machine.cpus} × ${meta.machine.cpuModel}.`,
  `Copy-kernel bandwidth (the roofline, bytes read + written): **${copy.gbps.toFixed(2)} GB/s**.`,
  '',
  '## Encode + top-k: Loupe vs onnxruntime-web (same graph, same adapter, same run)',
  '',
  '| shape | weights | T | Loupe ms | ORT WebGPU / Loupe | ORT wasm / Loupe | dense decode (ORT WebGPU) / sparse decode (Loupe) |',
  '|---|---|---|---|---|---|---|',
  ...summary,
  '',
  '## Loupe kernel times (per pass, amortised over repeated dispatches)',
  '',
  '| shape | weights | T | encode kernel ms | top-k kernel ms | weight bytes / encode time | share of copy bandwidth |',
  '|---|---|---|---|---|---|---|',
  ...kernels.map((k) => `| ${k.shape} | ${k.dtype} | ${k.tokens} | ${k.encodeKernelMs.toFixed(2)} | ${k.selectKernelMs.toFixed(2)} | ${k.weightGBps.toFixed(2)} GB/s | ${((100 * k.weightGBps) / copy.gbps).toFixed(0)}% |`),
  '',
  '## All measurements (median wall time, ms)',
  '',
  '| shape | implementation | dtype | T | op | median ms | runs | note |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.shape} | ${r.impl} | ${r.dtype} | ${r.tokens} | ${r.op} | ${r.medianMs.toFixed(2)} | ${r.runs} | ${r.note ?? ''} |`),
  '',
].join('\n');
writeFileSync(`bench/results/${slug}.md`, md);
if (!quick) writeFileSync('bench/results/latest.md', md);
log(`\nwrote bench/results/${slug}.{json,md}`);
ctx.release();
process.exit(0);
