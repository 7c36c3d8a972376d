/**
 * The feature-map worker: runs UMAP on a decoder it was handed (a transferred buffer it owns, so
 * rows are normalised in place) and sends back progress, then the map (transferred) or an error by
 * name and message. Started by computeFeatureMapInWorker, one computation per worker. It imports
 * umap.ts only — not feature-map.ts, whose `new Worker(new URL(...))` would make the bundler nest
 * this worker inside itself.
 */
import type { FeatureMapReply, FeatureMapRequest } from './feature-map.js';
import { umap } from './umap.js';

function reply(message: FeatureMapReply, transfer: Transferable[] = []): void {
  self.postMessage(message, { transfer });
}

async function compute(request: FeatureMapRequest): Promise<void> {
  try {
    const { embedding } = await umap(request.rows, request.dSae, request.dIn, {
      ...request.parameters,
      normaliseInPlace: true,
      onProgress: (progress) => reply({ type: 'progress', progress }),
    });
    reply({ type: 'done', map: embedding }, [embedding.buffer as ArrayBuffer]);
  } catch (err) {
    reply({ type: 'error', name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) });
  }
}

self.addEventListener('message', (event: MessageEvent<FeatureMapRequest>) => {
  if (event.data.type === 'compute') void compute(event.data);
});
