/**
 * Precomputes the feature map of an SAE in SAELens layout (cfg.json + sae_weights.safetensors,
 * W_dec as [d_sae, d_in]) and writes feature_map.json beside it (or feature_map.bin with --bin).
 *
 *   node --import tsx tools/tiny-r1/feature_map.ts                      # Tiny-R1's SAE
 *   node --import tsx tools/tiny-r1/feature_map.ts --sae DIR [--seed N] [--bin]
 *
 * The JSON records the UMAP parameters, the SHA-256 of W_dec's bytes (so a stale map is detected
 * when the SAE is retrained) and the map's trustworthiness at k = 10. Same SAE + seed → same file.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { featureMapBytes, featureMapFile } from '../../src/features/feature-map.js';
import { normaliseRows, umap, UMAP_DEFAULTS } from '../../src/features/umap.js';
import { readSafetensors } from '../../src/formats/safetensors.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Trustworthiness (Venna & Kaski 2001) of a 2-D layout at k: 1 − 2/(nk(2n−3k−1)) Σ_i Σ_{j ∈ U_i}
 * (r(i, j) − k), U_i = the layout's k nearest of i that are not among its k nearest in the input,
 * r = rank in the input (cosine distance). O(n² log n): fine for a few thousand features.
 */
function trustworthiness(unitRows: Float32Array, n: number, d: number, xy: Float32Array, k: number): number {
  const rank = new Int32Array(n);
  const inDist = new Float64Array(n);
  const outDist = new Float64Array(n);
  const order = Array.from({ length: n }, (_, j) => j);
  let penalty = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += (unitRows[i * d + t] ?? 0) * (unitRows[j * d + t] ?? 0);
      inDist[j] = j === i ? -Infinity : 1 - s;
      outDist[j] = j === i ? -Infinity : ((xy[2 * i] ?? 0) - (xy[2 * j] ?? 0)) ** 2 + ((xy[2 * i + 1] ?? 0) - (xy[2 * j + 1] ?? 0)) ** 2;
    }
    order.sort((p, q) => (inDist[p] ?? 0) - (inDist[q] ?? 0));
    order.forEach((j, r) => (rank[j] = r));
    order.sort((p, q) => (outDist[p] ?? 0) - (outDist[q] ?? 0));
    for (let r = 1; r <= k; r++) {
      const j = order[r] ?? 0;
      if ((rank[j] ?? 0) > k) penalty += (rank[j] ?? 0) - k;
    }
  }
  return 1 - (2 / (n * k * (2 * n - 3 * k - 1))) * penalty;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sae: { type: 'string', default: join(repoRoot, 'demo/public/models/tiny-r1/sae') },
      seed: { type: 'string', default: '0' },
      bin: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('usage: node --import tsx tools/tiny-r1/feature_map.ts [--sae DIR] [--seed N] [--bin]');
    return;
  }
  const dir = values.sae;
  const seed = Number(values.seed);
  const cfg = JSON.parse(readFileSync(join(dir, 'cfg.json'), 'utf8')) as { d_in?: unknown; d_sae?: unknown };
  const st = readSafetensors(readFileSync(join(dir, 'sae_weights.safetensors')));
  const wDec = st.tensors['W_dec'];
  if (wDec === undefined) throw new Error(`${dir}/sae_weights.safetensors has no W_dec.`);
  const [dSae, dIn] = wDec.shape;
  if (wDec.dtype !== 'F32' || !(wDec.data instanceof Float32Array)) throw new Error(`W_dec is ${wDec.dtype}; this tool reads F32.`);
  if (dSae !== cfg.d_sae || dIn !== cfg.d_in) {
    throw new Error(`W_dec is [${wDec.shape.join(', ')}] but cfg.json says d_sae = ${String(cfg.d_sae)}, d_in = ${String(cfg.d_in)}; expected [d_sae, d_in].`);
  }
  if (dSae === undefined || dIn === undefined) throw new Error('W_dec is not 2-D.');
  const rows = wDec.data;
  const sha256 = createHash('sha256').update(new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength)).digest('hex');

  const started = performance.now();
  let lastStage = '';
  const result = await umap(rows, dSae, dIn, {
    seed,
    onProgress: (p) => {
      if (p.stage !== lastStage) console.log(`  ${p.stage} …`);
      lastStage = p.stage;
    },
  });
  const seconds = (performance.now() - started) / 1000;
  const t10 = trustworthiness(normaliseRows(rows, dSae, dIn), dSae, dIn, result.embedding, 10);
  console.log(`UMAP of ${dSae} × ${dIn} W_dec rows in ${seconds.toFixed(1)} s (${result.knnMethod} kNN); trustworthiness@10 = ${t10.toFixed(4)}`);

  if (values.bin) {
    const out = join(dir, 'feature_map.bin');
    writeFileSync(out, featureMapBytes(result.embedding, dSae));
    console.log(`wrote ${out}`);
    return;
  }
  const file = featureMapFile(result.embedding, dSae, dIn, {
    source: 'W_dec rows (sae_weights.safetensors), unit-normalised, cosine distance',
    w_dec_sha256: sha256,
    method: 'umap',
    n_neighbors: Math.min(UMAP_DEFAULTS.nNeighbors, dSae - 1),
    min_dist: UMAP_DEFAULTS.minDist,
    spread: UMAP_DEFAULTS.spread,
    n_epochs: result.nEpochs,
    negative_sample_rate: UMAP_DEFAULTS.negativeSampleRate,
    init: result.init,
    knn: result.knnMethod,
    a: Number(result.a.toFixed(6)),
    b: Number(result.b.toFixed(6)),
    seed,
    trustworthiness_10: Number(t10.toFixed(4)),
    tool: 'tools/tiny-r1/feature_map.ts',
  });
  const out = join(dir, 'feature_map.json');
  // One line for the coordinates: the file stays small and diffs stay readable above them.
  const { xy, ...head } = file;
  writeFileSync(out, `${JSON.stringify(head, null, 1).replace(/\n}$/, '')},\n "xy": ${JSON.stringify(xy)}\n}\n`);
  console.log(`wrote ${out}`);
}

await main();
