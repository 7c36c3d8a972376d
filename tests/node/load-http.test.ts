/**
 * loadSae over real HTTP (tests/helpers/http-server.ts on 127.0.0.1) and from file: URLs, CPU
 * backend: every published-layout fixture from a plain folder URL (names probed), a Hub-style
 * folder URL, and a Hugging Face repo id against a local endpoint (tree API listing) must
 * reproduce the PyTorch golden outputs. Also: progress, revisions, sharded checkpoints, the
 * Range header-only read, truncated downloads and aborts.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SafetensorsError, SaeSourceError, TorchCheckpointError } from '../../src/errors.js';
import { readSafetensors } from '../../src/formats/safetensors.js';
import { readSafetensorsHeader } from '../../src/io/range.js';
import { loadSae, type LoadProgress } from '../../src/runtime/load.js';
import { expectGoldenOutputs, formatCases, FORMATS_DIR, type FormatCase } from '../helpers/format-cases.js';
import { serveFixtures, type TestServer } from '../helpers/http-server.js';

const cases = formatCases();
let server: TestServer;
let slow: TestServer;
let plainOnly: TestServer;
let tmp: string;

/** Where a Hub mount puts the fixture inside its repo (Goodfire publishes math/ and logic/ folders). */
function hubUnder(c: FormatCase): string | undefined {
  return c.dir === 'goodfire' ? 'math' : undefined;
}

/** Writes a safetensors file (per the spec: u64 header length, JSON, data) from raw tensors. */
function writeSafetensors(path: string, tensors: Record<string, { dtype: string; shape: readonly number[]; bytes: Uint8Array }>): void {
  let off = 0;
  const header: Record<string, unknown> = {};
  const blobs: Uint8Array[] = [];
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.byteLength] };
    blobs.push(t.bytes);
    off += t.bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), ...blobs]));
}

beforeAll(async () => {
  tmp = mkdtempSync(`${tmpdir()}/loupe-http-`);
  // A sharded SAELens checkpoint: the same tensors split over two files plus the index JSON.
  const src = `${FORMATS_DIR}saelens-topk`;
  const whole = readSafetensors(readFileSync(`${src}/sae_weights.safetensors`)).tensors;
  mkdirSync(`${tmp}/sharded`);
  copyFileSync(`${src}/cfg.json`, `${tmp}/sharded/cfg.json`);
  writeFileSync(`${tmp}/sharded/golden.txt`, readFileSync(`${src}/golden.txt`));
  const raw = (name: string): { dtype: string; shape: readonly number[]; bytes: Uint8Array } => {
    const t = whole[name];
    if (t === undefined) throw new Error(name);
    return { dtype: t.dtype, shape: t.shape, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  };
  writeSafetensors(`${tmp}/sharded/sae_weights-00001-of-00002.safetensors`, { W_enc: raw('W_enc'), b_enc: raw('b_enc') });
  writeSafetensors(`${tmp}/sharded/sae_weights-00002-of-00002.safetensors`, { W_dec: raw('W_dec'), b_dec: raw('b_dec') });
  const weightMap = { W_enc: 'sae_weights-00001-of-00002.safetensors', b_enc: 'sae_weights-00001-of-00002.safetensors', W_dec: 'sae_weights-00002-of-00002.safetensors', b_dec: 'sae_weights-00002-of-00002.safetensors' };
  writeFileSync(`${tmp}/sharded/sae_weights.safetensors.index.json`, JSON.stringify({ metadata: {}, weight_map: weightMap }));
  // Truncated downloads: the first 60% of a safetensors and of a torch file.
  for (const c of cases.filter((x) => x.dir === 'saelens-standard' || x.dir === 'goodfire')) {
    const d = `${tmp}/truncated-${c.dir}`;
    mkdirSync(d);
    for (const f of ['cfg.json', 'config.json']) {
      try {
        copyFileSync(`${FORMATS_DIR}${c.dir}/${f}`, `${d}/${f}`);
      } catch {
        // the format has the other config name
      }
    }
    const w = readFileSync(`${FORMATS_DIR}${c.dir}/${c.weights}`);
    writeFileSync(`${d}/${c.weights}`, w.subarray(0, Math.floor(w.byteLength * 0.6)));
  }
  const mounts = [
    ...cases.flatMap((c) => {
      const under = hubUnder(c);
      return [
        { at: `/files/${c.repo}`, dir: `${FORMATS_DIR}${c.dir}` },
        { at: `hub:loupe-tests/${c.repo}`, dir: `${FORMATS_DIR}${c.dir}`, ...(under !== undefined ? { under } : {}) },
      ];
    }),
    { at: '/files/sharded', dir: `${tmp}/sharded` },
    { at: 'hub:loupe-tests/sharded', dir: `${tmp}/sharded` },
    { at: '/files/truncated-saelens', dir: `${tmp}/truncated-saelens-standard` },
    { at: '/files/truncated-goodfire', dir: `${tmp}/truncated-goodfire` },
  ];
  server = await serveFixtures(mounts, { revisions: ['main', 'v1.0'] });
  slow = await serveFixtures(mounts, { trickle: { bytes: 16 * 1024, delayMs: 15 } });
  plainOnly = await serveFixtures(mounts, { range: false });
});

afterAll(async () => {
  await Promise.all([server.close(), slow.close(), plainOnly.close()]);
  rmSync(tmp, { recursive: true, force: true });
});

describe('loadSae over HTTP reproduces the golden outputs (CPU backend)', () => {
  test.for(cases)('$dir from a plain folder URL (names probed)', async (c) => {
    const sub = c.subfolder !== '' ? c.subfolder : undefined;
    const url = `${server.origin}/files/${c.repo}/`;
    const sae = await loadSae(url, { backend: 'cpu', ...(sub !== undefined ? { subfolder: sub } : {}) });
    await expectGoldenOutputs(sae, c.golden);
    if (c.dir === 'sparsify') expect(sae.config.hookpoint).toBe('layers.3');
  });

  test.for(cases)('$dir from a Hugging Face repo id on a local endpoint', async (c) => {
    const under = hubUnder(c);
    const sub = under ?? (c.subfolder !== '' ? c.subfolder : undefined);
    const sae = await loadSae(`loupe-tests/${c.repo}`, { backend: 'cpu', endpoint: server.origin, ...(sub !== undefined ? { subfolder: sub } : {}) });
    await expectGoldenOutputs(sae, c.golden);
    // the tree API listed the repo, so no name was probed
    expect(server.requests.some((r) => r.path === `/api/models/loupe-tests/${c.repo}/tree/main`)).toBe(true);
  });

  test.for(cases)('$dir from a Hub-style folder URL (…/resolve/main/…)', async (c) => {
    const under = hubUnder(c);
    const path = [under, c.subfolder].filter((s) => s !== undefined && s !== '').join('/');
    const url = `${server.origin}/loupe-tests/${c.repo}/resolve/main/${path}${path !== '' ? '/' : ''}`;
    await expectGoldenOutputs(await loadSae(url, { backend: 'cpu' }), c.golden);
  });

  test('a URL naming the weights file directly, and a file: URL folder', async () => {
    const c = cases.find((x) => x.dir === 'saelens-jumprelu');
    if (c === undefined) throw new Error('fixture missing');
    await expectGoldenOutputs(await loadSae(`${server.origin}/files/${c.repo}/${c.weights}`, { backend: 'cpu' }), c.golden);
    await expectGoldenOutputs(await loadSae(pathToFileURL(`${FORMATS_DIR}${c.dir}/`), { backend: 'cpu' }), c.golden);
    const gf = cases.find((x) => x.dir === 'goodfire');
    if (gf === undefined) throw new Error('fixture missing');
    await expectGoldenOutputs(await loadSae(pathToFileURL(`${FORMATS_DIR}${gf.dir}/${gf.weights}`).href, { backend: 'cpu' }), gf.golden);
  });

  test('sharded safetensors with an index JSON, from a folder URL and from a repo id', async () => {
    const golden = readFileSync(`${tmp}/sharded/golden.txt`, 'utf8').trim();
    const before = server.requests.length;
    await expectGoldenOutputs(await loadSae(`${server.origin}/files/sharded/`, { backend: 'cpu' }), golden);
    const shardGets = server.requests.slice(before).filter((r) => r.method === 'GET' && /-0000[12]-of-00002\.safetensors$/.test(r.path));
    expect(shardGets).toHaveLength(2);
    await expectGoldenOutputs(await loadSae('loupe-tests/sharded', { backend: 'cpu', endpoint: server.origin }), golden);
  });

  test('progress reports bytes per weights file up to the file size', async () => {
    const c = cases.find((x) => x.dir === 'goodfire');
    if (c === undefined) throw new Error('fixture missing');
    const events: LoadProgress[] = [];
    await loadSae(`loupe-tests/${c.repo}`, { backend: 'cpu', endpoint: slow.origin, subfolder: 'math', onProgress: (p) => events.push(p) });
    const size = statSync(`${FORMATS_DIR}${c.dir}/${c.weights}`).size;
    expect(events.length).toBeGreaterThan(3);
    expect(events.every((e) => e.file === `math/${c.weights}` && e.total === size)).toBe(true);
    expect(events.every((e, i) => i === 0 || e.loaded > (events[i - 1]?.loaded ?? 0))).toBe(true);
    // torch's trailing records after the last storage are not needed, so the read may stop a few hundred bytes short
    expect(size - (events.at(-1)?.loaded ?? 0)).toBeLessThan(1024);
  });

  test('revision selects the Hub revision; an unknown one is a named error', async () => {
    const c = cases.find((x) => x.dir === 'saelens-standard');
    if (c === undefined) throw new Error('fixture missing');
    await expectGoldenOutputs(await loadSae(`loupe-tests/${c.repo}`, { backend: 'cpu', endpoint: server.origin, revision: 'v1.0' }), c.golden);
    expect(server.requests.some((r) => r.path === `/loupe-tests/${c.repo}/resolve/v1.0/sae_weights.safetensors`)).toBe(true);
    await expect(loadSae(`loupe-tests/${c.repo}`, { backend: 'cpu', endpoint: server.origin, revision: 'nope' })).rejects.toThrow(SaeSourceError);
    await expect(loadSae(`${server.origin}/files/no-such-sae/`, { backend: 'cpu' })).rejects.toThrow(/Found no SAE weights.*tried sae_weights\.safetensors/);
  });

  test('truncated downloads give the format’s named error', async () => {
    await expect(loadSae(`${server.origin}/files/truncated-saelens/`, { backend: 'cpu' })).rejects.toThrow(SafetensorsError);
    await expect(loadSae(`${server.origin}/files/truncated-goodfire/`, { backend: 'cpu', weights: 'DeepSeek-R1-SAE-l37.pt' })).rejects.toThrow(TorchCheckpointError);
    await expect(loadSae(`${server.origin}/files/truncated-goodfire/`, { backend: 'cpu', weights: 'DeepSeek-R1-SAE-l37.pt' })).rejects.toThrow(/truncated/);
  });

  test('aborting stops the network read mid-file', async () => {
    const c = cases.find((x) => x.dir === 'goodfire');
    if (c === undefined) throw new Error('fixture missing');
    const controller = new AbortController();
    const before = slow.requests.length;
    const load = loadSae(`${slow.origin}/files/${c.repo}/`, {
      backend: 'cpu',
      signal: controller.signal,
      onProgress: (p) => {
        if (p.loaded > 64 * 1024) controller.abort();
      },
    });
    await expect(load).rejects.toMatchObject({ name: 'AbortError' });
    await new Promise((r) => setTimeout(r, 200));
    const weightsReq = slow.requests.slice(before).find((r) => r.method === 'GET' && r.path.endsWith('.pt'));
    const size = statSync(`${FORMATS_DIR}${c.dir}/${c.weights}`).size;
    expect(weightsReq?.aborted).toBe(true);
    expect(weightsReq?.bytesSent ?? size).toBeLessThan(size / 2);
    // an already-aborted signal fails before any request
    const n = slow.requests.length;
    await expect(loadSae(`${slow.origin}/files/${c.repo}/`, { backend: 'cpu', signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect(slow.requests.length).toBe(n);
  });
});

test('the original Llama Scope layout is refused, not misread as a ReLU SAE', async () => {
  const c = cases.find((x) => x.dir === 'encoder-decoder');
  if (c === undefined) throw new Error('fixture missing');
  const w = readFileSync(`${FORMATS_DIR}${c.dir}/${c.weights}`);
  await expect(
    loadSae({ files: { 'L3R/hyperparams.json': new TextEncoder().encode('{"d_model": 96}'), 'L3R/checkpoints/final.pt': w } }, { backend: 'cpu' }),
  ).rejects.toThrow(/original Llama Scope layout/);
});

describe('readSafetensorsHeader', () => {
  test('reads only the header with two Range requests', async () => {
    const c = cases.find((x) => x.dir === 'saelens-standard');
    if (c === undefined) throw new Error('fixture missing');
    const file = `${FORMATS_DIR}${c.dir}/${c.weights}`;
    const expected = readSafetensors(readFileSync(file)).tensors;
    const before = server.requests.length;
    const h = await readSafetensorsHeader(`${server.origin}/files/${c.repo}/${c.weights}`);
    expect(h.rangeSupported).toBe(true);
    expect(h.size).toBe(statSync(file).size);
    expect(Object.fromEntries(h.entries.map((e) => [e.name, e.shape]))).toEqual(Object.fromEntries(Object.entries(expected).map(([k, t]) => [k, t.shape])));
    const reqs = server.requests.slice(before);
    expect(reqs.map((r) => r.range)).toEqual(['bytes=0-7', expect.stringMatching(/^bytes=8-\d+$/)]);
    expect(reqs.reduce((a, r) => a + r.bytesSent, 0)).toBeLessThan(2048);
  });

  test('a server without Range support still yields the header', async () => {
    const c = cases.find((x) => x.dir === 'saelens-standard');
    if (c === undefined) throw new Error('fixture missing');
    const h = await readSafetensorsHeader(`${plainOnly.origin}/files/${c.repo}/${c.weights}`);
    expect(h.rangeSupported).toBe(false);
    expect(h.entries.map((e) => e.name).sort()).toEqual(['W_dec', 'W_enc', 'b_dec', 'b_enc']);
  });
});
