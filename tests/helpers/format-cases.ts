/**
 * The published-layout fixtures (tests/fixtures/formats, made by
 * tools/golden/make_format_fixtures.py) as cases for loader tests: where the SAE sits in the
 * folder, its weights file, and the repo name a Hub mirror would give it — `<name>.pt` files are
 * named after their repo, as Goodfire's are — plus the check that a loaded SAE reproduces the
 * PyTorch golden outputs of the case it was re-packed from.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { Sae } from '../../src/runtime/sae.js';
import { compareCodes, worstRatio } from './compare.js';
import { goldenTolerance, loadGolden, rms } from './golden.js';

export const FORMATS_DIR = fileURLToPath(new URL('../fixtures/formats/', import.meta.url));

export interface FormatCase {
  /** Fixture folder name, e.g. 'saelens-topk'. */
  readonly dir: string;
  readonly golden: string;
  /** Folder of the SAE inside the fixture ('' or a sparsify hookpoint). */
  readonly subfolder: string;
  readonly weights: string;
  /** Repo name for Hub-style mounts. */
  readonly repo: string;
}

function walk(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(`${dir}/${n}`).isDirectory() ? walk(`${dir}/${n}`, `${prefix}${n}/`) : [`${prefix}${n}`]));
}

export function formatCases(): FormatCase[] {
  return readdirSync(FORMATS_DIR)
    .filter((d) => statSync(`${FORMATS_DIR}${d}`).isDirectory())
    .map((dir) => {
      const files = walk(`${FORMATS_DIR}${dir}`);
      const w = files.find((f) => /\.(safetensors|pt|pth)$/.test(f));
      if (w === undefined) throw new Error(`fixture ${dir} has no weights`);
      const slash = w.lastIndexOf('/');
      const name = w.slice(slash + 1);
      return {
        dir,
        golden: readFileSync(`${FORMATS_DIR}${dir}/golden.txt`, 'utf8').trim(),
        subfolder: slash >= 0 ? w.slice(0, slash) : '',
        weights: name,
        repo: /\.(pt|pth)$/.test(name) ? name.replace(/\.(pt|pth)$/, '') : dir,
      };
    });
}

/** Encodes the golden input with `sae` and compares codes and reconstruction with PyTorch's. */
export async function expectGoldenOutputs(sae: Sae, golden: string): Promise<void> {
  const g = loadGolden(`${golden}.safetensors`);
  expect(sae.config).toMatchObject({ architecture: g.config.architecture, dIn: g.config.dIn, dSae: g.config.dSae, tied: g.config.tied });
  const tol = goldenTolerance(g);
  const codes = await sae.encode(g.x, { tokens: g.tokens });
  expect(compareCodes(codes, g.featureActs, g.preActs, g.config.dSae, tol, rms(g.preActs))).toEqual([]);
  const xHat = await sae.decode(codes);
  expect(worstRatio(xHat, g.xHat, tol, rms(g.xHat)).ratio).toBeLessThanOrEqual(1);
}
