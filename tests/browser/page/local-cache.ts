/**
 * In the browser: LocalModelSource downloads a model from a Hub on another origin, generates a
 * few tokens, and is loaded again — the second load must come from Cache Storage.
 */
import { LocalModelSource } from '../../../src/index.js';

export interface LocalCacheRun {
  readonly tokens: number[];
  /** Cache Storage entries (URLs) after the load. */
  readonly cached: string[];
}

async function run(opts: { remoteHost: string; model: string; cache: boolean; maxNewTokens: number }): Promise<LocalCacheRun> {
  const source = await LocalModelSource.load({ model: opts.model, remoteHost: opts.remoteHost, cache: opts.cache, layer: 1, device: 'webgpu', dtype: 'fp32', wasmPaths: '/node_modules/onnxruntime-web/dist/' });
  try {
    const tokens: number[] = [];
    for await (const f of source.generate([{ role: 'user', content: 'What is 7 * 8?' }], { maxNewTokens: opts.maxNewTokens })) tokens.push(f.tokenId);
    const cached: string[] = [];
    for (const name of await caches.keys()) for (const req of await (await caches.open(name)).keys()) cached.push(req.url);
    return { tokens, cached };
  } finally {
    await source.dispose();
  }
}

declare global {
  interface Window {
    __localCache?: { run: typeof run };
  }
}

window.__localCache = { run };
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
