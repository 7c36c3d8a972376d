/**
 * Golden fixtures on the real browser stack: headless Chromium, WebGPU on SwiftShader. The page
 * (page/parity.ts) fetches each fixture, encodes and decodes it with `Sae` on WebGPU; here, in
 * Node, the results are compared with the outputs the source projects computed
 * (docs/golden-fixtures.md) using the same comparison rules as the kernel tests.
 *
 * SwiftShader has no shader-f16, so f16 weights take the unpack2x16float path and bf16 weights
 * the bit-shift path (both core WGSL).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SparseCodes } from '../../src/sae/codes.js';
import { reconstructionMetrics } from '../../src/sae/reference/index.js';
import { readSaeFile, toF32 } from '../../demo/sae-file.js';
import { compareCodes, TOLERANCE, worstRatio, type Tolerance } from '../helpers/compare.js';
import {
  describeProbe,
  isSwiftShaderLike,
  launchChromium,
  PAGE_TIMEOUT_MS,
  probeWebGpu,
  repoRoot,
  requireGpu,
  shutdown,
  startVite,
  withTimeout,
  type BrowserHandle,
  type ViteHandle,
} from './harness.js';
import type { GpuProbe, ParityResult } from './page/protocol.js';

const GOLDEN = `${repoRoot}tests/fixtures/golden/`;

interface IndexCase {
  readonly name: string;
  readonly file: string;
  readonly weightDtype: 'f32' | 'f16' | 'bf16';
}

const index = JSON.parse(readFileSync(`${GOLDEN}index.json`, 'utf8')) as { cases: IndexCase[] };
const f32Cases = index.cases.filter((c) => c.weightDtype === 'f32');
const halfCases = index.cases.filter((c) => c.weightDtype !== 'f32');

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;
let probe: GpuProbe | undefined;
let skipReason: string | undefined;

beforeAll(async () => {
  vite = await startVite();
  chrome = await launchChromium();
  await chrome.page.goto(`${vite.url}tests/browser/page/parity.html`, { waitUntil: 'load' });
  probe = await probeWebGpu(chrome.page);
  skipReason = requireGpu(probe);
  console.log(`Chromium WebGPU adapter: ${describeProbe(probe)}`);
  if (skipReason === undefined) {
    try {
      await chrome.page.waitForFunction(() => window.__parity !== undefined, undefined, { timeout: 60_000 });
    } catch (err) {
      throw new Error(`The parity page did not start: ${String(err)}\nbrowser log:\n${chrome.log.join('\n')}`);
    }
  }
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
}, 60_000);

function codesOf(r: ParityResult): SparseCodes {
  return {
    tokens: r.tokens,
    offsets: Uint32Array.from(r.codes.offsets),
    indices: Uint32Array.from(r.codes.indices),
    values: Float32Array.from(r.codes.values),
    nonFiniteTokens: Uint32Array.from(r.codes.nonFiniteTokens),
  };
}

function maxAbs(v: Float32Array): number {
  let m = 0;
  for (const a of v) if (Number.isFinite(a)) m = Math.max(m, Math.abs(a));
  return m;
}

async function checkFixture(c: IndexCase): Promise<void> {
  const page = chrome?.page;
  if (page === undefined) throw new Error('beforeAll did not open the page.');
  const fixture = readSaeFile(readFileSync(`${GOLDEN}${c.file}`));
  const t = fixture.tensors;
  const tensor = (name: string): Float32Array => {
    const v = t[name];
    if (v === undefined) throw new Error(`${c.file} lacks tensor ${name}`);
    return toF32(v, name);
  };
  const { dIn, dSae } = fixture.config;
  const computeDtype = fixture.fixtureCase?.['computeDtype'];
  // Goodfire's bf16 SAE computes in bf16: its expected outputs carry bf16 rounding.
  const tol: Tolerance = computeDtype === 'bf16' ? TOLERANCE['bf16-compute'] : TOLERANCE[c.weightDtype];
  const expectedHat = tensor('x_hat');
  // atol relative to the typical magnitude of x̂ where the reference itself is rounded (bf16 compute).
  const hatScale = computeDtype === 'bf16' ? maxAbs(expectedHat) : 1;

  let result: ParityResult;
  try {
    result = await withTimeout(
      page.evaluate((file: string) => {
        if (window.__parity === undefined) throw new Error('parity page not ready');
        return window.__parity.run(file);
      }, c.file),
      PAGE_TIMEOUT_MS,
      `${c.name} in Chromium`,
    );
  } catch (err) {
    throw new Error(`${String(err)}\nbrowser log:\n${chrome?.log.slice(-20).join('\n') ?? ''}`);
  }

  expect(result.backend).toBe('webgpu');
  expect(result.gpuErrors, 'uncaptured WebGPU errors').toEqual([]);
  expect(result.tokens).toBe(fixture.tokens);
  const codes = codesOf(result);
  const expectedNonFinite = (fixture.fixtureCase?.['nonFiniteTokens'] as number[] | undefined) ?? [];
  expect([...codes.nonFiniteTokens].sort((a, b) => a - b)).toEqual([...expectedNonFinite].sort((a, b) => a - b));

  expect(compareCodes(codes, tensor('feature_acts'), tensor('pre_acts'), dSae, tol), 'codes vs feature_acts').toEqual([]);

  const xHat = Float32Array.from(result.xHat);
  const hat = worstRatio(xHat, expectedHat, tol, hatScale);
  expect(hat.ratio, `x_hat worst at ${hat.at} (token ${Math.floor(hat.at / dIn)}): ${xHat[hat.at]} vs ${expectedHat[hat.at]}`).toBeLessThanOrEqual(1);

  // reconstruct() agrees with encode()+decode(), and its metrics with the CPU formula on its own x̂.
  const recHat = Float32Array.from(result.reconstruct.xHat);
  expect(worstRatio(recHat, xHat, TOLERANCE.f32).ratio, 'reconstruct x̂ vs decode x̂').toBeLessThanOrEqual(1);
  const x = tensor('x');
  const cpu = reconstructionMetrics(x, recHat, fixture.tokens, dIn);
  const metricRatios: string[] = [];
  for (const key of ['mse', 'fvu', 'cosine'] as const) {
    const r = worstRatio(Float32Array.from(result.reconstruct[key]), cpu[key], { atol: 1e-5, rtol: 1e-3 });
    metricRatios.push(`${key} ${r.ratio.toFixed(3)}`);
    expect(r.ratio, `${key} worst at token ${r.at}`).toBeLessThanOrEqual(1);
  }
  const tm = result.timings;
  console.log(
    `${c.name}: T=${fixture.tokens} ${c.weightDtype} ok; x_hat ratio ${hat.ratio.toFixed(3)}; metric ratios ${metricRatios.join(', ')}; ` +
      `load ${tm.loadMs.toFixed(0)} ms, create ${tm.createMs.toFixed(0)} ms, encode ${tm.encodeMs.toFixed(1)} ms, decode ${tm.decodeMs.toFixed(1)} ms`,
  );
}

describe('golden fixtures in Chromium (WebGPU on SwiftShader)', () => {
  test('the adapter is SwiftShader-like', async (ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    expect(probe?.ok).toBe(true);
    if (probe === undefined || !probe.ok) return;
    await ctx.annotate(`adapter: ${describeProbe(probe)}`);
    // Set LOUPE_ANY_ADAPTER=1 on a machine where Chromium gets a hardware adapter.
    if (process.env['LOUPE_ANY_ADAPTER'] === '1') return;
    expect(isSwiftShaderLike(probe), describeProbe(probe)).toBe(true);
    // So the f16 fixtures below exercise the unpack2x16float path, not native f16.
    expect(probe.features).not.toContain('shader-f16');
  });

  test.for(f32Cases.map((c) => [c.name, c] as const))('%s', async ([, c], ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    await checkFixture(c);
  });

  // 16-bit weights: f16 through unpack2x16float, bf16 through bit shifts (no shader-f16 here).
  test.for(halfCases.map((c) => [c.name, c] as const))('%s (widened in WGSL)', async ([, c], ctx) => {
    if (skipReason !== undefined) return ctx.skip(skipReason);
    await checkFixture(c);
  });
});
