/**
 * In the browser: `loadSae` from a URL served by the Vite dev server, streamed onto WebGPU,
 * with a counting fetch so the Node side can see which requests reached the network and which
 * were answered from Cache Storage (see ../load.test.ts).
 */
import { loadSae, SAE_CACHE_NAME } from '../../../src/index.js';
import type { LoadApi, LoadResult } from './protocol.js';

async function run(url: string, options: { subfolder?: string; cache?: boolean }, x: number[], tokens: number): Promise<LoadResult> {
  const fetched: string[] = [];
  const counting: typeof fetch = (input, init) => {
    fetched.push(`${init?.method ?? 'GET'} ${typeof input === 'string' ? input : input instanceof URL ? input.href : input.url}`);
    return fetch(input, init);
  };
  const progress: Array<[number, number | null]> = [];
  const sae = await loadSae(new URL(url, location.href), {
    backend: 'webgpu',
    gpu: navigator.gpu,
    fetch: counting,
    onProgress: (p) => progress.push([p.loaded, p.total ?? null]),
    ...options,
  });
  try {
    const codes = await sae.encode(Float32Array.from(x), { tokens });
    const cache = await caches.open(SAE_CACHE_NAME);
    const cached = (await cache.keys()).map((r) => r.url);
    return {
      backend: sae.backend,
      format: sae.config.format,
      weightDtype: sae.config.weightDtype,
      tokens: codes.tokens,
      codes: { offsets: Array.from(codes.offsets), indices: Array.from(codes.indices), values: Array.from(codes.values) },
      fetched,
      progress,
      cached,
    };
  } finally {
    sae.destroy();
  }
}

async function clearCache(): Promise<void> {
  await caches.delete(SAE_CACHE_NAME);
}

const api: LoadApi = { run, clearCache };
window.__load = api;
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
