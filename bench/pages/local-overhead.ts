/**
 * In the browser, for bench/local-overhead.ts: the tiny Qwen2 generating through transformers.js
 * on onnxruntime-web's WebGPU EP, per-token time (a) as exported, no tap; (b) through
 * LocalModelSource with the graph tap and a TopK SAE encoding every token on onnxruntime's device.
 * Same adapter, same page, alternating runs after a warm-up.
 */
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { LocalModelSource, Sae } from '../../src/index.js';

declare global {
  interface Window {
    __bench?: (o: { tokens: number; reps: number; dSae: number; k: number; layer: number }) => Promise<{ plainMs: number[]; tapOnlyMs: number[]; tappedMs: number[]; overlapMs: number[]; adapter: string }>;
  }
}

const MODEL = 'tiny-qwen2-onnx';
const messages = [{ role: 'user' as const, content: 'What is 7 * 8?' }];

window.__bench = async ({ tokens, reps, dSae, k, layer }) => {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = '/tests/fixtures/';
  if (env.backends.onnx.wasm !== undefined) env.backends.onnx.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
  env.useBrowserCache = false;
  const tokenizer = await AutoTokenizer.from_pretrained(MODEL);
  const plain = await AutoModelForCausalLM.from_pretrained(MODEL, { device: 'webgpu', dtype: 'fp32' });
  const source = await LocalModelSource.load({ model: MODEL, localModelPath: '/tests/fixtures/', wasmPaths: '/node_modules/onnxruntime-web/dist/', layer, device: 'webgpu', dtype: 'fp32' });
  const dIn = source.tap.dIn;
  const rand = (n: number, seed: number): Float32Array => {
    let s = seed;
    return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2);
  };
  const sae = await Sae.create(
    { config: { architecture: 'topk', dIn, dSae, k, weightDtype: 'f32' }, weights: { W_enc: { dtype: 'f32', data: rand(dSae * dIn, 1) }, W_dec: { dtype: 'f32', data: rand(dSae * dIn, 2) }, b_enc: new Float32Array(dSae), b_dec: new Float32Array(dIn) } },
    { backend: 'webgpu', ...(source.gpuDevice !== undefined ? { device: source.gpuDevice } : {}) },
  );
  source.attach(sae);
  const prompt = tokenizer.apply_chat_template(messages, { add_generation_prompt: true, return_dict: true }) as Record<string, unknown>;
  const runPlain = async (): Promise<number> => {
    const t0 = performance.now();
    await plain.generate({ ...prompt, max_new_tokens: tokens, do_sample: false, min_new_tokens: tokens });
    return (performance.now() - t0) / tokens;
  };
  const runTapped = async (overlap = false, withSae = true): Promise<number> => {
    source.overlap = overlap;
    source.attach(withSae ? sae : undefined);
    const t0 = performance.now();
    let n = 0;
    for await (const f of source.generate(messages, { maxNewTokens: tokens })) if (f.phase !== 'prompt') n++;
    return (performance.now() - t0) / Math.max(1, n);
  };
  await runPlain();
  await runTapped();
  await runTapped(true);
  const plainMs: number[] = [];
  const tappedMs: number[] = [];
  const overlapMs: number[] = [];
  const tapOnlyMs: number[] = [];
  for (let r = 0; r < reps; r++) {
    plainMs.push(await runPlain());
    tapOnlyMs.push(await runTapped(false, false));
    tappedMs.push(await runTapped());
    overlapMs.push(await runTapped(true));
  }
  const adapter = sae.adapter ?? 'unknown';
  sae.destroy();
  await source.dispose();
  return { plainMs, tapOnlyMs, tappedMs, overlapMs, adapter };
};
document.title = 'ready';
