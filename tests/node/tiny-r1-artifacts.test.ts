/**
 * The committed Tiny-R1 artifacts (demo/public/models/tiny-r1, made by
 * tools/tiny-r1/make_tiny_r1.py) load on all three paths and reproduce the PyTorch golden outputs
 * written by tools/tiny-r1/golden.py: the SAE through loadSae, the model through transformers.js
 * from local files (its ONNX export), and the checkpoint through the reference server.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { loadSae } from '../../src/runtime/load.js';
import { activationToF32 } from '../../src/sources/frames.js';
import { RemoteSource } from '../../src/sources/remote.js';
import { hasTorch, startServer, type RunningServer } from '../helpers/python-server.js';

const ROOT = process.env['LOUPE_TINY_R1'] ?? fileURLToPath(new URL('../../demo/public/models/tiny-r1/', import.meta.url));
const root = ROOT.endsWith('/') ? ROOT : `${ROOT}/`;

interface Golden {
  prompt: string;
  layer: number;
  prompt_ids: number[];
  ids: number[];
  hidden: number[][];
  codes: Array<{ indices: number[]; values: number[] }>;
}
const golden = JSON.parse(readFileSync(`${root}golden.json`, 'utf8')) as Golden;
const generated = golden.ids.length - golden.prompt_ids.length;
const servers: RunningServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.kill()));
});

describe('Tiny-R1 artifacts', () => {
  test('the SAE loads through loadSae and encodes like PyTorch', async () => {
    const sae = await loadSae(pathToFileURL(`${root}sae/`), { backend: 'cpu' });
    expect(sae.config).toMatchObject({ format: 'saelens', architecture: 'topk' });
    const x = Float32Array.from(golden.hidden.flat());
    const codes = await sae.encode(x, { tokens: golden.hidden.length });
    golden.codes.forEach((want, t) => {
      const lo = codes.offsets[t] ?? 0;
      const hi = codes.offsets[t + 1] ?? 0;
      expect(Array.from(codes.indices.subarray(lo, hi))).toEqual(want.indices);
      Array.from(codes.values.subarray(lo, hi)).forEach((v, j) => expect(Math.abs(v - (want.values[j] ?? NaN))).toBeLessThan(1e-4 * Math.max(1, Math.abs(v))));
    });
  });

  test('the ONNX model generates the golden tokens through transformers.js from local files', async () => {
    const { env, AutoTokenizer, AutoModelForCausalLM } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = root;
    const tokenizer = await AutoTokenizer.from_pretrained('model');
    const model = await AutoModelForCausalLM.from_pretrained('model', { dtype: 'fp32' });
    const prompt = tokenizer.apply_chat_template([{ role: 'user', content: golden.prompt }], { add_generation_prompt: true, return_dict: true }) as Record<string, unknown>;
    const out = (await model.generate({ ...prompt, max_new_tokens: generated, do_sample: false })) as { tolist(): Array<Array<bigint | number>> };
    expect((out.tolist()[0] ?? []).map(Number)).toEqual(golden.ids);
    await model.dispose();
  });

  test.skipIf(!hasTorch() && process.env['CI'] !== 'true')('the checkpoint streams the golden tokens and activations through the reference server', async () => {
    const server = await startServer({ model: `${root}model` });
    servers.push(server);
    const source = new RemoteSource({ url: server.url, request: { messages: [{ role: 'user', content: golden.prompt }], max_tokens: generated, temperature: 0, hook: { layer: golden.layer }, dtype: 'f32' } });
    const xs: number[][] = [];
    for await (const ev of source.events()) if (ev.kind === 'token') xs.push(Array.from(activationToF32(ev.frame.activation, 'f32', ev.frame.dIn)));
    expect(source.tokens.map((t) => t.tokenId)).toEqual(golden.ids);
    let worst = 0;
    xs.forEach((row, t) => row.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - (golden.hidden[t]?.[i] ?? NaN))))));
    expect(worst).toBeLessThan(1e-3);
  });
});
