/**
 * In the browser: fetch a golden fixture, build an `Sae` on WebGPU, encode the fixture's x,
 * decode the codes, reconstruct, and hand everything back to Node (which compares it with the
 * fixture's expected outputs; see ../golden-parity.test.ts).
 */
import { Sae } from '../../../src/index.js';
import { readSaeFile } from '../../../demo/sae-file.js';
import type { ParityApi, ParityResult } from './protocol.js';

const FIXTURES = '/tests/fixtures/golden/';

async function run(file: string): Promise<ParityResult> {
  const t0 = performance.now();
  const response = await fetch(FIXTURES + encodeURIComponent(file));
  if (!response.ok) throw new Error(`GET ${FIXTURES}${file}: HTTP ${response.status}`);
  const fixture = readSaeFile(await response.arrayBuffer());
  const x = fixture.x;
  if (x === undefined) throw new Error(`${file} has no input tensor "x".`);
  const t1 = performance.now();
  const sae = await Sae.create({ config: fixture.config, weights: fixture.weights }, { backend: 'webgpu', gpu: navigator.gpu });
  const gpuErrors: string[] = [];
  sae.device?.addEventListener('uncapturederror', (e) => gpuErrors.push((e as GPUUncapturedErrorEvent).error.message));
  try {
    const t2 = performance.now();
    const codes = await sae.encode(x, { tokens: fixture.tokens });
    const t3 = performance.now();
    const xHat = await sae.decode(codes);
    const t4 = performance.now();
    const rec = await sae.reconstruct(x, { tokens: fixture.tokens });
    await sae.device?.queue.onSubmittedWorkDone();
    return {
      file,
      backend: sae.backend,
      adapter: sae.adapter ?? '',
      deviceFeatures: sae.device !== undefined ? [...sae.device.features].sort() : [],
      tokens: codes.tokens,
      codes: {
        offsets: Array.from(codes.offsets),
        indices: Array.from(codes.indices),
        values: Array.from(codes.values),
        nonFiniteTokens: Array.from(codes.nonFiniteTokens),
      },
      xHat: Array.from(xHat),
      reconstruct: {
        xHat: Array.from(rec.xHat),
        mse: Array.from(rec.metrics.mse),
        fvu: Array.from(rec.metrics.fvu),
        cosine: Array.from(rec.metrics.cosine),
      },
      gpuErrors,
      timings: { loadMs: t1 - t0, createMs: t2 - t1, encodeMs: t3 - t2, decodeMs: t4 - t3 },
    };
  } finally {
    sae.destroy();
  }
}

const api: ParityApi = { run };
window.__parity = api;
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
