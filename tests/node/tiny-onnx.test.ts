/**
 * The ONNX exports of the tiny Qwen2 run in JavaScript and agree with PyTorch.
 *
 * tests/fixtures/tiny-qwen2-onnx (weights inside model.onnx) and tiny-qwen2-onnx-external
 * (weights in onnx/model.onnx_data) are written by tools/tiny_model/export_onnx.py together with
 * golden.json: PyTorch float32 outputs of the same model for a chat-templated prompt. Here:
 *
 *  - onnxruntime-web (wasm EP, in Node) runs both folders: the prompt with a zero-length past
 *    (last-position logits within 1e-4 of PyTorch), then cached decoding steps feeding
 *    `present.*` back as `past_key_values.*` (greedy tokens equal PyTorch's uncached ones).
 *  - The residual-stream tensors named in onnx/sites.json, appended as extra graph outputs, equal
 *    PyTorch's per-block hidden states (so sites.json points at the right tensors).
 *  - transformers.js (onnxruntime-node, CPU) loads both folders from local files and `generate()`
 *    reproduces PyTorch's 12-token greedy continuation.
 *
 * ORT-web in Node (see bench/ort/session.ts): its wasm is loaded from node_modules, one thread,
 * and a ref'd interval timer runs while V8 compiles the ~26 MB wasm in the background (without
 * one the event loop can stall for the whole compile on this 2-core machine).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as OrtNs from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

type Ort = typeof OrtNs;
type OrtTensor = OrtNs.Tensor;

const FIXTURES_DIR = fileURLToPath(new URL('../fixtures/', import.meta.url));
const SINGLE = 'tiny-qwen2-onnx';
const EXTERNAL = 'tiny-qwen2-onnx-external';
const FOLDERS = [SINGLE, EXTERNAL] as const;
const TOL = 1e-4;
const CACHED_STEPS = 3;

interface Golden {
  prompt: { messages: { role: string; content: string }[]; add_generation_prompt: boolean; text: string };
  input_ids: number[];
  last_logits: number[];
  hidden_states: { values: number[][][] };
  greedy: { max_new_tokens: number; tokens: number[] };
}

interface Site {
  node: string;
  tensor: string;
}

interface Sites {
  layers: { layer: number; resid_post: Site; resid_pre: Site; mlp_out: Site }[];
}

interface ModelConfig {
  num_hidden_layers: number;
  num_key_value_heads: number;
  head_dim: number;
  vocab_size: number;
  hidden_size: number;
}

const golden = JSON.parse(readFileSync(`${FIXTURES_DIR}${SINGLE}/golden.json`, 'utf8')) as Golden;
const sites = JSON.parse(readFileSync(`${FIXTURES_DIR}${SINGLE}/onnx/sites.json`, 'utf8')) as Sites;
const config = JSON.parse(readFileSync(`${FIXTURES_DIR}${SINGLE}/config.json`, 'utf8')) as ModelConfig;

// ---------------------------------------------------------------------------------------------
// onnxruntime-web setup.

let ort: Ort;
let keepAlive: ReturnType<typeof setInterval> | undefined;

function ortDistDir(): string {
  // The package exports its .wasm files but not package.json; resolve one and take its folder.
  const require = createRequire(import.meta.url);
  return path.dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
}

beforeAll(async () => {
  keepAlive = setInterval(() => {}, 1000);
  ort = await import('onnxruntime-web');
  ort.env.wasm.wasmPaths = pathToFileURL(ortDistDir() + path.sep).href;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = 'error';
}, 120_000);

afterAll(() => {
  if (keepAlive !== undefined) clearInterval(keepAlive);
});

function readModel(folder: string): Uint8Array {
  return new Uint8Array(readFileSync(`${FIXTURES_DIR}${folder}/onnx/model.onnx`));
}

function sessionOptions(folder: string): OrtNs.InferenceSession.SessionOptions {
  const options: OrtNs.InferenceSession.SessionOptions = { executionProviders: ['wasm'] };
  if (folder === EXTERNAL) {
    const data = new Uint8Array(readFileSync(`${FIXTURES_DIR}${folder}/onnx/model.onnx_data`));
    options.externalData = [{ path: 'model.onnx_data', data }];
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// Feeds and readouts.

function int64(values: readonly number[], dims: number[]): OrtTensor {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

function range(start: number, end: number): number[] {
  return Array.from({ length: end - start }, (_, i) => start + i);
}

/** Feeds for batch 1: `ids` at positions past..past+ids.length-1, all keys visible. */
function feeds(ids: readonly number[], past: number, cache: Record<string, OrtTensor> | undefined): Record<string, OrtTensor> {
  const f: Record<string, OrtTensor> = {
    input_ids: int64(ids, [1, ids.length]),
    attention_mask: int64(new Array<number>(past + ids.length).fill(1), [1, past + ids.length]),
    position_ids: int64(range(past, past + ids.length), [1, ids.length]),
  };
  for (let i = 0; i < config.num_hidden_layers; i++) {
    for (const kv of ['key', 'value'] as const) {
      f[`past_key_values.${i}.${kv}`] =
        cache?.[`present.${i}.${kv}`] ??
        new ort.Tensor('float32', new Float32Array(0), [1, config.num_key_value_heads, 0, config.head_dim]);
    }
  }
  return f;
}

function floats(t: OrtTensor | undefined, what: string): Float32Array {
  if (t === undefined) throw new Error(`missing output ${what}`);
  expect(t.type).toBe('float32');
  return t.data as Float32Array;
}

/** Logits of the last position of batch row 0. */
function lastLogits(out: Record<string, OrtTensor>): Float32Array {
  const logits = out.logits;
  if (logits === undefined) throw new Error('no logits output');
  const [, seq, vocab] = logits.dims;
  if (seq === undefined || vocab === undefined) throw new Error(`logits dims ${String(logits.dims)}`);
  return floats(logits, 'logits').subarray((seq - 1) * vocab, seq * vocab);
}

function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if ((a[i] ?? -Infinity) > (a[best] ?? -Infinity)) best = i;
  return best;
}

function maxAbsDiff(a: ArrayLike<number>, b: readonly number[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs((a[i] ?? NaN) - (b[i] ?? NaN)));
  return Number.isNaN(m) ? Infinity : m;
}

// ---------------------------------------------------------------------------------------------
// Appending graph outputs without an ONNX library: a protobuf parser merges repeated occurrences
// of a singular message field, so ModelProto bytes + another `graph` field (7) holding only
// `output` entries (GraphProto field 12, ValueInfoProto{name=1, type=2}) add outputs.

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function lenField(field: number, payload: readonly number[]): number[] {
  return [...varint((field << 3) | 2), ...varint(payload.length), ...payload];
}

function withExtraOutputs(model: Uint8Array, names: readonly string[]): Uint8Array {
  const enc = new TextEncoder();
  const FLOAT = 1;
  const outputs = names.flatMap((name) => {
    const tensorType = [...varint((1 << 3) | 0), ...varint(FLOAT)]; // TypeProto.Tensor.elem_type
    const type = lenField(1, tensorType); // TypeProto.tensor_type
    return lenField(12, [...lenField(1, [...enc.encode(name)]), ...lenField(2, type)]);
  });
  const tail = lenField(7, outputs);
  const out = new Uint8Array(model.length + tail.length);
  out.set(model, 0);
  out.set(tail, model.length);
  return out;
}

// ---------------------------------------------------------------------------------------------

describe.each(FOLDERS)('%s with onnxruntime-web (wasm)', (folder) => {
  let session: OrtNs.InferenceSession;

  beforeAll(async () => {
    session = await ort.InferenceSession.create(readModel(folder), sessionOptions(folder));
  }, 180_000);

  afterAll(async () => {
    await session.release();
  });

  test('graph I/O is the transformers.js layout', () => {
    const pastNames = range(0, config.num_hidden_layers).flatMap((i) => [
      `past_key_values.${i}.key`,
      `past_key_values.${i}.value`,
    ]);
    const presentNames = range(0, config.num_hidden_layers).flatMap((i) => [`present.${i}.key`, `present.${i}.value`]);
    expect(session.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids', ...pastNames]);
    expect(session.outputNames).toEqual(['logits', ...presentNames]);
  });

  test('prompt with a zero-length past: last-position logits match PyTorch', async () => {
    const out = await session.run(feeds(golden.input_ids, 0, undefined));
    expect(out.logits?.dims).toEqual([1, golden.input_ids.length, config.vocab_size]);
    expect(out['present.0.key']?.dims).toEqual([1, config.num_key_value_heads, golden.input_ids.length, config.head_dim]);
    const err = maxAbsDiff(lastLogits(out), golden.last_logits);
    expect(err).toBeLessThanOrEqual(TOL);
  });

  test(`${CACHED_STEPS} cached decoding steps reproduce PyTorch's greedy tokens`, async () => {
    let out = await session.run(feeds(golden.input_ids, 0, undefined));
    const tokens = [argmax(lastLogits(out))];
    let past = golden.input_ids.length;
    for (let step = 0; step < CACHED_STEPS; step++) {
      const prev = tokens[tokens.length - 1] ?? -1;
      out = await session.run(feeds([prev], past, out));
      expect(out['present.0.value']?.dims[2]).toBe(past + 1);
      past += 1;
      tokens.push(argmax(lastLogits(out)));
    }
    expect(tokens).toEqual(golden.greedy.tokens.slice(0, CACHED_STEPS + 1));
  });
});

describe('onnx/sites.json names the residual stream', () => {
  test.each(FOLDERS)('%s: resid_post tensors, added as graph outputs, equal PyTorch hidden states', async (folder) => {
    const names = sites.layers.map((s) => s.resid_post.tensor);
    expect(sites.layers.map((s) => s.layer)).toEqual(range(0, config.num_hidden_layers));
    const session = await ort.InferenceSession.create(withExtraOutputs(readModel(folder), names), sessionOptions(folder));
    try {
      expect(session.outputNames.slice(-names.length)).toEqual(names);
      const out = await session.run(feeds(golden.input_ids, 0, undefined));
      const T = golden.input_ids.length;
      const H = config.hidden_size;
      sites.layers.forEach((s, layer) => {
        const t = out[s.resid_post.tensor];
        expect(t?.dims).toEqual([1, T, H]);
        const expected = golden.hidden_states.values[layer];
        if (expected === undefined) throw new Error(`golden has no hidden states for layer ${layer}`);
        expect(maxAbsDiff(floats(t, s.resid_post.tensor), expected.flat())).toBeLessThanOrEqual(TOL);
      });
      // resid_pre of block L is resid_post of block L-1.
      for (const s of sites.layers.slice(1)) {
        expect(s.resid_pre).toEqual(sites.layers[s.layer - 1]?.resid_post);
      }
    } finally {
      await session.release();
    }
  }, 180_000);
});

describe('transformers.js (onnxruntime-node) loads the folders from local files', () => {
  test.each(FOLDERS)('%s: generate() gives PyTorch greedy continuation', async (folder) => {
    const { AutoModelForCausalLM, AutoTokenizer, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = FIXTURES_DIR;
    env.useBrowserCache = false;
    env.useFSCache = false;
    const tokenizer = await AutoTokenizer.from_pretrained(folder);
    const model = await AutoModelForCausalLM.from_pretrained(folder);
    try {
      const inputs = tokenizer.apply_chat_template(golden.prompt.messages, {
        add_generation_prompt: golden.prompt.add_generation_prompt,
        return_dict: true,
      }) as { input_ids: { tolist(): bigint[][] } };
      const ids = inputs.input_ids.tolist()[0]?.map(Number);
      expect(ids).toEqual(golden.input_ids);
      const out = (await model.generate({
        ...inputs,
        max_new_tokens: golden.greedy.max_new_tokens,
        do_sample: false,
      })) as { tolist(): bigint[][] };
      const generated = out.tolist()[0]?.map(Number).slice(golden.input_ids.length);
      expect(generated).toEqual(golden.greedy.tokens);
    } finally {
      await model.dispose();
    }
  }, 120_000);
});
