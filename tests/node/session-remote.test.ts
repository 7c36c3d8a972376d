/**
 * A Session over the real Python reference server running Tiny-R1 (demo/public/models/tiny-r1),
 * with Tiny-R1's SAE loaded on the CPU: the readouts equal the CPU reference encode of hidden
 * states recomputed independently by PyTorch (a full forward, no KV cache, steering added by a
 * forward hook to a vector built in Python from the SAE file), and the PyTorch golden codes for
 * the unsteered run; a steered run sends the plan as raw vectors and gets steered activations
 * from the position asked; cancel stops the server's generation within a token or two.
 * Needs Debian's python3-torch (CI fails without it).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { readSafetensors } from '../../src/formats/safetensors.js';
import { referenceEncode } from '../../src/sae/reference/index.js';
import type { SaeConfig } from '../../src/sae/config.js';
import type { SaeWeights } from '../../src/sae/weights.js';
import { remoteTokenSource } from '../../src/session/remote.js';
import { Session } from '../../src/session/session.js';
import type { TokenReadout } from '../../src/session/types.js';
import { hasTorch, referenceSteeredGreedy, startServer, type RunningServer } from '../helpers/python-server.js';

const HAVE_TORCH = hasTorch();
if (!HAVE_TORCH && process.env['CI'] === 'true') throw new Error('CI requires Debian python3-torch: run tools/ci/install-system-deps.sh');

const ROOT = fileURLToPath(new URL('../../demo/public/models/tiny-r1/', import.meta.url));
interface Golden {
  prompt: string;
  layer: number;
  prompt_ids: number[];
  ids: number[];
  codes: Array<{ indices: number[]; values: number[] }>;
}
const golden = JSON.parse(readFileSync(`${ROOT}golden.json`, 'utf8')) as Golden;
const GENERATED = golden.ids.length - golden.prompt_ids.length;
const EOS = 534;

/** Tiny-R1's SAE in Loupe's layout, read from the file by the plain safetensors reader (W_enc [dIn, dSae] transposed). */
function tinySaeWeights(): SaeWeights {
  const t = readSafetensors(readFileSync(`${ROOT}sae/sae_weights.safetensors`)).tensors;
  const enc = t['W_enc']?.data as Float32Array;
  const [dIn = 0, dSae = 0] = t['W_enc']?.shape ?? [];
  const W_enc = new Float32Array(dIn * dSae);
  for (let i = 0; i < dIn; i++) for (let f = 0; f < dSae; f++) W_enc[f * dIn + i] = enc[i * dSae + f] as number;
  return { W_enc: { dtype: 'f32', data: W_enc }, W_dec: { dtype: 'f32', data: t['W_dec']?.data as Float32Array }, b_enc: t['b_enc']?.data as Float32Array, b_dec: t['b_dec']?.data as Float32Array };
}

/**
 * PyTorch, independent of the server's generation loop: greedy decoding with full forwards (no
 * cache) until EOS or `steps`, a hook on layers[layer] adding v = Σ strength · W_dec[f] (built in
 * PyTorch from the SAE file) at positions ≥ start; returns the ids and every position's block output.
 */
function referenceRun(promptIds: readonly number[], pushes: ReadonlyArray<{ feature: number; strength: number }>, start: number, steps: number): { ids: number[]; hidden: number[][] } {
  return referenceSteeredGreedy(promptIds, golden.layer, { sae: `${ROOT}sae/sae_weights.safetensors`, pushes }, start, steps, `${ROOT}model`, EOS);
}

/**
 * Codes agree up to float noise: shared features within `tol` (relative); a feature only one side
 * lists must be a near-tie at the top-k boundary (within `tol` of the other side's weakest).
 */
function expectCodesClose(got: TokenReadout, want: { indices: ArrayLike<number>; values: ArrayLike<number> }, tol: number, where: string): void {
  const a = new Map(Array.from(got.indices, (f, j) => [f, got.values[j] as number]));
  const b = new Map(Array.from(want.indices, (f, j) => [f, want.values[j] as number]));
  const weakest = (m: Map<number, number>): number => Math.min(...m.values());
  for (const [f, v] of a) {
    const w = b.get(f);
    if (w !== undefined) expect(Math.abs(v - w), `${where} feature ${f}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w)));
    else expect(v - weakest(b), `${where}: feature ${f} only in the readout`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(v)));
  }
  for (const [f, w] of b) if (!a.has(f)) expect(w - weakest(a), `${where}: feature ${f} only in the reference`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w)));
}

function referenceCodes(config: SaeConfig, hidden: number[][]): Array<{ indices: Uint32Array; values: Float32Array }> {
  const { codes } = referenceEncode(config, tinySaeWeights(), Float32Array.from(hidden.flat()), hidden.length);
  return hidden.map((_, t) => ({ indices: codes.indices.subarray(codes.offsets[t], codes.offsets[t + 1]), values: codes.values.subarray(codes.offsets[t], codes.offsets[t + 1]) }));
}

const servers: RunningServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.kill('SIGKILL')));
});

async function server(options: { tokenDelayMs?: number } = {}): Promise<RunningServer> {
  const s = await startServer({ model: `${ROOT}model`, ...options });
  servers.push(s);
  return s;
}

async function session(url: string): Promise<Session> {
  const s = await Session.open({ source: remoteTokenSource({ url, hook: { layer: golden.layer }, dtype: 'f32', temperature: 0 }), sae: { source: new URL('sae/', `file://${ROOT}`) } });
  expect(s.sae?.backend).toBe('cpu');
  return s;
}

const messages = [{ role: 'user' as const, content: golden.prompt }];

describe.skipIf(!HAVE_TORCH)('Session ↔ the reference server running Tiny-R1', () => {
  test('unsteered: readouts equal the PyTorch golden codes and the reference encode of recomputed hidden states', async () => {
    const s = await session((await server()).url);
    const summary = await s.run({ messages, maxNewTokens: GENERATED });
    expect(summary).toMatchObject({ status: 'done', promptTokens: golden.prompt_ids.length, generatedTokens: GENERATED });
    const tokens = s.readouts.tokens;
    expect(tokens.map((t) => t.tokenId)).toEqual(golden.ids);
    expect(tokens.every((t) => !t.steered && !t.nonFinite)).toBe(true);
    tokens.forEach((t, i) => expectCodesClose(t, golden.codes[i] as Golden['codes'][number], 1e-4, `golden token ${i}`));
    const ref = referenceRun(golden.prompt_ids, [], 0, GENERATED);
    expect(ref.ids).toEqual(golden.ids);
    const want = referenceCodes(s.sae?.config as SaeConfig, ref.hidden);
    tokens.forEach((t, i) => expectCodesClose(t, want[i] as { indices: Uint32Array; values: Float32Array }, 1e-4, `token ${i}`));
    expect(tokens.slice(golden.prompt_ids.length).map((t) => t.text).join('')).toBe(summary.text);
    expect(summary.text).toMatch(/^Okay, so the user/);
    await s.destroy();
  }, 180_000);

  test('steered: the server steers from the position asked, and the readouts follow the steered activations', async () => {
    const s = await session((await server()).url);
    // two features that fire during the golden generation, pushed hard enough to change it
    const gen = golden.codes.slice(golden.prompt_ids.length);
    const f1 = gen[4]?.indices[0] as number;
    const f2 = gen[9]?.indices[1] as number;
    const pushes = [{ feature: f1, strength: -12 }, { feature: f2, strength: 18 }];
    const start = golden.prompt_ids.length + 3;
    s.setSteering({ push: pushes, start });
    const summary = await s.run({ messages, maxNewTokens: GENERATED });
    expect(summary.status).toBe('done');
    const tokens = s.readouts.tokens;
    const ref = referenceRun(golden.prompt_ids, pushes, start, GENERATED);
    expect(tokens.map((t) => t.tokenId)).toEqual(ref.ids);
    expect(tokens.map((t) => t.steered)).toEqual(tokens.map((t) => t.position >= start));
    const want = referenceCodes(s.sae?.config as SaeConfig, ref.hidden);
    tokens.forEach((t, i) => expectCodesClose(t, want[i] as { indices: Uint32Array; values: Float32Array }, 1e-4, `token ${i}`));
    // the steering did something: the first steered token's codes differ from the unsteered run's
    const unsteered = golden.codes[start] as Golden['codes'][number];
    expect(Array.from(tokens[start]?.indices ?? [])).not.toEqual(unsteered.indices);
    expect(Array.from(tokens[start - 1]?.indices ?? [])).toEqual(golden.codes[start - 1]?.indices);
    await s.destroy();
  }, 180_000);

  test('cancel: the session stops at once and the server stops generating within a token or two', async () => {
    const srv = await server({ tokenDelayMs: 60 });
    const s = await session(srv.url);
    let generated = 0;
    s.on('token', (e) => {
      if (e.detail.phase !== 'prompt' && ++generated === 5) s.cancel();
    });
    const summary = await s.run({ messages, maxNewTokens: 200 });
    expect(summary.status).toBe('cancelled');
    expect(summary.generatedTokens).toBe(5);
    await new Promise((r) => setTimeout(r, 600));
    const info = (await (await fetch(`${srv.url}/v1/info`)).json()) as { last_request: { generated_tokens: number; finished: boolean } };
    expect(info.last_request.finished).toBe(true);
    expect(info.last_request.generated_tokens - 5).toBeLessThanOrEqual(2);
    expect(s.readouts.tokens).toHaveLength(golden.prompt_ids.length + 5);
    await s.destroy();
  }, 120_000);
});
