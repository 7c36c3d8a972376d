/**
 * Session runs on the CPU backend over a recorded trace and over the remote stream client
 * (RemoteSource parsing real protocol bytes from a scripted server behind `fetch`): events and
 * status transitions, readouts equal to the CPU reference encode of the streamed activations,
 * a NaN activation kept as a non-finite token, UTF-8 characters split across pieces, cancel
 * within one token, a source that fails mid-run keeping every token, run-while-running, the
 * steering request sent for a side-by-side run, loading with the CPU fallback or 'unsupported',
 * and trace recording of a live run replaying to the same readouts.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { SessionError, StreamDroppedError, TraceFormatError, UnsupportedError } from '../../src/errors.js';
import { createSae, type Sae } from '../../src/runtime/sae.js';
import { resolveSaeConfig, type SaeConfigInput } from '../../src/sae/config.js';
import { referenceEncode } from '../../src/sae/reference/index.js';
import type { SaeWeights } from '../../src/sae/weights.js';
import { chooseBackend, chooseSaeBackend, CPU_FALLBACK_MAX_WEIGHTS, probeSaeShape } from '../../src/session/backend.js';
import { remoteTokenSource } from '../../src/session/remote.js';
import { Session } from '../../src/session/session.js';
import { TraceSource, recordTrace } from '../../src/session/trace.js';
import { encodeTrace } from '../../src/session/trace-format.js';
import type { SessionStatus, TokenReadout } from '../../src/session/types.js';
import type { SteeringPlan } from '../../src/steer/plan.js';
import { serveFixtures } from '../helpers/http-server.js';
import { concat, encodeActivation, endFrame, frame, headerFrame, preamble } from '../helpers/loupe-frames.js';
import { randomSae } from '../helpers/random-sae.js';
import { gaussian } from '../helpers/random.js';

const TRACES = new URL('../fixtures/traces/', import.meta.url);
const TINY_SAE = new URL('../../demo/public/models/tiny-r1/sae/', import.meta.url);

// ---- a scripted Loupe stream server behind fetch ----

interface ScriptToken {
  readonly text: Uint8Array;
  readonly values: Float32Array;
  readonly phase: 0 | 1 | 2;
  readonly steered?: boolean;
}
interface Script {
  readonly dIn: number;
  readonly tokens: readonly ScriptToken[];
  readonly promptTokens: number;
  /** Delay before each generated token. */
  readonly delayMs?: number;
  /** Error the body after this many tokens (a dropped connection). */
  readonly failAfter?: number;
}
interface Served {
  readonly bodies: Array<Record<string, unknown>>;
  readonly signals: AbortSignal[];
}

/** A TOKEN frame with raw text bytes (a piece may end inside a character), per docs/protocol.md. */
function tokenFrameBytes(position: number, t: ScriptToken, dIn: number): Uint8Array {
  const pad = (4 - (t.text.length % 4)) % 4;
  const act = encodeActivation(t.values, 'f32');
  const p = new Uint8Array(16 + t.text.length + pad + act.length);
  const v = new DataView(p.buffer);
  v.setUint32(0, position, true);
  v.setUint32(4, 100 + position, true);
  v.setUint8(8, t.phase);
  v.setUint8(9, t.steered === true ? 1 : 0);
  v.setUint16(10, t.text.length, true);
  v.setUint32(12, dIn, true);
  p.set(t.text, 16);
  p.set(act, 16 + t.text.length + pad);
  return frame(2, p);
}

const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms));

function scriptedFetch(script: (body: Record<string, unknown>) => Script, served: Served = { bodies: [], signals: [] }): { fetch: typeof fetch; served: Served } {
  const doFetch = (async (_url: unknown, init?: RequestInit) => {
    const body = JSON.parse(String(init?.body)) as Record<string, unknown>;
    served.bodies.push(body);
    const signal = init?.signal ?? new AbortController().signal;
    served.signals.push(signal);
    const s = script(body);
    const head = concat([preamble(), headerFrame({ d_in: s.dIn, dtype: 'f32', prompt_tokens: s.promptTokens })]);
    const frames = s.tokens.map((t, i) => tokenFrameBytes(i, t, s.dIn));
    // Pull-based, like a socket: a chunk is produced only when the previous one was taken, so a
    // failure after n tokens comes after the client has read those n (erroring a stream drops
    // whatever it still queues).
    const chunks: Array<() => Promise<Uint8Array | Error | undefined>> = [async () => concat([head, ...frames.slice(0, s.promptTokens)])];
    for (let i = s.promptTokens; i < frames.length; i++) {
      if (s.failAfter !== undefined && i >= s.failAfter) {
        chunks.push(async () => new TypeError('terminated: connection reset'));
        break;
      }
      chunks.push(async () => {
        if (s.delayMs !== undefined) await sleep(s.delayMs);
        return frames[i];
      });
    }
    if (s.failAfter === undefined || s.failAfter >= frames.length) chunks.push(async () => endFrame('eos', s.promptTokens, frames.length - s.promptTokens));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        signal.addEventListener('abort', () => controller.error(signal.reason), { once: true });
      },
      async pull(controller) {
        const next = chunks.shift();
        if (next === undefined) return controller.close();
        const c = await next();
        if (signal.aborted) return;
        if (c instanceof Error) controller.error(c);
        else if (c !== undefined) controller.enqueue(c);
      },
    }, { highWaterMark: 0 });
    return new Response(stream, { status: 200, headers: { 'content-type': 'application/vnd.loupe.stream; version=1' } });
  }) as typeof fetch;
  return { fetch: doFetch, served };
}

const D_IN = 16;
const CONFIG: SaeConfigInput & { weightDtype: 'f32' } = { architecture: 'topk', dIn: D_IN, dSae: 64, k: 4, weightDtype: 'f32' };
const WEIGHTS: SaeWeights = randomSae(CONFIG, 11);
const cpuSae = (): Promise<Sae> => createSae({ config: CONFIG, weights: WEIGHTS }, { backend: 'cpu' });
const enc = new TextEncoder();

function tokens(n: number, prompt: number, seed: number, texts?: readonly Uint8Array[]): ScriptToken[] {
  return Array.from({ length: n }, (_, i) => ({ text: texts?.[i] ?? enc.encode(`w${i} `), values: gaussian(D_IN, seed + i, 2), phase: i < prompt ? 0 : 1 }));
}

/** The CPU reference's readout features for each scripted token. */
function reference(ts: readonly ScriptToken[]): Array<{ indices: number[]; values: number[]; nonFinite: boolean }> {
  const x = new Float32Array(ts.length * D_IN);
  ts.forEach((t, i) => x.set(t.values, i * D_IN));
  const { codes } = referenceEncode(resolveSaeConfig(CONFIG), WEIGHTS, x, ts.length);
  return ts.map((_, t) => {
    const lo = codes.offsets[t] ?? 0;
    const hi = codes.offsets[t + 1] ?? 0;
    return { indices: Array.from(codes.indices.subarray(lo, hi)), values: Array.from(codes.values.subarray(lo, hi)), nonFinite: codes.nonFiniteTokens.includes(t) };
  });
}

function features(r: readonly TokenReadout[]): Array<{ indices: number[]; values: number[]; nonFinite: boolean }> {
  return r.map((t) => ({ indices: Array.from(t.indices), values: Array.from(t.values), nonFinite: t.nonFinite }));
}

function record(session: Session): { statuses: SessionStatus[]; events: string[]; tokens: TokenReadout[] } {
  const log = { statuses: [] as SessionStatus[], events: [] as string[], tokens: [] as TokenReadout[] };
  session.on('status', (e) => {
    log.statuses.push(e.detail.status);
    log.events.push(`status:${e.detail.status}`);
  });
  session.on('reset', () => log.events.push('reset'));
  session.on('token', (e) => {
    log.events.push('token');
    log.tokens.push(e.detail);
  });
  session.on('steering', () => log.events.push('steering'));
  return log;
}

const request = { messages: [{ role: 'user' as const, content: 'Hi' }], maxNewTokens: 32 };

describe('Session over a trace', () => {
  test('statuses, events and readouts equal the recorded run; the recorded plan is the session\'s', async () => {
    const bytes = new Uint8Array(await (await import('node:fs/promises')).readFile(new URL('flags.loupetrace', TRACES)));
    const want = await replayAll(TraceSource.fromBytes(bytes));
    const source = TraceSource.fromBytes(bytes);
    const session = new Session({ source });
    expect(session.status).toBe('ready');
    expect(session.readouts.dSae).toBe(40);
    expect(session.steering).toEqual(source.header.steering);
    const log = record(session);
    const summary = await session.run(request);
    expect(log.events).toEqual(['reset', 'status:generating', ...want.map(() => 'token'), 'status:done']);
    expect(session.readouts.tokens).toEqual(want);
    expect(log.tokens).toEqual(want);
    expect(summary).toEqual({ status: 'done', promptTokens: 3, generatedTokens: 9, text: want.slice(3).map((t) => t.text).join('') });
    // a second run replays again from a fresh store
    await session.run(request);
    expect(session.readouts.tokens).toEqual(want);
  });

  test('a truncated trace: every token before the cut is kept, status error with the reason', async () => {
    const bytes = new Uint8Array(await (await import('node:fs/promises')).readFile(new URL('flags.loupetrace', TRACES)));
    const session = new Session({ source: TraceSource.fromBytes(bytes.subarray(0, bytes.length - 200)) });
    const summary = await session.run(request);
    expect(summary.status).toBe('error');
    expect(summary.error).toBeInstanceOf(TraceFormatError);
    expect(session.status).toBe('error');
    expect(session.message).toMatch(/checksum|truncated/);
    const want = await replayAll(TraceSource.fromBytes(bytes));
    expect(session.readouts.tokens.length).toBeGreaterThan(5);
    expect(session.readouts.tokens).toEqual(want.slice(0, session.readouts.tokens.length));
  });
});

async function replayAll(source: TraceSource): Promise<TokenReadout[]> {
  const out: TokenReadout[] = [];
  for await (const t of source.generate({ messages: [], maxNewTokens: 0, steering: undefined, sae: undefined, signal: new AbortController().signal })) {
    if (t.codes === undefined) throw new Error('no codes');
    out.push({ position: t.position, tokenId: t.tokenId, text: t.text, phase: t.phase, steered: t.steered, indices: t.codes.indices, values: t.codes.values, nonFinite: t.codes.nonFinite });
  }
  return out;
}

describe('Session over the remote stream (scripted server, CPU SAE)', () => {
  test('readouts equal the reference encode of the streamed activations; a NaN activation is kept as a non-finite token', async () => {
    const ts = tokens(30, 12, 100);
    const nan = ts[15] as ScriptToken;
    nan.values[3] = NaN;
    const { fetch } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 12 }));
    const sae = await cpuSae();
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }), sae });
    const calls: number[] = [];
    const encode = sae.encode.bind(sae);
    sae.encode = (x, o) => {
      calls.push(o?.tokens ?? -1);
      return encode(x, o);
    };
    const log = record(session);
    const summary = await session.run(request);
    expect(summary.status).toBe('done');
    expect(summary.promptTokens).toBe(12);
    expect(summary.generatedTokens).toBe(18);
    expect(session.readouts.tokens.map((t) => t.position)).toEqual([...Array(30).keys()]);
    expect(features(session.readouts.tokens)).toEqual(reference(ts));
    const bad = session.readouts.tokens[15] as TokenReadout;
    expect(bad.nonFinite).toBe(true);
    expect(bad.indices).toHaveLength(0);
    expect(log.tokens).toHaveLength(30);
    expect(calls.reduce((a, b) => a + b, 0)).toBe(30);
    expect(session.source.info).toEqual({ model: 'test', hookpoint: 'layer 3 resid_post', dIn: D_IN });
  });

  test('UTF-8 pieces that end inside a character: the character goes to the token that completes it', async () => {
    const pieces = [[0x3c, 0x70, 0x3e], [0x63, 0x61, 0x66, 0xc3], [0xa9], [0xf0, 0x9f], [0x98], [0x80, 0x21], [0xe2, 0x88], [0x9e, 0x20, 0xff, 0x2e]].map((b) => Uint8Array.from(b));
    const ts = tokens(pieces.length, 1, 7, pieces);
    const { fetch } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 1 }));
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }), sae: await cpuSae() });
    const summary = await session.run(request);
    expect(session.readouts.tokens.map((t) => t.text)).toEqual(['<p>', 'caf', 'é', '', '', '😀!', '', '∞ \uFFFD.']);
    expect(summary.text).toBe(new TextDecoder().decode(concat(pieces.slice(1))));
  });

  test('cancel() from a token listener: no token after it, the request is aborted, the next run works', async () => {
    const ts = tokens(40, 5, 300);
    const { fetch, served } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 5, delayMs: 15 }));
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }), sae: await cpuSae() });
    const log = record(session);
    const off = session.on('token', (e) => {
      if (e.detail.position === 9) session.cancel();
    });
    const summary = await session.run(request);
    expect(summary.status).toBe('cancelled');
    expect(session.status).toBe('cancelled');
    expect(log.tokens.map((t) => t.position)).toEqual([...Array(10).keys()]);
    await sleep(100);
    expect(log.tokens).toHaveLength(10);
    expect(served.signals[0]?.aborted).toBe(true);
    off();
    const again = await session.run({ ...request, signal: new AbortController().signal });
    expect(again.status).toBe('done');
    expect(features(session.readouts.tokens)).toEqual(reference(ts));
  });

  test('cancel through the request\'s signal while the stream is silent', async () => {
    const ts = tokens(20, 3, 500);
    const { fetch } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 3, delayMs: 400 }));
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }), sae: await cpuSae() });
    const controller = new AbortController();
    const t0 = performance.now();
    const pending = session.run({ ...request, signal: controller.signal });
    setTimeout(() => controller.abort(), 600);
    const summary = await pending;
    expect(summary.status).toBe('cancelled');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(summary.promptTokens).toBe(3);
    expect(summary.generatedTokens).toBe(1);
  });

  test('the stream fails mid-run: every token received is kept and encoded, status error with the reason', async () => {
    const ts = tokens(20, 4, 700);
    const { fetch } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 4, failAfter: 9 }));
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 }, reconnect: { retries: 0 } }), sae: await cpuSae() });
    const log = record(session);
    const summary = await session.run(request);
    expect(summary.status).toBe('error');
    expect(summary.error).toBeInstanceOf(StreamDroppedError);
    expect(session.status).toBe('error');
    expect(session.message).toMatch(/dropped/);
    expect(log.statuses.at(-1)).toBe('error');
    expect(features(session.readouts.tokens)).toEqual(reference(ts.slice(0, 9)));
    expect(summary.generatedTokens).toBe(5);
  });

  test('a second run while one is generating is refused; so are loading and a side-by-side', async () => {
    const ts = tokens(12, 2, 900);
    const { fetch } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 2, delayMs: 10 }));
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }), sae: await cpuSae() });
    const first = session.run(request);
    expect(session.status).toBe('generating');
    await expect(session.run(request)).rejects.toBeInstanceOf(SessionError);
    await expect(session.run(request)).rejects.toThrow(/in progress/);
    await expect(session.sideBySide(request)).rejects.toBeInstanceOf(SessionError);
    await expect(session.loadSae({ source: pathToFileURL('/nonexistent/') })).rejects.toBeInstanceOf(SessionError);
    expect((await first).status).toBe('done');
    expect(session.readouts.tokens).toHaveLength(12);
  });

  test('without an SAE a remote session is idle and refuses to run; a dIn mismatch is an error naming both', async () => {
    const ts = tokens(4, 2, 1);
    const { fetch } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 2 }));
    const idle = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }) });
    expect(idle.status).toBe('idle');
    await expect(idle.run(request)).rejects.toThrow(/needs an SAE/);
    const wide = await createSae({ config: { ...CONFIG, dIn: 32 }, weights: randomSae({ ...CONFIG, dIn: 32 }, 3) }, { backend: 'cpu' });
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }), sae: wide });
    const summary = await session.run(request);
    expect(summary.status).toBe('error');
    expect(summary.error).toBeInstanceOf(SessionError);
    expect(session.message).toMatch(/d_in 16, but the SAE reads dIn 32/);
    expect(session.readouts.tokens).toHaveLength(0);
  });

  test('side by side: the steered request carries Σ strength · W_dec[f] from the start; the baseline none', async () => {
    const steeredTokens = tokens(10, 3, 40).map((t, i) => ({ ...t, steered: i >= 5 }));
    const baseTokens = tokens(8, 3, 80);
    const { fetch, served } = scriptedFetch((body) => ({ dIn: D_IN, tokens: body['steering'] !== undefined ? steeredTokens : baseTokens, promptTokens: 3 }));
    const plan: SteeringPlan = { push: [{ feature: 7, strength: 4 }, { feature: 30, strength: -1.5 }], start: 5 };
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 }, temperature: 0, seed: 9 }), sae: await cpuSae(), steering: plan });
    const log = record(session);
    const baselineTokens: TokenReadout[] = [];
    session.on('baseline-token', (e) => baselineTokens.push(e.detail));
    expect(session.baseline).toBeUndefined();
    const result = await session.sideBySide(request);
    expect(result.steered.status).toBe('done');
    expect(result.baseline.status).toBe('done');
    expect(served.bodies).toHaveLength(2);
    const [steered, baseline] = served.bodies as [Record<string, unknown>, Record<string, unknown>];
    expect(steered).toMatchObject({ messages: request.messages, max_tokens: 32, hook: { layer: 3 }, temperature: 0, seed: 9 });
    const entries = steered['steering'] as Array<{ vector: string; strength: number; start: number; mode: string }>;
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ strength: 1, start: 5, mode: 'add' });
    const bytes = Buffer.from(entries[0]?.vector ?? '', 'base64');
    const got = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    const W = WEIGHTS.W_dec?.data as Float32Array;
    const want = Float32Array.from({ length: D_IN }, (_, i) => 4 * (W[7 * D_IN + i] as number) - 1.5 * (W[30 * D_IN + i] as number));
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i] as number, 5));
    expect(baseline['steering']).toBeUndefined();
    expect(features(session.readouts.tokens)).toEqual(reference(steeredTokens));
    expect(session.readouts.tokens.map((t) => t.steered)).toEqual(steeredTokens.map((t) => t.steered));
    expect(features(session.baseline?.tokens ?? [])).toEqual(reference(baseTokens));
    expect(baselineTokens).toEqual(session.baseline?.tokens);
    expect(log.tokens).toHaveLength(10);
    expect(result.baseline.generatedTokens).toBe(5);
  });

  test('setSteering dispatches `steering` and refuses features outside the SAE or non-finite strengths', async () => {
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', hook: { layer: 3 } }), sae: await cpuSae() });
    const log = record(session);
    const plan: SteeringPlan = { clamp: [{ feature: 3, value: 2 }] };
    session.setSteering(plan);
    expect(session.steering).toBe(plan);
    session.setSteering(undefined);
    expect(log.events).toEqual(['steering', 'steering']);
    expect(() => session.setSteering({ push: [{ feature: 64, strength: 1 }] })).toThrow(SessionError);
    expect(() => session.setSteering({ push: [{ feature: 1, strength: NaN }] })).toThrow(/finite/);
    expect(() => session.setSteering({ push: [{ feature: 1, strength: 1 }], start: -2 })).toThrow(/start/);
    expect(log.events).toHaveLength(2);
  });

  test('recordTrace of a live run replays to the same readouts, and re-recording the replay gives the same file', async () => {
    const ts = tokens(14, 5, 1200);
    const { fetch } = scriptedFetch(() => ({ dIn: D_IN, tokens: ts, promptTokens: 5 }));
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 3 } }), sae: await cpuSae(), steering: { push: [{ feature: 2, strength: 3 }] } });
    await session.run(request);
    const bytes = await recordTrace(session);
    const replay = new Session({ source: TraceSource.fromBytes(bytes) });
    const h = (replay.source as TraceSource).header;
    expect(h).toMatchObject({ model: 'test', hookpoint: 'layer 3 resid_post', dIn: D_IN, dSae: 64, messages: request.messages, steering: { push: [{ feature: 2, strength: 3 }] }, maxNewTokens: 32, source: 'remote' });
    expect(h.sae).toMatchObject({ format: 'memory', architecture: 'topk', k: 4 });
    expect(h.sae.hash).toMatch(/^[0-9a-f]{64}$/);
    await replay.run(request);
    expect(replay.readouts.tokens).toEqual(session.readouts.tokens);
    expect(Buffer.from(await recordTrace(replay)).equals(Buffer.from(bytes))).toBe(true);
  });
});

describe('loading: WebGPU, the CPU fallback, or unsupported', () => {
  test('without WebGPU a small SAE loads on the CPU with progress events; status idle → loading → ready', async () => {
    const ts = tokens(3, 1, 5);
    const { fetch } = scriptedFetch(() => ({ dIn: 128, tokens: ts, promptTokens: 1 }));
    const statuses: SessionStatus[] = [];
    const progress: number[] = [];
    const session = await Session.open({
      source: remoteTokenSource({ url: 'http://server.test/', fetch, hook: { layer: 2 } }),
      sae: { source: TINY_SAE },
      on: { status: (e) => statuses.push(e.detail.status), progress: (e) => progress.push(e.detail.loaded) },
    });
    expect(statuses).toEqual(['loading', 'ready']);
    expect(session.status).toBe('ready');
    expect(session.sae?.backend).toBe('cpu');
    expect(session.sae?.config).toMatchObject({ dIn: 128, dSae: 1024 });
    expect(session.readouts.dSae).toBe(1024);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe(1053480);
    await session.destroy();
    expect(session.sae).toBeUndefined();
  });

  test('too large for the CPU without WebGPU: status unsupported, the message says why and what to do', async () => {
    const session = await Session.open({ source: remoteTokenSource({ url: 'http://server.test/', hook: { layer: 2 } }), sae: { source: TINY_SAE }, cpuMaxWeights: 100_000 });
    expect(session.status).toBe('unsupported');
    expect(session.message).toMatch(/128 × 1024/);
    expect(session.message).toMatch(/WebGPU/);
    expect(session.message).toMatch(/smaller SAE/);
    await expect(session.run(request)).rejects.toThrow(/cannot run/);
    await expect(chooseSaeBackend(TINY_SAE, { cpuMaxWeights: 100_000 })).rejects.toBeInstanceOf(UnsupportedError);
    expect(await chooseBackend({ dIn: 7168, dSae: 65536 })).toMatchObject({ backend: 'unsupported' });
    expect(await chooseBackend({ dIn: 2048, dSae: 16384 })).toMatchObject({ backend: 'cpu' });
    expect(CPU_FALLBACK_MAX_WEIGHTS).toBe(2048 * 16384);
  });

  test('the size lookup reads only the weights header over HTTP, then hangs up', async () => {
    const server = await serveFixtures([{ at: '/files/tiny', dir: fileURLToPath(TINY_SAE) }], { trickle: { bytes: 16_384, delayMs: 20 } });
    try {
      expect(await probeSaeShape(`${server.origin}/files/tiny/`)).toEqual({ dIn: 128, dSae: 1024 });
      await sleep(100);
      const weights = server.requests.filter((r) => r.path.endsWith('sae_weights.safetensors') && r.method === 'GET');
      expect(weights.length).toBeGreaterThan(0);
      for (const r of weights) expect(r.bytesSent).toBeLessThan(200_000);
    } finally {
      await server.close();
    }
  });

  test('a failed load: status error with the loader\'s message, and the promise rejects', async () => {
    const statuses: SessionStatus[] = [];
    const session = new Session({ source: remoteTokenSource({ url: 'http://server.test/', hook: { layer: 2 } }) });
    session.on('status', (e) => statuses.push(e.detail.status));
    await expect(session.loadSae({ source: new URL('../fixtures/traces/', import.meta.url) })).rejects.toThrow(/No SAE weights/);
    expect(statuses).toEqual(['loading', 'error']);
    expect(session.message).toMatch(/No SAE weights/);
  });

  test('a trace and an SAE of another width disagree', async () => {
    const bytes = encodeTrace({ format: 'loupe-trace', version: 1, model: 'm', hookpoint: 'h', dIn: D_IN, dSae: 40, sae: {}, messages: [], steering: null }, [], { status: 'done' });
    const sae = await cpuSae();
    expect(() => new Session({ source: TraceSource.fromBytes(bytes), sae })).toThrow(/dSae 40, but this SAE has 64/);
  });
});
