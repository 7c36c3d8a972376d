/**
 * Tiny-R1's shipped example tables (demo/public/models/tiny-r1/examples/: tokens.csv,
 * activations.csv, autointerp.csv, Goodfire's schema) parsed for the component tests, in Node and
 * in the page alike: no DOM here. The tests' expectations are computed from these rows directly;
 * the page turns the same rows into the readouts and catalog the elements show.
 */
import type { ExampleToken, FeatureExample, FeatureLabel } from '../../../src/features/types.js';
import type { Phase, TokenReadout } from '../../../src/session/types.js';

export const TINY_R1_EXAMPLES = 'demo/public/models/tiny-r1/examples';
export const TINY_R1_MAP = 'demo/public/models/tiny-r1/sae/feature_map.json';
export const TINY_R1_D_SAE = 1024;

/** RFC 4180 CSV: quoted fields, doubled quotes, newlines inside quotes. */
export function parseCsvRows(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

export interface TokenRow {
  readonly seq: number;
  readonly idx: number;
  readonly tokenId: number;
  readonly text: string;
}

export interface ActivationRow {
  readonly feature: number;
  readonly seq: number;
  readonly idx: number;
  readonly strength: number;
}

export interface TinyR1Tables {
  readonly tokens: readonly TokenRow[];
  readonly activations: readonly ActivationRow[];
  readonly labels: readonly FeatureLabel[];
  /** Feature-map coordinates [x0, y0, …] (UMAP of W_dec, feature_map.json's `xy`). */
  readonly map: readonly number[];
}

function body(text: string, header: string): string[][] {
  const rows = parseCsvRows(text);
  const head = rows.shift()?.join(',');
  if (head !== header) throw new Error(`Expected the header "${header}", found "${head}".`);
  return rows.filter((r) => r.length > 1);
}

export function parseTables(tokensCsv: string, activationsCsv: string, autointerpCsv: string, mapJson: string): TinyR1Tables {
  const tokens = body(tokensCsv, 'sequence_id,token_idx,token,decoded_token').map((r) => ({
    seq: Number(r[0]),
    idx: Number(r[1]),
    tokenId: Number(r[2]),
    text: r[3] ?? '',
  }));
  const activations = body(activationsCsv, 'feature_id,sequence_id,token_idx,strength').map((r) => ({
    feature: Number(r[0]),
    seq: Number(r[1]),
    idx: Number(r[2]),
    strength: Number(r[3]),
  }));
  const labels = body(autointerpCsv, 'feature_id,label,quality,interestingness,model_name,prompt_version').map(
    (r): FeatureLabel => ({
      featureId: Number(r[0]),
      label: r[1] ?? '',
      quality: Number(r[2]),
      interestingness: Number(r[3]),
      dead: r[1] === 'dead feature',
    }),
  );
  const parsed = JSON.parse(mapJson) as { xy?: number[] };
  if (!Array.isArray(parsed.xy)) throw new Error('feature_map.json has no "xy" array.');
  return { tokens, activations, labels, map: parsed.xy };
}

/** R1's phases from the token texts: the prompt through "<｜Assistant｜>", thinking through "</think>", then the answer. */
export function phasesOf(texts: readonly string[]): Phase[] {
  let phase: Phase = 'prompt';
  return texts.map((t) => {
    if (phase === 'prompt' && t === '<think>') phase = 'thinking';
    const here = phase;
    if (phase === 'prompt' && t.includes('Assistant')) phase = 'thinking';
    if (t === '</think>') phase = 'answer';
    return here;
  });
}

/** `${seq}:${idx}` → [feature, strength][] for every token with activation rows. */
export function activationIndex(tables: TinyR1Tables): Map<string, Array<[number, number]>> {
  const byToken = new Map<string, Array<[number, number]>>();
  for (const a of tables.activations) {
    const key = `${a.seq}:${a.idx}`;
    let list = byToken.get(key);
    if (list === undefined) byToken.set(key, (list = []));
    list.push([a.feature, a.strength]);
  }
  return byToken;
}

/** One sequence's token rows in order. */
export function sequenceTokens(tables: TinyR1Tables, seq: number): TokenRow[] {
  return tables.tokens.filter((t) => t.seq === seq).sort((a, b) => a.idx - b.idx);
}

/**
 * Readouts of the given sequences, one after another (positions continue across them): text,
 * phase, and the features of activations.csv, strongest first, ties by id.
 */
export function sequenceReadouts(tables: TinyR1Tables, seqs: readonly number[], index = activationIndex(tables)): TokenReadout[] {
  const out: TokenReadout[] = [];
  for (const seq of seqs) {
    const rows = sequenceTokens(tables, seq);
    const phases = phasesOf(rows.map((r) => r.text));
    rows.forEach((r, k) => {
      const feats = [...(index.get(`${seq}:${r.idx}`) ?? [])].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
      out.push({
        position: out.length,
        tokenId: r.tokenId,
        text: r.text,
        phase: phases[k] ?? 'answer',
        steered: false,
        indices: Uint32Array.from(feats.map((f) => f[0])),
        values: Float32Array.from(feats.map((f) => f[1])),
        nonFinite: false,
      });
    });
  }
  return out;
}

/** Sequences, in id order, until they hold at least `n` tokens. */
export function sequencesFor(tables: TinyR1Tables, n: number): number[] {
  const counts = new Map<number, number>();
  for (const t of tables.tokens) counts.set(t.seq, (counts.get(t.seq) ?? 0) + 1);
  const seqs: number[] = [];
  let total = 0;
  for (const [seq, c] of [...counts].sort((a, b) => a[0] - b[0])) {
    if (total >= n) break;
    seqs.push(seq);
    total += c;
  }
  return seqs;
}

/**
 * Goodfire-style max-activating examples of `feature` from the two tables: its activation rows,
 * strongest first (ties by sequence, then token), each with the tokens within `window` of the
 * hit and the feature's activation at each (0 where the table has none).
 */
export function examplesOf(tables: TinyR1Tables, feature: number, limit: number, window: number): FeatureExample[] {
  const hits = tables.activations.filter((a) => a.feature === feature).sort((a, b) => b.strength - a.strength || a.seq - b.seq || a.idx - b.idx);
  const at = new Map<string, number>();
  for (const a of hits) at.set(`${a.seq}:${a.idx}`, a.strength);
  return hits.slice(0, limit).map((h) => {
    const tokens: ExampleToken[] = tables.tokens
      .filter((t) => t.seq === h.seq && Math.abs(t.idx - h.idx) <= window)
      .sort((a, b) => a.idx - b.idx)
      .map((t) => ({ tokenIdx: t.idx, tokenId: t.tokenId, text: t.text, activation: at.get(`${t.seq}:${t.idx}`) ?? 0 }));
    return { featureId: feature, sequenceId: h.seq, tokenIdx: h.idx, strength: h.strength, tokens };
  });
}

/** Fetches and parses the tables from the page's origin (the Vite dev server serves the repository). */
export async function loadTables(base = '/'): Promise<TinyR1Tables> {
  const text = async (path: string): Promise<string> => {
    const r = await fetch(`${base}${path}`);
    if (!r.ok) throw new Error(`GET ${base}${path}: HTTP ${r.status}`);
    return r.text();
  };
  const [tokens, activations, autointerp, map] = await Promise.all([
    text(`${TINY_R1_EXAMPLES}/tokens.csv`),
    text(`${TINY_R1_EXAMPLES}/activations.csv`),
    text(`${TINY_R1_EXAMPLES}/autointerp.csv`),
    text(TINY_R1_MAP),
  ]);
  return parseTables(tokens, activations, autointerp, map);
}
