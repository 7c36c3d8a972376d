/**
 * In the browser: stream a generation from the Python reference server with `RemoteSource`
 * (cross-origin, bearer token), keep every activation on the GPU in its wire dtype, widen the
 * ring and encode all tokens with an SAE on the same device. Node compares the activations
 * with PyTorch and the codes with the CPU reference (see ../remote-e2e.test.ts).
 */
import { RemoteSource, Sae, activationToF32, type GenerateRequest } from '../../../src/index.js';
import type { RemoteApi, RemoteRunResult } from './protocol.js';
import { readF32 } from '../../helpers/read-buffer.js';


const run: RemoteApi['run'] = async ({ url, token, request, sae: s }) => {
  const sae = await Sae.create(
    {
      config: { architecture: 'topk', dIn: s.dIn, dSae: s.dSae, k: s.k, weightDtype: 'f32' },
      weights: { W_enc: { dtype: 'f32', data: Float32Array.from(s.wEnc) }, W_dec: { dtype: 'f32', data: Float32Array.from(s.wDec) }, b_enc: Float32Array.from(s.bEnc), b_dec: Float32Array.from(s.bDec) },
    },
    { backend: 'webgpu', gpu: navigator.gpu },
  );
  const device = sae.device;
  if (device === undefined) throw new Error('no WebGPU device');
  const gpuErrors: string[] = [];
  device.addEventListener('uncapturederror', (e) => gpuErrors.push((e as GPUUncapturedErrorEvent).error.message));
  const source = new RemoteSource({ url, token, request: request as GenerateRequest, device, ringSlots: 4096 });
  const activations: number[][] = [];
  const events: string[] = [];
  try {
    for await (const ev of source.events()) {
      events.push(ev.kind);
      if (ev.kind === 'token') activations.push(Array.from(activationToF32(ev.frame.activation, ev.frame.dtype, ev.frame.dIn)));
    }
    const header = source.header;
    const ring = source.ring;
    if (header === undefined || ring === undefined) throw new Error('no header');
    const T = source.tokens.length;
    const widened = ring.widen(0, T);
    const gpuWidened = await readF32(device, widened, T * header.d_in * 4);
    const codes = await sae.encode(widened, { tokens: T });
    const result: RemoteRunResult = {
      header: { d_in: header.d_in, dtype: header.dtype, layer: header.layer, prompt_tokens: header.prompt_tokens },
      tokens: source.tokens.map((t) => ({ position: t.position, tokenId: t.tokenId, phase: t.phase, steered: t.steered })),
      activations,
      gpuWidened: Array.from(gpuWidened),
      codes: { offsets: Array.from(codes.offsets), indices: Array.from(codes.indices), values: Array.from(codes.values) },
      events,
      gpuErrors,
    };
    return result;
  } finally {
    source.destroy();
    sae.destroy();
  }
};

window.__remote = { run };
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
