/**
 * `npm run bench:frames`: how many R1 activation frames per second the client can take in —
 * parse the Loupe stream and write each activation to the GPU — against the target of
 * 2,000 tokens/s (R1 generates ~50). Side by side on the same adapter, the same 4,000 tokens of
 * 7168 × bf16 activations, cut into 64 KiB network chunks:
 *   - loupe-binary: FrameParser + ActivationRing.write (wire bytes straight into a GPU ring);
 *   - ndjson-base64: one JSON line per token with a base64 activation (the shape of an
 *     SSE/NDJSON design like Neuronpedia's lens stream), JSON.parse + base64 decode + upload.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { GpuContext } from '../src/gpu/device.js';
import { ActivationRing } from '../src/sources/activation-ring.js';
import { FrameParser } from '../src/sources/frames.js';
import { concat, endFrame, headerFrame, preamble, tokenFrame } from '../tests/helpers/loupe-frames.js';
import { getSharedGpu } from './ort/session.js';

const D_IN = 7168;
const TOKENS = 4000;
const CHUNK = 64 * 1024;
const REPS = 5;

function chunks(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += CHUNK) out.push(bytes.slice(at, at + CHUNK));
  return out;
}

const values = new Float32Array(D_IN).map((_, i) => Math.sin(i) * 3);
const binary = chunks(
  concat([
    preamble(),
    headerFrame({ d_in: D_IN, dtype: 'bf16', prompt_tokens: 10 }),
    ...Array.from({ length: TOKENS }, (_, p) => tokenFrame({ position: p, tokenId: p, phase: p < 10 ? 0 : 1, text: ' token', values, dtype: 'bf16' })),
    endFrame(),
  ]),
);
const act = tokenFrame({ position: 0, tokenId: 0, phase: 0, text: '', values, dtype: 'bf16' }).subarray(5 + 16);
const b64 = Buffer.from(act).toString('base64');
const ndjson = chunks(new TextEncoder().encode(Array.from({ length: TOKENS }, (_, p) => JSON.stringify({ type: 'token', position: p, token_id: p, text: ' token', phase: 'thinking', activation: b64 }) + '\n').join('')));

const gpu = getSharedGpu();
const ctx = await GpuContext.create({ gpu });
const device = ctx.device;
console.log(`adapter: ${ctx.adapterDescription}`);

async function loupeBinary(): Promise<number> {
  const ring = new ActivationRing(device, D_IN, 'bf16', 1024);
  const parser = new FrameParser();
  let n = 0;
  const t0 = performance.now();
  for (const c of binary) for (const f of parser.push(c)) if (f.kind === 'token') {
    ring.write(f.activation);
    n++;
  }
  await device.queue.onSubmittedWorkDone();
  const ms = performance.now() - t0;
  ring.destroy();
  if (n !== TOKENS) throw new Error(`parsed ${n} tokens`);
  return ms;
}

async function ndjsonBase64(): Promise<number> {
  const ring = new ActivationRing(device, D_IN, 'bf16', 1024);
  const decoder = new TextDecoder();
  let pending = '';
  let n = 0;
  const t0 = performance.now();
  for (const c of ndjson) {
    pending += decoder.decode(c, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      const msg = JSON.parse(line) as { activation: string };
      const bin = atob(msg.activation);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      ring.write(bytes);
      n++;
    }
  }
  await device.queue.onSubmittedWorkDone();
  const ms = performance.now() - t0;
  ring.destroy();
  if (n !== TOKENS) throw new Error(`parsed ${n} lines`);
  return ms;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const results: Array<{ impl: string; medianMs: number; tokensPerSecond: number; wireMB: number }> = [];
for (const [impl, fn, wire] of [
  ['loupe-binary', loupeBinary, binary],
  ['ndjson-base64', ndjsonBase64, ndjson],
] as const) {
  await fn(); // warm-up
  const times: number[] = [];
  for (let r = 0; r < REPS; r++) times.push(await fn());
  const ms = median(times);
  const wireMB = wire.reduce((a, c) => a + c.byteLength, 0) / 1e6;
  results.push({ impl, medianMs: ms, tokensPerSecond: (TOKENS / ms) * 1000, wireMB });
  console.log(`  ${impl.padEnd(14)} ${ms.toFixed(1)} ms for ${TOKENS} tokens = ${((TOKENS / ms) * 1000).toFixed(0)} tokens/s (${wireMB.toFixed(1)} MB on the wire)`);
}
ctx.release();

const date = new Date().toISOString().slice(0, 10);
const slug = ctx.adapterDescription.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
const [bin, nd] = results;
const md = [
  `# Stream intake: R1 activation frames parsed and uploaded (${date})`,
  '',
  `Adapter: ${ctx.adapterDescription}. ${TOKENS} tokens of ${D_IN} × bf16, 64 KiB chunks, median of ${REPS} runs after a warm-up; upload = writeBuffer into the GPU ring, timed to onSubmittedWorkDone. Target: ≥ 2,000 tokens/s.`,
  '',
  '| client | tokens/s | ms for 4,000 tokens | MB on the wire |',
  '|---|---|---|---|',
  ...results.map((r) => `| ${r.impl} | ${r.tokensPerSecond.toFixed(0)} | ${r.medianMs.toFixed(1)} | ${r.wireMB.toFixed(1)} |`),
  '',
  bin !== undefined && nd !== undefined ? `Binary frames are ${(bin.tokensPerSecond / nd.tokensPerSecond).toFixed(2)}× the NDJSON/base64 rate and ${(nd.wireMB / bin.wireMB).toFixed(2)}× smaller on the wire.` : '',
  '',
].join('\n');
mkdirSync('bench/results', { recursive: true });
writeFileSync(`bench/results/${date}-frames-${slug}.md`, md);
writeFileSync(`bench/results/${date}-frames-${slug}.json`, JSON.stringify({ date, adapter: ctx.adapterDescription, tokens: TOKENS, dIn: D_IN, dtype: 'bf16', results }, null, 2));
console.log(md);
