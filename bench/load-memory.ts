/**
 * `npm run bench:load`: loading an R1-size SAE (Goodfire layout: W [7168, 28672] f32 + biases,
 * written by torch.save — 822 MB, generated here, never committed) from a local HTTP URL onto
 * the GPU as bf16, two ways side by side on the same adapter:
 *   - stream:   loadSae(url, { weightDtype: 'bf16' }) — the file is parsed as it arrives and
 *               uploaded in 8 MiB chunks (transposed on the GPU);
 *   - buffered: fetch the whole file, readTorchCheckpoint, transpose and convert on the CPU,
 *               Sae.create — what a loader without streaming does.
 * Each runs in its own child process so its peak RSS (VmHWM) is its own. On a CPU adapter
 * (lavapipe) GPU buffers live in host memory, so the 411 MB GPU copy is part of the RSS.
 * Both encode the same token; their feature indices must agree.
 *
 * Needs Debian's python3-torch (`sudo bash tools/ci/install-system-deps.sh` installs it).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { GpuContext } from '../src/gpu/device.js';
import { readTorchCheckpoint } from '../src/formats/torch.js';
import { loadSae } from '../src/runtime/load.js';
import { Sae } from '../src/runtime/sae.js';
import { adapterFor } from '../src/sae/loaders/index.js';
import { headersOf, planToWeights } from '../src/sae/loaders/in-memory.js';
import { serveFixtures } from '../tests/helpers/http-server.js';
import { getSharedGpu } from './ort/session.js';

const D_IN = 7168;
const D_SAE = 28672;
const K = 128;

interface ChildResult {
  mode: string;
  adapter: string;
  ms: number;
  baselineMB: number;
  peakMB: number;
  afterMB: number;
  indices: number[];
}

function statusMB(field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return m?.[1] !== undefined ? Number(m[1]) / 1024 : NaN;
}

/** One token of deterministic input (same in both children). */
function token(): Float32Array {
  const x = new Float32Array(D_IN);
  for (let i = 0; i < D_IN; i++) x[i] = Math.sin(i * 0.37) * 2 + Math.cos(i * 0.011);
  return x;
}

async function child(mode: string, url: string): Promise<void> {
  const gpu = getSharedGpu();
  const probe = await GpuContext.create({ gpu });
  const adapter = probe.adapterDescription;
  probe.release();
  const baselineMB = statusMB('VmRSS');
  const t0 = performance.now();
  let sae: Sae;
  if (mode === 'stream') {
    sae = await loadSae(url, { gpu, backend: 'webgpu', weightDtype: 'bf16', warmup: false, cache: false });
  } else {
    const res = await fetch(`${url}DeepSeek-R1-SAE-l37.pt`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const cfg = (await (await fetch(`${url}config.json`)).json()) as Record<string, unknown>;
    const tensors = await readTorchCheckpoint(bytes);
    const headers = headersOf(tensors);
    const plan = adapterFor(headers, cfg).plan(headers, cfg, {});
    const loaded = planToWeights(plan, tensors, 'bf16');
    sae = await Sae.create(loaded, { gpu, backend: 'webgpu', warmup: false });
  }
  await sae.device?.queue.onSubmittedWorkDone();
  const ms = performance.now() - t0;
  const codes = await sae.encode(token());
  const out: ChildResult = { mode, adapter, ms, baselineMB, peakMB: statusMB('VmHWM'), afterMB: statusMB('VmRSS'), indices: Array.from(codes.indices) };
  sae.destroy();
  process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
  process.exit(0);
}

function generate(dir: string): void {
  const pt = `${dir}/DeepSeek-R1-SAE-l37.pt`;
  if (existsSync(pt) && statSync(pt).size > 800e6) return;
  mkdirSync(dir, { recursive: true });
  console.log(`generating ${pt} with torch.save (822 MB) ...`);
  const script = [
    'import collections, json, sys, torch',
    'torch.manual_seed(0)',
    `W = torch.randn(${D_IN}, ${D_SAE}) * 0.02`,
    `sd = collections.OrderedDict([("W", W), ("b_enc", torch.randn(${D_SAE}) * 0.01), ("b_dec", torch.randn(${D_IN}) * 0.01)])`,
    'torch.save(sd, sys.argv[1] + "/DeepSeek-R1-SAE-l37.pt")',
    `json.dump({"d_in": ${D_IN}, "expansion_factor": ${D_SAE / D_IN}, "k": ${K}}, open(sys.argv[1] + "/config.json", "w"))`,
  ].join('\n');
  execFileSync('/usr/bin/python3', ['-c', script, dir], { stdio: 'inherit' });
}

async function runChild(mode: string, url: string): Promise<ChildResult> {
  const args = ['--import', './tools/node/register-wgsl.mjs', '--import', 'tsx', 'bench/load-memory.ts', '--child', mode, url];
  return new Promise((ok, fail) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || line === undefined) fail(new Error(`${mode} child exited ${code}: ${out.slice(-2000)}`));
      else ok(JSON.parse(line.slice(7)) as ChildResult);
    });
  });
}

async function main(): Promise<void> {
  const dir = `${tmpdir()}/loupe-bench/r1-f32`;
  generate(dir);
  const fileMB = statSync(`${dir}/DeepSeek-R1-SAE-l37.pt`).size / 1024 / 1024;
  const server = await serveFixtures([{ at: '/DeepSeek-R1-SAE-l37', dir }]);
  const url = `${server.origin}/DeepSeek-R1-SAE-l37/`;
  const results: ChildResult[] = [];
  try {
    for (const mode of ['stream', 'buffered']) {
      console.log(`${mode} ...`);
      const r = await runChild(mode, url);
      console.log(`  ${mode}: ${(r.ms / 1000).toFixed(1)} s, peak RSS ${r.peakMB.toFixed(0)} MB (baseline ${r.baselineMB.toFixed(0)} MB)`);
      results.push(r);
    }
  } finally {
    await server.close();
  }
  const [stream, buffered] = results;
  if (stream === undefined || buffered === undefined) throw new Error('missing results');
  const agree = JSON.stringify(stream.indices) === JSON.stringify(buffered.indices);
  const date = new Date().toISOString().slice(0, 10);
  const slug = stream.adapter.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
  const md = [
    `# Loading an R1-size SAE (${date})`,
    '',
    `Adapter: ${stream.adapter}. File: Goodfire layout, W [${D_IN}, ${D_SAE}] f32 + biases, torch.save, ${fileMB.toFixed(0)} MiB, served by a local HTTP server; loaded onto the GPU as bf16 (411 MB).`,
    `Peak RSS = VmHWM of the loading process (a CPU adapter keeps GPU buffers in host memory, so it includes the GPU copy). Target: below 1.5 × file size = ${(1.5 * fileMB).toFixed(0)} MiB (goal: file + 256 MiB = ${(fileMB + 256).toFixed(0)} MiB).`,
    '',
    '| path | time (s) | throughput (MB/s) | baseline RSS (MiB) | peak RSS (MiB) | peak / file |',
    '|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.mode} | ${(r.ms / 1000).toFixed(1)} | ${((fileMB * 1.048576) / (r.ms / 1000)).toFixed(0)} | ${r.baselineMB.toFixed(0)} | ${r.peakMB.toFixed(0)} | ${(r.peakMB / fileMB).toFixed(2)} |`),
    '',
    `Both paths encode the same token to the same ${stream.indices.length} feature indices: ${agree ? 'yes' : 'NO'}.`,
    '',
  ].join('\n');
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${date}-load-${slug}.md`, md);
  writeFileSync(`bench/results/${date}-load-${slug}.json`, JSON.stringify({ date, fileMB, results: results.map(({ indices, ...r }) => ({ ...r, features: indices.length })), indicesAgree: agree }, null, 2));
  console.log(md);
  if (!agree) process.exitCode = 1;
}

const at = process.argv.indexOf('--child');
if (at >= 0) await child(process.argv[at + 1] ?? '', process.argv[at + 2] ?? '');
else await main();
