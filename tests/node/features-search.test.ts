/**
 * Label search (src/features/search.ts): the documented ranking on a hand-built index, matching
 * invariants on Tiny-R1's 1024 real labels, feature-id queries, and speed at Goodfire's 65 536.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readAutointerpCsv } from '../../src/features/labels.js';
import { LabelIndex } from '../../src/features/search.js';
import type { FeatureLabel } from '../../src/features/types.js';

const label = (featureId: number, text: string, extra: Partial<FeatureLabel> = {}): FeatureLabel => ({ featureId, label: text, dead: false, ...extra });

describe('ranking', () => {
  const index = new LabelIndex([
    label(1, 'Backtracking after an error'),
    label(2, 'backtracking'),
    label(3, 'self-correction: backtracking', { quality: 0.9 }),
    label(4, 'self-correction: backtracking', { quality: 0.2 }),
    label(5, 'Mentions of tracking numbers'),
    label(6, 'backtracking', { dead: true }),
    label(7, 'the box number'),
    label(8, 'box'),
    label(540, 'Wait tokens'),
    label(9, 'feature 540 twin'),
    label(10, 'dead feature', { dead: true }),
  ]);
  const ids = (q: string, limit?: number): number[] => index.search(q, limit).map((l) => l.featureId);

  it('exact, then prefix, then substring at a word, then words; live before dead; quality; id', () => {
    // 2: equal (800+60); 6: equal but dead; 1: prefix (500+60); 3, 4: substring at a word start (400+60), by quality.
    expect(ids('backtracking')).toEqual([2, 6, 1, 3, 4]);
    // Case-insensitive.
    expect(ids('BACKTRACKING')).toEqual(ids('backtracking'));
    // "tracking" is a word of 5 (substring at a word: 400 + 60) and inside "backtracking" elsewhere (300).
    expect(ids('tracking')[0]).toBe(5);
  });

  it('matches every query word, in any order, as a word or a word prefix', () => {
    expect(ids('number box')).toEqual([7]);
    expect(ids('corr back')).toEqual([3, 4]);
    expect(ids('box zebra')).toEqual([]);
  });

  it('puts the feature with a typed id first: "540" and "#540"', () => {
    expect(ids('540')).toEqual([540, 9]);
    expect(ids('#540')).toEqual([540, 9]);
    expect(ids('# 540')[0]).toBe(540);
  });

  it('honours the limit and ignores empty queries', () => {
    expect(ids('backtracking', 2)).toEqual([2, 6]);
    expect(ids('   ')).toEqual([]);
    expect(ids('backtracking', 0)).toEqual([]);
  });
});

describe("Tiny-R1's labels", () => {
  const labels = readAutointerpCsv(readFileSync('demo/public/models/tiny-r1/examples/autointerp.csv'));
  const index = new LabelIndex(labels);

  it('every result contains the query or all its words; the best result contains the query', () => {
    for (const q of ['wait', 'Backtracking', 'entity', 'the operand after', '"=', 'box', 'thinking', 'not']) {
      const found = index.search(q, 50);
      expect(found.length, q).toBeGreaterThan(0);
      const words = q.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
      for (const l of found) {
        const lower = l.label.toLowerCase();
        const labelWords = lower.match(/[\p{L}\p{N}]+/gu) ?? [];
        const ok = lower.includes(q.toLowerCase()) || words.every((w) => labelWords.some((lw) => lw.startsWith(w)));
        expect(ok, `${q} → ${l.label}`).toBe(true);
      }
      expect(found[0]?.label.toLowerCase().includes(q.toLowerCase()), q).toBe(true);
    }
  });

  it('finds dead features by their label, and features by id', () => {
    expect(index.search('dead feature').every((l) => l.dead)).toBe(true);
    expect(index.search('dead feature').length).toBe(4);
    expect(index.search('#540')[0]?.featureId).toBe(540);
  });
});

describe('speed', () => {
  it("searches Goodfire-sized label sets (65 536) in milliseconds", () => {
    const words = ['reasoning', 'backtracking', 'number', 'code', 'graph', 'cycle', 'sum', 'proof', 'wait', 'check'];
    const labels = Array.from({ length: 65536 }, (_, i) => label(i, `${words[i % 10]} ${words[(i * 7) % 10]} of ${words[(i * 3) % 10]} #${i}`));
    const index = new LabelIndex(labels);
    const t0 = performance.now();
    for (const q of ['backtracking', 'cycle proof', '12345', 'wait chec']) index.search(q);
    expect((performance.now() - t0) / 4).toBeLessThan(200);
  });
});
