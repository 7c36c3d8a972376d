/**
 * loadSae on the layouts the source projects publish (tools/golden/make_format_fixtures.py
 * re-packs golden SAEs into them): each loads, encodes the golden input and must reproduce the
 * golden outputs of the case it came from — so a transposition, a missing b_dec subtraction or
 * a wrong top-k order in an adapter fails here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { SaeSourceError } from '../../src/errors.js';
import { loadSae, type SaeFiles } from '../../src/runtime/load.js';
import { compareCodes, worstRatio } from '../helpers/compare.js';
import { goldenTolerance, loadGolden, rms } from '../helpers/golden.js';

const root = fileURLToPath(new URL('../fixtures/formats/', import.meta.url));

function filesOf(dir: string, prefix = ''): SaeFiles {
  const out: SaeFiles = {};
  for (const name of readdirSync(dir)) {
    const p = `${dir}/${name}`;
    if (statSync(p).isDirectory()) Object.assign(out, filesOf(p, `${prefix}${name}/`));
    else out[`${prefix}${name}`] = new Uint8Array(readFileSync(p));
  }
  return out;
}

const cases = readdirSync(root).map((dir) => ({ dir, golden: readFileSync(`${root}${dir}/golden.txt`, 'utf8').trim() }));

describe('loadSae from published layouts reproduces the golden outputs', () => {
  test.for(cases)('$dir', async ({ dir, golden }) => {
    const g = loadGolden(`${golden}.safetensors`);
    const sae = await loadSae({ files: filesOf(`${root}${dir}`) }, { backend: 'cpu' });
    expect(sae.config).toMatchObject({
      architecture: g.config.architecture,
      dIn: g.config.dIn,
      dSae: g.config.dSae,
      tied: g.config.tied,
      weightDtype: g.config.weightDtype,
      applyBDecToInput: g.config.applyBDecToInput,
      inputNorm: g.config.inputNorm,
    });
    const tol = goldenTolerance(g);
    const codes = await sae.encode(g.x, { tokens: g.tokens });
    expect(compareCodes(codes, g.featureActs, g.preActs, g.config.dSae, tol, rms(g.preActs))).toEqual([]);
    const xHat = await sae.decode(codes);
    expect(worstRatio(xHat, g.xHat, tol, rms(g.xHat)).ratio).toBeLessThanOrEqual(1);
    sae.destroy();
  });

  test('sparsify hookpoint folders: the hookpoint becomes the config, subfolder selects', async () => {
    const files = filesOf(`${root}sparsify`);
    const sae = await loadSae({ files }, { backend: 'cpu' });
    expect(sae.config.hookpoint).toBe('layers.3');
    const two: SaeFiles = { ...files };
    for (const [k, v] of Object.entries(files)) two[k.replace('layers.3', 'layers.4')] = v;
    await expect(loadSae({ files: two }, { backend: 'cpu' })).rejects.toThrow(/pass \{ subfolder \}/);
    const chosen = await loadSae({ files: two }, { backend: 'cpu', subfolder: 'layers.4' });
    expect(chosen.config.dSae).toBe(sae.config.dSae);
  });

  test('unrecognised or inconsistent files get named errors', async () => {
    await expect(loadSae({ files: { 'readme.md': new Uint8Array(3) } }, { backend: 'cpu' })).rejects.toThrow(SaeSourceError);
    const gf = filesOf(`${root}goodfire`);
    const badCfg = new TextEncoder().encode(JSON.stringify({ d_in: 95, expansion_factor: 4, k: 5 }));
    await expect(loadSae({ files: { ...gf, 'config.json': badCfg } }, { backend: 'cpu' })).rejects.toThrow(/d_in 95, but W has 96 rows/);
    const sl = filesOf(`${root}saelens-standard`);
    const cfg = JSON.parse(new TextDecoder().decode(sl['cfg.json'] as Uint8Array)) as Record<string, unknown>;
    const scaled = new TextEncoder().encode(JSON.stringify({ ...cfg, normalize_activations: 'expected_average_only_in' }));
    await expect(loadSae({ files: { ...sl, 'cfg.json': scaled } }, { backend: 'cpu' })).rejects.toThrow(/scaling factor/);
  });
});
