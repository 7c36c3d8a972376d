/**
 * In the browser: the tiny Qwen2 ONNX export generates through transformers.js from local files
 * on onnxruntime-web's WebGPU EP, tapped and steered by LocalModelSource. The SAE attached on
 * onnxruntime's device is an identity probe (features e_i and −e_i, ReLU), so its codes give the
 * tapped activation back exactly — read through the same zero-copy path real SAEs use.
 */
import { LocalModelSource, Sae } from '../../../src/index.js';
import type { LocalApi, LocalRunResult } from './protocol.js';

function probeSae(dIn: number, device: GPUDevice | undefined): Promise<Sae> {
  const rows = new Float32Array(2 * dIn * dIn);
  for (let i = 0; i < dIn; i++) {
    rows[i * dIn + i] = 1;
    rows[(dIn + i) * dIn + i] = -1;
  }
  return Sae.create(
    { config: { architecture: 'relu', dIn, dSae: 2 * dIn, weightDtype: 'f32' }, weights: { W_enc: { dtype: 'f32', data: rows }, W_dec: { dtype: 'f32', data: rows.slice() }, b_enc: new Float32Array(2 * dIn), b_dec: new Float32Array(dIn) } },
    device !== undefined ? { backend: 'webgpu', device } : { backend: 'cpu' },
  );
}

const run: LocalApi['run'] = async ({ layer, maxNewTokens, messages, steer }) => {
  // onnxruntime-web's wasm files come from the dev server, never a CDN: the page works offline.
  const source = await LocalModelSource.load({ model: 'tiny-qwen2-onnx', localModelPath: '/tests/fixtures/', wasmPaths: '/node_modules/onnxruntime-web/dist/', layer, device: 'webgpu', dtype: 'fp32' });
  const gpuErrors: string[] = [];
  source.gpuDevice?.addEventListener('uncapturederror', (e) => gpuErrors.push((e as GPUUncapturedErrorEvent).error.message));
  const dIn = source.tap.dIn;
  const sae = await probeSae(dIn, source.gpuDevice);
  source.attach(sae);
  const collect = async (): Promise<LocalRunResult['frames']> => {
    const frames: LocalRunResult['frames'] = [];
    for await (const f of source.generate(messages, { maxNewTokens })) {
      let x: number[] | null = null;
      if (f.codes !== undefined) {
        const v = new Array<number>(dIn).fill(0);
        f.codes.indices.forEach((feature, j) => {
          const a = f.codes?.values[j] ?? 0;
          if (feature < dIn) v[feature] = (v[feature] ?? 0) + a;
          else v[feature - dIn] = (v[feature - dIn] ?? 0) - a;
        });
        x = v;
      }
      frames.push({ position: f.position, tokenId: f.tokenId, phase: f.phase, steered: f.steered, x });
    }
    return frames;
  };
  try {
    // first run: the SAE binds onnxruntime's buffer directly; second: GPU snapshot, overlapped
    source.overlap = false;
    const frames = await collect();
    source.overlap = true;
    source.setSteering({ vector: Float32Array.from(steer.vector), start: steer.start });
    const steeredFrames = await collect();
    return { tap: source.tap, frames, steeredFrames, stats: { ...source.stats }, sameDevice: sae.device === source.gpuDevice && sae.device !== undefined, gpuErrors };
  } finally {
    sae.destroy();
    await source.dispose();
  }
};

window.__local = { run };
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
