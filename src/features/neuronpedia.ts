/**
 * Feature labels from Neuronpedia's explanation exports.
 *
 * An explanation is a row of Neuronpedia's `Explanation` table (hijohnnylin/neuronpedia,
 * apps/webapp/prisma/schema.prisma): `modelId`, `layer` (the source id, e.g.
 * "20-gemmascope-res-16k"), `index` (the feature, a string), `description`, `typeName`,
 * `explanationModelName`, and in some exports `scores` ({ value, explanationScoreTypeName, … }).
 * The bulk exports (docs.neuronpedia.org/api-and-data/exports) are `explanations/batch-N.jsonl.gz`
 * per source: gzipped JSON Lines. The retired `/api/explanation/export` endpoint answered a JSON
 * array (some clients saw it wrapped as `{ "explanations": [...] }`). All three shapes are read:
 * a JSON array, an object wrapping one array of explanations, and JSON Lines (decompress `.gz`
 * first; `readFeatureLabels` does that).
 *
 * A feature with several explanations keeps the one with the highest quality, the first on ties.
 * quality is the best score in [0, 1] among `scores[].value` (Neuronpedia's score types differ in
 * range; values outside [0, 1] are not comparable with Goodfire's quality and are left out).
 */
import { FeatureCatalogError } from '../errors.js';
import { featureIdOf, isDeadLabel, LabelCollector } from './labels.js';
import type { FeatureLabel } from './types.js';

/** Labels from a Neuronpedia explanation export (JSON array, wrapped array, or JSON Lines). */
export function readNeuronpediaExplanations(input: string | Uint8Array, source = 'Neuronpedia export'): FeatureLabel[] {
  const text = typeof input === 'string' ? input : new TextDecoder('utf-8').decode(input);
  const records = explanationRecords(text.replace(/^\uFEFF/, ''), source);
  const collector = new LabelCollector(source);
  records.forEach((r, k) => {
    const where = `${source}, explanation ${k + 1}`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new FeatureCatalogError(`${where}: expected an object, found ${kind(r)}.`);
    const rec = r as Record<string, unknown>;
    const index = rec['index'];
    const description = rec['description'];
    if (typeof index !== 'string' && typeof index !== 'number') {
      throw new FeatureCatalogError(`${where}: expected an "index" (the feature, a string or number), found ${kind(index)}.`);
    }
    if (typeof description !== 'string') throw new FeatureCatalogError(`${where}: expected a "description" string, found ${kind(description)}.`);
    const featureId = featureIdOf(index, `${where}, field index`);
    const quality = bestScore(rec['scores']);
    const label: FeatureLabel = { featureId, label: description, ...(quality !== undefined ? { quality } : {}), dead: isDeadLabel(description) };
    collector.offer(label, (old, cand) => (cand.quality ?? -1) > (old.quality ?? -1));
  });
  return collector.labels();
}

function explanationRecords(text: string, source: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === '') throw new FeatureCatalogError(`${source} is empty; expected Neuronpedia explanations (a JSON array or JSON Lines).`);
  let whole: unknown;
  let wholeError: unknown;
  try {
    whole = JSON.parse(trimmed);
  } catch (e) {
    wholeError = e;
  }
  if (wholeError === undefined) {
    if (Array.isArray(whole)) return whole;
    if (typeof whole === 'object' && whole !== null) {
      const obj = whole as Record<string, unknown>;
      if ('index' in obj && 'description' in obj) return [obj];
      const arrays = Object.entries(obj).filter(([, v]) => Array.isArray(v));
      const named = arrays.find(([k]) => k === 'explanations');
      const pick = named ?? (arrays.length === 1 ? arrays[0] : undefined);
      if (pick !== undefined) return pick[1] as unknown[];
      throw new FeatureCatalogError(
        `${source}: a JSON object without an "explanations" array (keys: ${Object.keys(obj).slice(0, 12).join(', ') || 'none'}); expected Neuronpedia explanations.`,
      );
    }
    throw new FeatureCatalogError(`${source}: JSON ${kind(whole)} where Neuronpedia explanations (an array of objects) were expected.`);
  }
  if (!trimmed.startsWith('{')) throw new FeatureCatalogError(`${source} is not valid JSON (${String(wholeError)}).`, { cause: wholeError });
  // JSON Lines: one explanation per line (Neuronpedia's bulk export format).
  const out: unknown[] = [];
  trimmed.split(/\r?\n/).forEach((line, k) => {
    if (line.trim() === '') return;
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      throw new FeatureCatalogError(`${source}, line ${k + 1}: not valid JSON (${String(e)}); expected one explanation object per line (JSON Lines).`, { cause: e });
    }
  });
  return out;
}

/** The highest `scores[].value` in [0, 1], or undefined. */
function bestScore(scores: unknown): number | undefined {
  if (!Array.isArray(scores)) return undefined;
  let best: number | undefined;
  for (const s of scores) {
    const v = typeof s === 'number' ? s : typeof s === 'object' && s !== null ? (s as Record<string, unknown>)['value'] : undefined;
    if (typeof v === 'number' && v >= 0 && v <= 1 && (best === undefined || v > best)) best = v;
  }
  return best;
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v === undefined) return 'nothing';
  return `a ${typeof v}`;
}
