/**
 * Label search: what a reader types into the feature finder ("backtracking", "wait not",
 * "#540", "540") → the best-matching labels.
 *
 * Matching is case-insensitive. A label matches when it contains the whole query, or when every
 * word of the query is a word of the label or the start of one ("calc res" finds "calculation
 * result"). A query that is a feature id ("540" or "#540") puts that feature first. Ranking
 * (highest first):
 *
 *   1000  the feature id itself
 *    800  the label equals the query
 *    500  the label starts with the query
 *    300  the label contains the query (+100 when it starts at a word)
 *   + per query word: 60 when it equals a label word, 25 when a label word starts with it
 *
 * then live features before dead ones, higher quality first, then lower feature id. Labels are
 * indexed once (lower-cased text and words), so a search over Goodfire's 65 536 labels is a
 * linear scan of short strings: a few milliseconds.
 */
import type { FeatureLabel } from './types.js';

const WORD = /[\p{L}\p{N}]+/gu;

interface Entry {
  readonly label: FeatureLabel;
  readonly lower: string;
  readonly words: readonly string[];
}

function words(s: string): string[] {
  return s.toLowerCase().match(WORD) ?? [];
}

export class LabelIndex {
  private readonly entries: Entry[];
  private readonly byId = new Map<number, FeatureLabel>();

  constructor(labels: Iterable<FeatureLabel>) {
    this.entries = [];
    for (const l of labels) {
      this.byId.set(l.featureId, l);
      this.entries.push({ label: l, lower: l.label.toLowerCase(), words: words(l.label) });
    }
  }

  get size(): number {
    return this.byId.size;
  }

  get(featureId: number): FeatureLabel | undefined {
    return this.byId.get(featureId);
  }

  /** Best matches first (see the module comment); an empty query finds nothing. */
  search(query: string, limit = 20): FeatureLabel[] {
    const q = query.trim().toLowerCase();
    if (q === '' || !(limit > 0)) return [];
    const idMatch = /^#?\s*(\d{1,10})$/.exec(q);
    const id = idMatch !== null ? Number(idMatch[1]) : undefined;
    // For "#540" the label text to look for is "540" as well.
    const text = idMatch !== null ? (idMatch[1] ?? q) : q;
    const qWords = words(text);
    const scored: { e: Entry; score: number }[] = [];
    for (const e of this.entries) {
      let score = 0;
      if (e.label.featureId === id) score += 1000;
      if (e.lower === text) score += 800;
      else if (e.lower.startsWith(text)) score += 500;
      else {
        const at = e.lower.indexOf(text);
        if (at !== -1) score += 300 + (at === 0 || !/[\p{L}\p{N}]/u.test(e.lower[at - 1] ?? '') ? 100 : 0);
      }
      let allWords = qWords.length > 0;
      let wordScore = 0;
      for (const w of qWords) {
        let best = 0;
        for (const lw of e.words) {
          if (lw === w) {
            best = 60;
            break;
          }
          if (best < 25 && lw.startsWith(w)) best = 25;
        }
        if (best === 0) allWords = false;
        wordScore += best;
      }
      if (score === 0 && !allWords) continue;
      scored.push({ e, score: score + wordScore });
    }
    scored.sort(
      (a, b) =>
        b.score - a.score ||
        Number(a.e.label.dead) - Number(b.e.label.dead) ||
        (b.e.label.quality ?? -1) - (a.e.label.quality ?? -1) ||
        a.e.label.featureId - b.e.label.featureId,
    );
    return scored.slice(0, limit).map((s) => s.e.label);
  }
}
