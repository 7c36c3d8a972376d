/**
 * Loupe's custom elements in headless Chromium, fed with Tiny-R1's shipped tables
 * (demo/public/models/tiny-r1/examples/ and sae/feature_map.json): real elements mounted in a
 * page (tests/browser/page/components.ts), a real ReadoutStore filled with Tiny-R1's codes, and
 * every expectation — text, shading, top features, statistics, examples, positions — computed
 * here in Node from the same CSV rows, not by the elements.
 */
import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { LoupeFeatureCard, LoupeFeatureList, LoupeFeatureMap, LoupeSession, LoupeSteerPanel, LoupeTokenStream } from '../../src/components/index.js';
import type { SteeringPlan } from '../../src/steer/plan.js';
import { launchChromium, PAGE_TIMEOUT_MS, repoRoot, shutdown, startVite, withTimeout, type BrowserHandle, type ViteHandle } from './harness.js';
import {
  activationIndex,
  examplesOf,
  parseTables,
  phasesOf,
  sequenceReadouts,
  sequencesFor,
  sequenceTokens,
  TINY_R1_EXAMPLES,
  TINY_R1_MAP,
  type TinyR1Tables,
} from './page/components-data.js';

const HOSTILE = '<img src=x onerror="window.__pwned=1">';

let vite: ViteHandle | undefined;
let chrome: BrowserHandle | undefined;
let ref: TinyR1Tables;
let acts: Map<string, Array<[number, number]>>;

function page(): Page {
  if (chrome === undefined) throw new Error('beforeAll did not start the browser.');
  return chrome.page;
}

async function openPage(p: Page): Promise<void> {
  if (vite === undefined) throw new Error('beforeAll did not start Vite.');
  await p.goto(`${vite.url}tests/browser/page/components.html`, { waitUntil: 'load' });
  await p.waitForFunction(() => window.__cmp !== undefined, undefined, { timeout: PAGE_TIMEOUT_MS });
}

/** page.evaluate with a time limit and the page's log on failure. */
async function ev<R, A>(fn: (arg: A) => R | Promise<R>, arg: A, what = 'page.evaluate'): Promise<R> {
  try {
    return (await withTimeout(page().evaluate(fn as (arg: unknown) => R | Promise<R>, arg as unknown), 60_000, what)) as R;
  } catch (err) {
    throw new Error(`${String(err)}\n${chrome?.log.join('\n') ?? ''}`);
  }
}

beforeAll(async () => {
  const file = (name: string): string => readFileSync(`${repoRoot}${name}`, 'utf8');
  ref = parseTables(file(`${TINY_R1_EXAMPLES}/tokens.csv`), file(`${TINY_R1_EXAMPLES}/activations.csv`), file(`${TINY_R1_EXAMPLES}/autointerp.csv`), file(TINY_R1_MAP));
  acts = activationIndex(ref);
  vite = await startVite();
  chrome = await launchChromium();
  await openPage(chrome.page);
}, 180_000);

afterAll(async () => {
  await shutdown(chrome?.browser, vite);
}, 60_000);

// ---- independent expectations, from the CSV rows -------------------------------------------

/** activations.csv's strength of `feature` at token `idx` of sequence `seq` (0 when absent). */
function act(seq: number, idx: number, feature: number): number {
  return acts.get(`${seq}:${idx}`)?.find((a) => a[0] === feature)?.[1] ?? 0;
}

/** A token's features, strongest first, ties by id. */
function topOf(seq: number, idx: number): Array<[number, number]> {
  return [...(acts.get(`${seq}:${idx}`) ?? [])].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
}

function labelOf(f: number): string {
  const l = ref.labels.find((x) => x.featureId === f);
  if (l === undefined) throw new Error(`autointerp.csv has no label for ${f}`);
  return l.label;
}

const PHASE_NAME = { prompt: 'Prompt', thinking: 'Thinking', answer: 'Answer' } as const;

/** Alpha of a computed CSS colour ("rgba(…, a)", "color(srgb r g b / a)", or opaque). */
function alphaOf(colour: string): number {
  const slash = /\/\s*([\d.]+)\s*\)$/.exec(colour);
  if (slash !== null) return Number(slash[1]);
  const rgba = /^rgba\([^,]+,[^,]+,[^,]+,\s*([\d.]+)\)$/.exec(colour);
  if (rgba !== null) return Number(rgba[1]);
  return colour === 'transparent' ? 0 : 1;
}

// ---- <loupe-token-stream> ------------------------------------------------------------------

interface OptionInfo {
  text: string;
  pos: number;
  group: string | null;
  a0: string;
  a1: string;
  bg: string;
  tabindex: string | null;
  describedby: string | null;
}

async function streamOptions(): Promise<{ options: OptionInfo[]; m0: string; m1: string }> {
  return ev(() => {
    const el = document.querySelector('loupe-token-stream');
    const root = el?.shadowRoot;
    if (root == null) throw new Error('no token stream');
    const list = root.querySelector<HTMLElement>('[role="listbox"]');
    const options = [...root.querySelectorAll<HTMLElement>('[role="option"]')].map((o) => ({
      text: o.textContent ?? '',
      pos: Number(o.getAttribute('aria-posinset')),
      group: o.closest('[role="group"]')?.getAttribute('aria-label') ?? null,
      a0: o.style.getPropertyValue('--loupe-a0'),
      a1: o.style.getPropertyValue('--loupe-a1'),
      bg: getComputedStyle(o).backgroundColor,
      tabindex: o.getAttribute('tabindex'),
      describedby: o.getAttribute('aria-describedby'),
    }));
    return { options, m0: list?.style.getPropertyValue('--loupe-m0') ?? '', m1: list?.style.getPropertyValue('--loupe-m1') ?? '' };
  }, undefined);
}

async function mountStream(seqs: number[], height = 600): Promise<void> {
  await ev(
    async ({ seqs, height }) => {
      const c = window.__cmp;
      if (c === undefined) throw new Error('page not ready');
      const s = c.session();
      c.vars['s'] = s;
      const el = c.stage(`<loupe-token-stream style="--loupe-stream-height:${height}px"></loupe-token-stream>`) as LoupeTokenStream;
      el.session = s;
      s.appendAll(c.readouts(seqs));
      await el.updateComplete;
      await new Promise((r) => requestAnimationFrame(r));
      await el.updateComplete;
    },
    { seqs, height },
  );
}

describe('<loupe-token-stream>', () => {
  const SEQ = 0;

  test('renders every token of a Tiny-R1 sequence as text, in order, grouped and labelled by phase', async () => {
    await mountStream([SEQ]);
    const rows = sequenceTokens(ref, SEQ);
    const phases = phasesOf(rows.map((r) => r.text));
    const { options } = await streamOptions();
    expect(options.map((o) => o.text)).toEqual(rows.map((r) => r.text));
    expect(options.map((o) => o.pos)).toEqual(rows.map((_, i) => i + 1));
    expect(options.map((o) => o.group)).toEqual(phases.map((p) => PHASE_NAME[p]));
    expect(new Set(phases)).toEqual(new Set(['prompt', 'thinking', 'answer']));
    const aria = await ev(() => {
      const root = document.querySelector('loupe-token-stream')?.shadowRoot;
      const list = root?.querySelector('[role="listbox"]');
      return {
        label: list?.getAttribute('aria-label'),
        labels: [...(root?.querySelectorAll('[part="phase-label"]') ?? [])].map((l) => [l.textContent, l.getAttribute('aria-hidden')]),
        newline: root?.querySelector('[role="option"].nl')?.getAttribute('aria-label'),
      };
    }, undefined);
    expect(aria.label).toBe('Generated tokens');
    expect(aria.labels).toEqual([
      ['prompt', 'true'],
      ['thinking', 'true'],
      ['answer', 'true'],
    ]);
    // A token that is only a newline still has a spoken name.
    expect(aria.newline).toBe('newline');
  });

  test('shades each token by activation / the selected feature\'s max, and re-shades on selection', async () => {
    await mountStream([SEQ]);
    const rows = sequenceTokens(ref, SEQ);
    const check = async (features: number[]): Promise<void> => {
      await ev(async (sel) => {
        const el = document.querySelector('loupe-token-stream');
        if (el === null) throw new Error('no stream');
        el.selected = sel;
        await el.updateComplete;
      }, features);
      const { options, m0, m1 } = await streamOptions();
      const maxes = features.map((f) => Math.max(...rows.map((r) => act(SEQ, r.idx, f))));
      expect(Number(m0)).toBeCloseTo(maxes[0] ?? NaN, 3);
      if (features.length > 1) expect(Number(m1)).toBeCloseTo(maxes[1] ?? NaN, 3);
      let shaded = 0;
      rows.forEach((r, i) => {
        const o = options[i];
        if (o === undefined) throw new Error(`token ${i} missing`);
        const level = act(SEQ, r.idx, features[0] ?? -1) / (maxes[0] ?? 1);
        const a0 = o.a0 === '' ? 0 : Number(o.a0);
        expect(a0 / Number(m0), `token ${i} level`).toBeCloseTo(level, 5);
        if (features.length === 1) {
          // What the reader sees: the highlight colour mixed in at that level.
          expect(alphaOf(o.bg), `token ${i} background ${o.bg}`).toBeCloseTo(level, 2);
          if (level > 0) shaded++;
        } else {
          const level1 = act(SEQ, r.idx, features[1] ?? -1) / (maxes[1] ?? 1);
          expect((o.a1 === '' ? 0 : Number(o.a1)) / Number(m1), `token ${i} level of the second feature`).toBeCloseTo(level1, 5);
        }
      });
      if (features.length === 1) expect(shaded).toBe(rows.filter((r) => act(SEQ, r.idx, features[0] ?? -1) > 0).length);
    };
    await check([696]);
    await check([460]);
    await check([696, 460]);
  });

  test('focus and hover show the token\'s top features with their labels in a tooltip', async () => {
    await mountStream([SEQ]);
    const rows = sequenceTokens(ref, SEQ);
    // The token with the most features.
    const k = rows.reduce((best, r, i) => (topOf(SEQ, r.idx).length > topOf(SEQ, rows[best]?.idx ?? 0).length ? i : best), 0);
    const expected = topOf(SEQ, rows[k]?.idx ?? 0).slice(0, 5);
    expect(expected.length).toBeGreaterThan(2);
    await page().locator('loupe-token-stream [role="option"]').nth(k).focus();
    const tip = async (): Promise<{ hidden: boolean; role: string | null; id: string; items: string[]; head: string; describedBy: string[] }> =>
      ev(async () => {
        const el = document.querySelector('loupe-token-stream');
        await el?.updateComplete;
        const root = el?.shadowRoot;
        const t = root?.querySelector<HTMLElement>('.tip');
        if (t == null || root == null) throw new Error('no tooltip');
        return {
          hidden: t.hidden || getComputedStyle(t).display === 'none',
          role: t.getAttribute('role'),
          id: t.id,
          items: [...t.querySelectorAll('li')].map((li) => li.textContent?.replace(/\s+/g, ' ').trim() ?? ''),
          head: t.firstElementChild?.textContent?.replace(/\s+/g, ' ').trim() ?? '',
          describedBy: [...root.querySelectorAll('[aria-describedby]')].map((o) => `${o.getAttribute('aria-posinset')}:${o.getAttribute('aria-describedby')}`),
        };
      }, undefined);
    const focused = await tip();
    expect(focused.hidden).toBe(false);
    expect(focused.role).toBe('tooltip');
    expect(focused.describedBy).toEqual([`${k + 1}:${focused.id}`]);
    expect(focused.items).toEqual(expected.map(([f, v]) => `${labelOf(f)} #${f} ${v.toFixed(2)}`));
    expect(focused.head).toContain(JSON.stringify(rows[k]?.text));
    // Hover another token with features: the tooltip follows the pointer.
    const h = rows.findIndex((r, i) => i !== k && topOf(SEQ, r.idx).length > 0);
    await page().locator('loupe-token-stream [role="option"]').nth(h).hover();
    const hovered = await tip();
    expect(hovered.items).toEqual(topOf(SEQ, rows[h]?.idx ?? 0).slice(0, 5).map(([f, v]) => `${labelOf(f)} #${f} ${v.toFixed(2)}`));
    expect(hovered.describedBy).toEqual([`${h + 1}:${focused.id}`]);
    // Escape dismisses it.
    await page().mouse.move(0, 0);
    await page().keyboard.press('Escape');
    expect((await tip()).hidden).toBe(true);
  });

  test('steered and non-finite tokens are marked, and the tooltip says a non-finite token has no features', async () => {
    const got = await ev(async () => {
      const c = window.__cmp;
      if (c === undefined) throw new Error('page not ready');
      const s = c.session();
      const base = c.readouts([0]);
      const last = base[base.length - 1];
      if (last === undefined) throw new Error('no tokens');
      const el = c.stage('<loupe-token-stream></loupe-token-stream>') as LoupeTokenStream;
      el.session = s;
      s.appendAll(base.map((t) => (t.phase === 'answer' ? { ...t, steered: true } : t)));
      s.append({ ...last, position: base.length, text: ' NaN', indices: new Uint32Array(0), values: new Float32Array(0), nonFinite: true });
      await el.updateComplete;
      el.focusToken(base.length);
      // Focusing a token schedules one more update (the tooltip): wait until none is pending.
      for (let i = 0; i < 5 && !(await el.updateComplete); i++);
      const root = el.shadowRoot;
      const options = [...(root?.querySelectorAll('[role="option"]') ?? [])];
      return {
        steered: options.filter((o) => o.getAttribute('part')?.split(' ').includes('steered')).length,
        nonFinite: options.filter((o) => o.getAttribute('part')?.split(' ').includes('nonfinite')).map((o) => o.textContent),
        tip: root?.querySelector('[role="tooltip"]')?.textContent?.replace(/\s+/g, ' ').trim(),
      };
    }, undefined);
    const rows = sequenceTokens(ref, 0);
    expect(got.steered).toBe(phasesOf(rows.map((r) => r.text)).filter((p) => p === 'answer').length);
    expect(got.nonFinite).toEqual([' NaN']);
    expect(got.tip).toContain('Non-finite activation (NaN or ±Inf): no features.');
  });

  test('keyboard: roving tabindex with arrows, Home, End, line up/down; Enter selects the top feature', async () => {
    await mountStream([SEQ]);
    const rows = sequenceTokens(ref, SEQ);
    const focus = async (): Promise<{ pos: number; tabStops: number; top: number; left: number }> =>
      ev(async () => {
        const el = document.querySelector('loupe-token-stream');
        await el?.updateComplete;
        const a = window.__cmp?.deepActive();
        const r = a?.getBoundingClientRect();
        return {
          pos: Number(a?.getAttribute('aria-posinset')),
          tabStops: el?.shadowRoot?.querySelectorAll('[role="option"][tabindex="0"]').length ?? -1,
          top: r?.top ?? NaN,
          left: r?.left ?? NaN,
        };
      }, undefined);
    // Tab into the list: focus lands on a token (the first visible one), the only tab stop.
    await page().locator('#status').click();
    await page().keyboard.press('Tab');
    let f = await focus();
    expect(f.pos).toBeGreaterThanOrEqual(1);
    expect(f.tabStops).toBe(1);
    await page().keyboard.press('Home');
    expect((await focus()).pos).toBe(1);
    for (let i = 0; i < 3; i++) await page().keyboard.press('ArrowRight');
    expect((await focus()).pos).toBe(4);
    await page().keyboard.press('ArrowLeft');
    f = await focus();
    expect(f.pos).toBe(3);
    expect(f.tabStops).toBe(1);
    await page().keyboard.press('End');
    expect((await focus()).pos).toBe(rows.length);
    // Down from a token moves to the next line, near the same x; Up comes back to the first line.
    const start = rows.findIndex((r) => r.text === 'Okay');
    await page().locator('loupe-token-stream [role="option"]').nth(start).focus();
    const before = await focus();
    await page().keyboard.press('ArrowDown');
    const below = await focus();
    expect(below.top).toBeGreaterThan(before.top + 5);
    expect(below.left).toBeLessThanOrEqual(before.left + 1);
    await page().keyboard.press('ArrowUp');
    expect((await focus()).top).toBeCloseTo(before.top, 0);
    // Enter selects the focused token's strongest feature (a bubbling, composed event).
    const withFeatures = rows.findIndex((r) => topOf(SEQ, r.idx).length > 1);
    await page().locator('loupe-token-stream [role="option"]').nth(withFeatures).focus();
    await ev(() => window.__cmp?.events.splice(0), undefined);
    await page().keyboard.press('Enter');
    await page().keyboard.press('Shift+Enter');
    const events = await ev(() => window.__cmp?.events.splice(0) ?? [], undefined);
    const top = topOf(SEQ, rows[withFeatures]?.idx ?? 0)[0]?.[0];
    expect(events.map((e) => [e.type, e.detail])).toEqual([
      ['loupe-select', { featureId: top, additive: false }],
      ['loupe-select', { featureId: top, additive: true }],
    ]);
    expect(events[0]?.path).toContain('loupe-token-stream');
  });

  test('virtualised: 5,000+ tokens keep a bounded DOM, follow the newest token, and scroll to the right tokens', async () => {
    const seqs = sequencesFor(ref, 5000);
    const expected = sequenceReadouts(ref, seqs, acts);
    expect(expected.length).toBeGreaterThanOrEqual(5000);
    // Tokens arrive in bursts while the view follows the bottom.
    await ev(
      async ({ seqs }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        const s = c.session();
        c.vars['s'] = s;
        const all = c.readouts(seqs);
        c.vars['all'] = all;
        const el = c.stage('<loupe-token-stream style="--loupe-stream-height:600px"></loupe-token-stream>') as LoupeTokenStream;
        el.session = s;
        for (let i = 0; i < all.length; i += 250) {
          s.appendAll(all.slice(i, i + 250));
          await el.updateComplete;
          await new Promise((r) => requestAnimationFrame(r));
        }
        await el.updateComplete;
      },
      { seqs },
    );
    const view = async (): Promise<{ count: number; elements: number; positions: number[]; atTop: number; atBottom: number; scroll: number[]; visible: Array<[number, string]> }> =>
      ev(async () => {
        const el = document.querySelector('loupe-token-stream');
        const root = el?.shadowRoot;
        const scroller = root?.querySelector<HTMLElement>('.scroller');
        if (el == null || root == null || scroller == null) throw new Error('no stream');
        await new Promise((r) => requestAnimationFrame(r));
        await el.updateComplete;
        const box = scroller.getBoundingClientRect();
        const options = [...root.querySelectorAll<HTMLElement>('[role="option"]')];
        const posOf = (o: Element): number => Number(o.getAttribute('aria-posinset'));
        const rects = options.map((o) => [posOf(o), o.getBoundingClientRect()] as const).filter(([, r]) => r.width > 0);
        const visible = options
          .filter((o) => {
            const r = o.getBoundingClientRect();
            return r.bottom > box.top && r.top < box.bottom && r.width > 0;
          })
          .map((o): [number, string] => [Number(o.getAttribute('aria-posinset')), o.textContent ?? '']);
        return {
          count: options.length,
          elements: root.querySelectorAll('*').length,
          positions: options.map((o) => Number(o.getAttribute('aria-posinset'))),
          // The first and last token on screen.
          atTop: Math.min(...rects.filter(([, r]) => r.bottom > box.top + 2).map(([p]) => p)),
          atBottom: Math.max(...rects.filter(([, r]) => r.top < box.bottom - 2).map(([p]) => p)),
          scroll: [scroller.scrollTop, scroller.clientHeight, scroller.scrollHeight],
          visible,
        };
      }, undefined);
    const checkWindow = (v: Awaited<ReturnType<typeof view>>): void => {
      // Bounded: a window of chunks around the viewport, not the stream.
      expect(v.count).toBeLessThan(1500);
      expect(v.elements).toBeLessThan(2000);
      // Contiguous, and what is on screen is the right text.
      const first = v.positions[0] ?? 0;
      expect(v.positions).toEqual(v.positions.map((_, i) => first + i));
      expect(v.visible.length).toBeGreaterThan(50);
      for (const [pos, text] of v.visible) expect(text, `token ${pos}`).toBe(expected[pos - 1]?.text);
    };
    const bottom = await view();
    checkWindow(bottom);
    expect(bottom.positions.at(-1)).toBe(expected.length);
    expect(bottom.scroll[0] ?? 0).toBeGreaterThanOrEqual((bottom.scroll[2] ?? 0) - (bottom.scroll[1] ?? 0) - 2);
    expect(bottom.visible.at(-1)?.[0]).toBe(expected.length);

    // Scroll to the middle: the tokens on screen are the ones at that place in the stream.
    await ev(() => {
      const s = document.querySelector('loupe-token-stream')?.shadowRoot?.querySelector<HTMLElement>('.scroller');
      if (s == null) throw new Error('no scroller');
      s.scrollTop = s.scrollHeight / 2;
    }, undefined);
    const middle = await view();
    checkWindow(middle);
    expect(middle.atTop).toBeGreaterThan(expected.length * 0.3);
    expect(middle.atTop).toBeLessThan(expected.length * 0.7);
    expect(middle.atBottom).toBeGreaterThan(middle.atTop);
    expect(middle.positions[0]).toBeLessThanOrEqual(middle.atTop);
    expect(middle.positions.at(-1)).toBeGreaterThanOrEqual(middle.atBottom);

    // Appending while scrolled up leaves the view where it is.
    await ev(() => {
      const c = window.__cmp;
      const s = c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>;
      const all = c?.vars['all'] as typeof s.script;
      s.appendAll(all.slice(0, 20).map((t, i) => ({ ...t, position: all.length + i })));
    }, undefined);
    const still = await view();
    expect(still.atTop).toBe(middle.atTop);

    await ev(() => {
      const s = document.querySelector('loupe-token-stream')?.shadowRoot?.querySelector<HTMLElement>('.scroller');
      if (s == null) throw new Error('no scroller');
      s.scrollTop = 0;
    }, undefined);
    const top = await view();
    checkWindow(top);
    expect(top.positions[0]).toBe(1);
    expect(top.atTop).toBe(1);
  });

  test('appending a token while following changes O(1) DOM: one new option, nothing else re-created', async () => {
    const seqs = sequencesFor(ref, 5000);
    const r = await ev(
      async ({ seqs }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        const s = c.session();
        const all = c.readouts(seqs);
        const el = c.stage('<loupe-token-stream style="--loupe-stream-height:600px"></loupe-token-stream>') as LoupeTokenStream;
        el.session = s;
        el.selected = [696];
        s.appendAll(all.slice(0, all.length - 60));
        await el.updateComplete;
        await new Promise((r) => requestAnimationFrame(r));
        await el.updateComplete;
        const root = el.shadowRoot;
        if (root === null) throw new Error('no shadow root');
        const options = (n: Node): number => (n instanceof Element ? (n.matches('[role="option"]') ? 1 : 0) + n.querySelectorAll('[role="option"]').length : 0);
        const perAppend: Array<{ added: number; removed: number; records: number }> = [];
        let sentinel = root.querySelectorAll('[role="option"]')[0];
        let sentinelKept = 0;
        for (const t of all.slice(all.length - 60)) {
          const records: MutationRecord[] = [];
          const mo = new MutationObserver((rs) => records.push(...rs));
          mo.observe(root, { childList: true, subtree: true, attributes: true, characterData: true });
          const last = root.querySelectorAll('[role="option"]');
          const kept = last[last.length - 1];
          s.append(t);
          await el.updateComplete;
          records.push(...mo.takeRecords());
          mo.disconnect();
          let added = 0;
          let removed = 0;
          for (const rec of records) {
            rec.addedNodes.forEach((n) => (added += options(n)));
            rec.removedNodes.forEach((n) => (removed += options(n)));
          }
          perAppend.push({ added, removed, records: records.length });
          if (kept?.isConnected === true) sentinelKept++;
          if (sentinel?.isConnected !== true) sentinel = root.querySelectorAll('[role="option"]')[0];
        }
        return { perAppend, sentinelKept, count: root.querySelectorAll('[role="option"]').length };
      },
      { seqs },
    );
    // Each append adds exactly the new token's option; the previous last token is the same node.
    expect(r.perAppend.map((p) => p.added)).toEqual(r.perAppend.map(() => 1));
    expect(r.sentinelKept).toBe(60);
    // Chunks leave the top of the window now and then (≤ 128 tokens each); most appends remove nothing.
    const removing = r.perAppend.filter((p) => p.removed > 0);
    expect(removing.length).toBeLessThanOrEqual(6);
    for (const p of removing) expect(p.removed).toBeLessThanOrEqual(2 * 128);
    const records = r.perAppend.map((p) => p.records).sort((a, b) => a - b);
    expect(records[Math.floor(records.length / 2)]).toBeLessThanOrEqual(6);
    expect(r.count).toBeLessThan(1500);
  });
});

// ---- <loupe-feature-list> ------------------------------------------------------------------

describe('<loupe-feature-list>', () => {
  const SEQ = 3;

  /** The top `n` features by a score over tokens [from, to) of a sequence, ties by id. */
  function ranked(seq: number, n: number, score: (sum: number, count: number) => number, from = 0, to = Infinity): Array<{ f: number; sum: number; count: number }> {
    const rows = sequenceTokens(ref, seq).slice(from, to);
    const sums = new Map<number, { sum: number; count: number }>();
    for (const r of rows) {
      for (const [f, v] of topOf(seq, r.idx)) {
        const s = sums.get(f) ?? { sum: 0, count: 0 };
        s.sum += v;
        s.count++;
        sums.set(f, s);
      }
    }
    return [...sums]
      .map(([f, s]) => ({ f, ...s }))
      .sort((a, b) => score(b.sum, b.count) - score(a.sum, a.count) || a.f - b.f)
      .slice(0, n);
  }

  async function rows(): Promise<Array<{ f: number; label: string; value: string; selected: string | null; points: string[] }>> {
    return ev(async () => {
      const el = document.querySelector('loupe-feature-list');
      await el?.updateComplete;
      return [...(el?.shadowRoot?.querySelectorAll<HTMLElement>('[role="option"]') ?? [])].map((o) => ({
        f: Number(o.dataset['f']),
        label: o.querySelector('[part="label"]')?.textContent ?? '',
        value: o.querySelector('[part="value"]')?.textContent ?? '',
        selected: o.getAttribute('aria-selected'),
        points: (o.querySelector('polyline')?.getAttribute('points') ?? '').split(' '),
      }));
    }, undefined);
  }

  test('lists the features most active now and over the run, with labels, values and sparklines', async () => {
    const n = sequenceTokens(ref, SEQ).length;
    await ev(
      async ({ seq }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        const s = c.session();
        c.vars['s'] = s;
        const el = c.stage('<loupe-feature-list limit="8" recent-window="8"></loupe-feature-list>') as LoupeFeatureList;
        el.session = s;
        s.appendAll(c.readouts([seq]));
        await el.updateComplete;
      },
      { seq: SEQ },
    );
    const recent = ranked(SEQ, 8, (sum) => sum, n - 8, n);
    const got = await rows();
    expect(got.map((r) => r.f)).toEqual(recent.map((r) => r.f));
    expect(got.map((r) => r.label)).toEqual(recent.map((r) => labelOf(r.f)));
    expect(got.map((r) => r.value)).toEqual(recent.map((r) => `now ${(r.sum / 8).toFixed(2)}`));
    // Sparkline: the last 48 tokens, the series' maximum at the top (y = 0).
    const first = got[0];
    const rowsSeq = sequenceTokens(ref, SEQ).slice(n - 48);
    const series = rowsSeq.map((r) => act(SEQ, r.idx, first?.f ?? -1));
    const peak = series.indexOf(Math.max(...series));
    expect(first?.points.length).toBe(48);
    expect(first?.points[peak]?.split(',')[1]).toBe('0.0');
    expect(first?.points[series.indexOf(0)]?.split(',')[1]).toBe('16.0');

    await page().locator('loupe-feature-list button', { hasText: 'Whole run' }).click();
    const overall = ranked(SEQ, 8, (sum) => sum);
    const got2 = await rows();
    expect(got2.map((r) => r.f)).toEqual(overall.map((r) => r.f));
    expect(got2.map((r) => r.value)).toEqual(overall.map((r) => `Σ ${r.sum.toFixed(2)} · ${r.count}×`));
    expect(await ev(() => document.querySelector('loupe-feature-list')?.getAttribute('mode'), undefined)).toBe('overall');
  });

  test('listbox keyboard and click select features; the selected attribute marks rows; order holds while focused', async () => {
    await ev(
      async ({ seq }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        const s = c.session();
        c.vars['s'] = s;
        c.vars['rest'] = c.readouts([seq]).slice(60);
        const el = c.stage('<loupe-feature-list mode="overall" limit="6"></loupe-feature-list>') as LoupeFeatureList;
        el.session = s;
        s.appendAll(c.readouts([seq]).slice(0, 60));
        await el.updateComplete;
      },
      { seq: SEQ },
    );
    const before = await rows();
    const listbox = await ev(() => {
      const lb = document.querySelector('loupe-feature-list')?.shadowRoot?.querySelector('[role="listbox"]');
      return [lb?.getAttribute('aria-multiselectable'), lb?.getAttribute('aria-labelledby')];
    }, undefined);
    expect(listbox).toEqual(['true', 'title']);
    await page().locator('loupe-feature-list [role="option"]').first().focus();
    await ev(() => window.__cmp?.events.splice(0), undefined);
    await page().keyboard.press('ArrowDown');
    const active = async (): Promise<number> => ev(() => Number((window.__cmp?.deepActive() as HTMLElement | null)?.dataset['f']), undefined);
    expect(await active()).toBe(before[1]?.f);
    // Tokens keep arriving while the list has focus: the order holds.
    await ev(async () => {
      const c = window.__cmp;
      const s = c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>;
      s.appendAll(c?.vars['rest'] as typeof s.script);
      await document.querySelector('loupe-feature-list')?.updateComplete;
    }, undefined);
    expect((await rows()).map((r) => r.f)).toEqual(before.map((r) => r.f));
    await page().keyboard.press('End');
    expect(await active()).toBe(before[5]?.f);
    await page().keyboard.press('Enter');
    await page().keyboard.press('Home');
    await page().keyboard.press('Shift+Space');
    await page().locator('loupe-feature-list [role="option"]').nth(2).click();
    const events = await ev(() => window.__cmp?.events.splice(0) ?? [], undefined);
    expect(events.map((e) => e.detail)).toEqual([
      { featureId: before[5]?.f, additive: false },
      { featureId: before[0]?.f, additive: true },
      { featureId: before[2]?.f, additive: false },
    ]);
    // Focus and pointer leave: the order follows the whole run again.
    await page().locator('#status').click();
    await page().mouse.move(0, 0);
    const full = ranked(SEQ, 6, (sum) => sum);
    expect((await rows()).map((r) => r.f)).toEqual(full.map((r) => r.f));
    await ev(async (sel) => {
      const el = document.querySelector('loupe-feature-list');
      el?.setAttribute('selected', sel);
      await el?.updateComplete;
    }, `${full[1]?.f} ${full[3]?.f}`);
    expect((await rows()).map((r) => r.selected)).toEqual(full.map((r) => (r.f === full[1]?.f || r.f === full[3]?.f ? 'true' : 'false')));
  });
});

// ---- <loupe-feature-card> ------------------------------------------------------------------

describe('<loupe-feature-card>', () => {
  const FEATURE = 540; // backtracking ("Wait")

  async function card(): Promise<{ header: string; meta: string; stats: string[][]; status: string; busy: string | null; examples: Array<{ meta: string; tokens: Array<[string, string, boolean]> }>; text: string }> {
    return ev(async () => {
      const el = document.querySelector('loupe-feature-card');
      await el?.updateComplete;
      const root = el?.shadowRoot;
      if (root == null) throw new Error('no card');
      return {
        header: root.querySelector('h3')?.textContent?.replace(/\s+/g, ' ').trim() ?? '',
        meta: root.querySelector('.meta')?.textContent ?? '',
        stats: [...root.querySelectorAll('tbody tr')].map((tr) => [...tr.children].map((c) => c.textContent?.trim() ?? '')),
        status: el?.examplesState.status ?? '',
        busy: root.querySelector('[part="examples"]')?.getAttribute('aria-busy') ?? null,
        examples: [...root.querySelectorAll('[part="example"]')].map((li) => ({
          meta: li.querySelector('.ex-meta')?.textContent ?? '',
          tokens: [...li.querySelectorAll<HTMLElement>('.xt')].map((t): [string, string, boolean] => [t.textContent ?? '', t.style.getPropertyValue('--loupe-level'), t.getAttribute('part')?.includes('hit') ?? false]),
        })),
        text: root.textContent?.replace(/\s+/g, ' ') ?? '',
      };
    }, undefined);
  }

  async function waitExamples(status: string): Promise<void> {
    await page().waitForFunction((s) => document.querySelector('loupe-feature-card')?.examplesState.status === s, status, { timeout: 30_000 });
  }

  test('label, quality, statistics by phase and max-activating examples with the hit and context shaded', async () => {
    const seqs = [...new Set(ref.activations.filter((a) => a.feature === FEATURE).map((a) => a.seq))].slice(0, 3);
    await ev(
      async ({ seqs, feature }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        const s = c.session();
        s.appendAll(c.readouts(seqs));
        const el = c.stage(`<loupe-feature-card feature-id="${feature}" example-limit="3" context="4"></loupe-feature-card>`) as LoupeFeatureCard;
        el.session = s;
        await el.updateComplete;
      },
      { seqs, feature: FEATURE },
    );
    await waitExamples('ready');
    const got = await card();
    expect(got.header).toBe(`${labelOf(FEATURE)} #${FEATURE}`);
    const label = ref.labels.find((l) => l.featureId === FEATURE);
    expect(got.meta).toContain(`quality ${label?.quality?.toFixed(2)}`);
    // Statistics over the tokens of those sequences, computed from the CSV.
    const tokens = sequenceReadouts(ref, seqs, acts);
    const stat = (phase?: string): string[] => {
      const vals = tokens.filter((t) => phase === undefined || t.phase === phase).map((t, _) => t).flatMap((t) => {
        const j = [...t.indices].indexOf(FEATURE);
        return j >= 0 ? [t.values[j] ?? 0] : [];
      });
      const name = phase === undefined ? 'All' : PHASE_NAME[phase as 'prompt'];
      return vals.length === 0 ? [name, '0', '—', '—'] : [name, String(vals.length), (vals.reduce((a, b) => a + b, 0) / vals.length).toFixed(2), Math.max(...vals).toFixed(2)];
    };
    expect(got.stats).toEqual([stat(), stat('prompt'), stat('thinking'), stat('answer')]);
    // Examples: strongest first, the window of context, shaded by activation / the strongest shown.
    const expected = examplesOf(ref, FEATURE, 3, 4);
    const scale = Math.max(...expected.flatMap((e) => [e.strength, ...e.tokens.map((t) => t.activation)]));
    expect(got.examples.length).toBe(3);
    got.examples.forEach((ex, i) => {
      const want = expected[i];
      if (want === undefined) throw new Error('missing example');
      expect(ex.meta).toBe(`sequence ${want.sequenceId}, token ${want.tokenIdx} · activation ${want.strength.toFixed(2)}`);
      expect(ex.tokens.map((t) => t[0])).toEqual(want.tokens.map((t) => t.text));
      expect(ex.tokens.map((t) => t[2])).toEqual(want.tokens.map((t) => t.tokenIdx === want.tokenIdx));
      ex.tokens.forEach((t, j) => expect(Number(t[1]), `example ${i} token ${j}`).toBeCloseTo((want.tokens[j]?.activation ?? 0) / scale, 5));
    });
  });

  test('loading, empty, error and out-of-range states; a stale answer never lands', async () => {
    await ev(async () => {
      const c = window.__cmp;
      if (c === undefined) throw new Error('page not ready');
      const s = c.session();
      const cat = s.catalog as InstanceType<typeof c.TablesCatalog>;
      c.vars['cat'] = cat;
      const gates = new Map<number, () => void>();
      c.vars['gates'] = gates;
      cat.gate = (f) => new Promise<void>((resolve) => gates.set(f, resolve));
      const el = c.stage('<loupe-feature-card></loupe-feature-card>') as LoupeFeatureCard;
      el.session = s;
      await el.updateComplete;
    }, undefined);
    expect((await card()).text).toContain('Select a feature to see its label, statistics and examples.');
    // Slow A, then quickly B: B's examples show; A's request was aborted and its answer dropped.
    const A = 540;
    const B = 460;
    await ev(async (f) => {
      const el = document.querySelector('loupe-feature-card');
      if (el === null) throw new Error('no card');
      el.featureId = f;
      await el.updateComplete;
    }, A);
    const loading = await card();
    expect(loading.status).toBe('loading');
    expect(loading.busy).toBe('true');
    expect(loading.text).toContain('Loading examples…');
    await ev(async (f) => {
      const el = document.querySelector('loupe-feature-card');
      if (el === null) throw new Error('no card');
      el.setAttribute('feature-id', String(f));
      await el.updateComplete;
      (window.__cmp?.vars['gates'] as Map<number, () => void>).get(f)?.();
    }, B);
    await waitExamples('ready');
    const aborted = await ev(async (a) => {
      const c = window.__cmp;
      const cat = c?.vars['cat'] as InstanceType<NonNullable<typeof c>['TablesCatalog']>;
      (c?.vars['gates'] as Map<number, () => void>).get(a)?.();
      await new Promise((r) => setTimeout(r, 50));
      return cat.calls.map((x) => [x.featureId, x.signal?.aborted]);
    }, A);
    expect(aborted).toEqual([
      [A, true],
      [B, false],
    ]);
    const shown = await card();
    expect(shown.header).toBe(`${labelOf(B)} #${B}`);
    expect(shown.examples.map((e) => e.meta)).toEqual(examplesOf(ref, B, 5, 5).map((e) => `sequence ${e.sequenceId}, token ${e.tokenIdx} · activation ${e.strength.toFixed(2)}`));

    // A dead feature has no examples.
    expect(ref.activations.some((a) => a.feature === 81)).toBe(false);
    const run = async (f: number, setup: string): Promise<void> =>
      ev(
        async ({ f, setup }) => {
          const c = window.__cmp;
          const cat = c?.vars['cat'] as InstanceType<NonNullable<typeof c>['TablesCatalog']>;
          cat.gate = undefined;
          cat.fail = setup === 'fail' ? (id) => (id === f ? new Error('The example database is offline (HTTP 503).') : undefined) : undefined;
          const el = document.querySelector('loupe-feature-card');
          if (el === null) throw new Error('no card');
          el.featureId = f;
          await el.updateComplete;
        },
        { f, setup },
      );
    await run(81, '');
    await waitExamples('ready');
    let got = await card();
    expect(got.text).toContain('No examples in the catalog for this feature.');
    expect(got.meta).toContain('dead feature');
    await run(94, 'fail');
    await waitExamples('error');
    got = await card();
    expect(got.text).toContain('Could not load examples: The example database is offline (HTTP 503).');
    expect(await ev(() => document.querySelector('loupe-feature-card')?.shadowRoot?.querySelector('[role="alert"]') !== null, undefined)).toBe(true);
    await run(5000, '');
    got = await card();
    expect(got.status).toBe('error');
    expect(got.text).toContain('Feature 5000 is outside this SAE: it has features 0–1023.');
  });
});

// ---- <loupe-steer-panel> -------------------------------------------------------------------

describe('<loupe-steer-panel>', () => {
  /** The generated text (thinking and answer) of a sequence. */
  function generated(seq: number): string {
    const rows = sequenceTokens(ref, seq);
    const phases = phasesOf(rows.map((r) => r.text));
    return rows.filter((_, i) => phases[i] !== 'prompt').map((r) => r.text).join('');
  }

  test('builds a signed plan from the selection and a label search, runs it, and shows side by side', async () => {
    const PROMPT = 'What is 12 × 3 + 6?';
    await ev(
      async ({ prompt }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        const s = c.session();
        c.vars['s'] = s;
        s.script = c.readouts([0]);
        s.baselineScript = c.readouts([1]);
        const el = c.stage('<loupe-steer-panel max-new-tokens="64" max-strength="10" selected="540"></loupe-steer-panel>') as LoupeSteerPanel;
        el.session = s;
        el.prompt = prompt;
        await el.updateComplete;
      },
      { prompt: PROMPT },
    );
    const panel = (sel: string): ReturnType<Page['locator']> => page().locator(`loupe-steer-panel ${sel}`);
    await page().locator('loupe-steer-panel button', { hasText: 'Add selected (#540)' }).click();
    expect(await panel('[part="entry"] .name').first().textContent()).toContain(labelOf(540));
    const slider = panel('input[type="range"]').first();
    await slider.focus();
    await page().keyboard.press('Home');
    for (let i = 0; i < 6; i++) await page().keyboard.press('ArrowRight');
    expect(await panel('[part="entry"] output').first().textContent()).toBe('-7.0');
    expect(await slider.getAttribute('aria-valuetext')).toBe('-7.0');
    // Search the labels: every result matches; adding one puts it in the plan at the default strength.
    await panel('input[type="search"]').fill('WAIT');
    const results = await panel('[part="results"] button').allTextContents();
    const matching = ref.labels.filter((l) => l.label.toLowerCase().includes('wait'));
    expect(results.length).toBe(Math.min(8, matching.length));
    for (const r of results) expect(r.toLowerCase()).toContain('wait');
    const other = matching.map((l) => l.featureId).find((f) => f !== 540 && results.some((r) => r.includes(`#${f}`)));
    expect(other).toBeDefined();
    await panel(`[part="results"] button:has-text("#${other}")`).first().click();
    await panel('label:has-text("At the first answer token") input').check();
    await ev(() => window.__cmp?.events.splice(0), undefined);
    await panel('[part="run-button"]').click();
    await page().waitForFunction(() => (window.__cmp?.vars['s'] as { status?: string } | undefined)?.status === 'done', undefined, { timeout: 30_000 });
    const plan: SteeringPlan = { push: [{ feature: 540, strength: -7 }, { feature: other ?? -1, strength: 4 }], start: 'answer' };
    const calls = await ev(() => {
      const c = window.__cmp;
      const s = c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>;
      return { setSteering: s.calls.setSteering, run: s.calls.run.map((r) => ({ messages: r.messages, maxNewTokens: r.maxNewTokens, steering: r.steering })), events: c?.events.splice(0) ?? [] };
    }, undefined);
    expect(calls.setSteering).toEqual([plan]);
    expect(calls.run).toEqual([{ messages: [{ role: 'user', content: PROMPT }], maxNewTokens: 64, steering: plan }]);
    expect(calls.events.map((e) => [e.type, e.detail])).toEqual([['loupe-steer', { plan, action: 'run' }]]);
    expect(calls.events[0]?.path).toContain('loupe-steer-panel');

    // Side by side: both texts grow live, then the runs' texts stay.
    await ev(() => {
      const c = window.__cmp;
      (c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>).delayMs = 5;
    }, undefined);
    await panel('[part="compare-button"]').click();
    await page().waitForFunction(
      () => {
        const root = document.querySelector('loupe-steer-panel')?.shadowRoot;
        return root?.querySelector('[part="comparison"]')?.getAttribute('aria-busy') === 'true' && (root.querySelector('[part="baseline-text"]')?.textContent ?? '').length > 0;
      },
      undefined,
      { timeout: 30_000 },
    );
    const liveSteered = await panel('[part="steered-text"]').textContent();
    expect(liveSteered).toBe(generated(0));
    expect(generated(1).startsWith((await panel('[part="baseline-text"]').textContent()) ?? '-')).toBe(true);
    await page().waitForFunction(() => document.querySelector('loupe-steer-panel')?.shadowRoot?.querySelector('[part="comparison"]')?.getAttribute('aria-busy') === 'false', undefined, { timeout: 30_000 });
    expect(await panel('[part="steered-text"]').textContent()).toBe(generated(0));
    expect(await panel('[part="baseline-text"]').textContent()).toBe(generated(1));
    const compared = await ev(() => {
      const c = window.__cmp;
      const s = c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>;
      return { sideBySide: s.calls.sideBySide, events: c?.events.splice(0).map((e) => e.detail) ?? [] };
    }, undefined);
    expect(compared.sideBySide).toEqual([{ messages: [{ role: 'user', content: PROMPT }], maxNewTokens: 64 }]);
    expect(compared.events).toEqual([{ plan, action: 'side-by-side' }]);

    // A start position and a clamp.
    await panel('label:has-text("At position") input[type="radio"]').check();
    await panel('input[aria-label="Start position"]').fill('12');
    await panel('input[aria-label="Start position"]').press('Enter');
    await panel(`select[aria-label="How to steer feature ${other}"]`).selectOption('clamp');
    const plan2 = await ev(() => document.querySelector('loupe-steer-panel')?.plan(), undefined);
    expect(plan2).toEqual({ push: [{ feature: 540, strength: -7 }], clamp: [{ feature: other, value: 4 }], start: 12 });

    await panel('[part="clear-button"]').click();
    const cleared = await ev(() => {
      const c = window.__cmp;
      const s = c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>;
      return { steering: s.steering ?? null, events: c?.events.splice(0).map((e) => e.detail) ?? [] };
    }, undefined);
    expect(cleared).toEqual({ steering: null, events: [{ action: 'clear' }] });
  });

  test('side by side is disabled, with the reason, for a session that cannot run the baseline', async () => {
    const why = await ev(async () => {
      const c = window.__cmp;
      if (c === undefined) throw new Error('page not ready');
      const s = c.session();
      Object.defineProperty(s, 'sideBySide', { value: undefined });
      const el = c.stage('<loupe-steer-panel></loupe-steer-panel>') as LoupeSteerPanel;
      el.session = s;
      el.prompt = 'What is 2 + 2?';
      el.addFeature(540);
      await el.updateComplete;
      const root = el.shadowRoot;
      return {
        compare: root?.querySelector<HTMLButtonElement>('[part="compare-button"]')?.disabled,
        run: root?.querySelector<HTMLButtonElement>('[part="run-button"]')?.disabled,
        text: root?.querySelector('#why')?.textContent?.trim(),
      };
    }, undefined);
    expect(why).toEqual({ compare: true, run: false, text: 'Side by side needs a session that can run the unsteered baseline.' });
  });
});

// ---- <loupe-feature-map> -------------------------------------------------------------------

describe('<loupe-feature-map>', () => {
  const SEQ = 0;

  test('draws the map, lights the newest token\'s features, names them in an accessible list, hover and click', async () => {
    const rows = sequenceTokens(ref, SEQ);
    const k = rows.reduce((best, r, i) => (topOf(SEQ, r.idx).length > topOf(SEQ, rows[best]?.idx ?? 0).length ? i : best), 0);
    await ev(
      async ({ seq, k }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        const s = c.session();
        s.appendAll(c.readouts([seq]).slice(0, k + 1));
        const el = c.stage('<loupe-feature-map list-open style="--loupe-map-height:400px"></loupe-feature-map>') as LoupeFeatureMap;
        el.session = s;
        await el.updateComplete;
        await new Promise((r) => requestAnimationFrame(r));
        await el.updateComplete;
      },
      { seq: SEQ, k },
    );
    const active = topOf(SEQ, rows[k]?.idx ?? 0);
    const xy = (f: number): [number, number] => [ref.map[2 * f] ?? NaN, ref.map[2 * f + 1] ?? NaN];
    // The feature's max over the tokens so far.
    const maxSoFar = (f: number): number => Math.max(...rows.slice(0, k + 1).map((r) => act(SEQ, r.idx, f)));
    const list = await ev(() => {
      const root = document.querySelector('loupe-feature-map')?.shadowRoot;
      return {
        options: [...(root?.querySelectorAll('[role="option"]') ?? [])].map((o) => o.textContent?.replace(/\s+/g, ' ').trim() ?? ''),
        canvas: [root?.querySelector('canvas')?.getAttribute('role'), root?.querySelector('canvas')?.getAttribute('aria-label')],
      };
    }, undefined);
    expect(list.options).toEqual(active.map(([f, v]) => `${labelOf(f)} — #${f} at (${xy(f)[0].toFixed(2)}, ${xy(f)[1].toFixed(2)}), activation ${v.toFixed(2)}`));
    expect(list.canvas[0]).toBe('img');
    expect(list.canvas[1]).toContain(`${active.length} active at token ${k}`);

    // Pixels: the strongest feature's dot is the highlight colour; a far corner is empty.
    const [top, value] = active[0] ?? [-1, 0];
    const level = value / maxSoFar(top);
    const px = await ev(
      ({ x, y }) => {
        const canvas = document.querySelector('loupe-feature-map')?.shadowRoot?.querySelector('canvas');
        if (canvas == null) throw new Error('no canvas');
        const dpr = window.devicePixelRatio;
        const w = canvas.clientWidth;
        const h = canvas.clientHeight;
        const cx = 8 + x * (w - 16);
        const cy = 8 + (1 - y) * (h - 16);
        const ctx = canvas.getContext('2d');
        const at = (px: number, py: number): number[] => [...(ctx?.getImageData(Math.round(px * dpr), Math.round(py * dpr), 1, 1).data ?? [])];
        const r = canvas.getBoundingClientRect();
        return { centre: at(cx, cy), corner: at(1, 1), client: [r.left + cx, r.top + cy] };
      },
      { x: xy(top)[0], y: xy(top)[1] },
    );
    const [r, g, b, a] = px.centre;
    expect(Math.abs((r ?? 0) - 249)).toBeLessThan(40);
    expect(Math.abs((g ?? 0) - 115)).toBeLessThan(40);
    expect(b ?? 255).toBeLessThan(90);
    expect(a ?? 0).toBeGreaterThanOrEqual(Math.floor((0.35 + 0.65 * level) * 255) - 12);
    expect(px.corner).toEqual([0, 0, 0, 0]);

    // Hover shows its label; a click selects it.
    await page().mouse.move(px.client[0] ?? 0, px.client[1] ?? 0);
    await ev(async () => document.querySelector('loupe-feature-map')?.updateComplete, undefined);
    const tip = await ev(() => {
      const t = document.querySelector('loupe-feature-map')?.shadowRoot?.querySelector<HTMLElement>('[role="tooltip"]');
      return [t?.hidden, t?.textContent?.replace(/\s+/g, ' ').trim()];
    }, undefined);
    expect(tip).toEqual([false, `${labelOf(top)} #${top}`]);
    await ev(() => window.__cmp?.events.splice(0), undefined);
    await page().mouse.click(px.client[0] ?? 0, px.client[1] ?? 0);
    // Keyboard on the fallback list: second entry, Enter.
    await page().locator('loupe-feature-map [role="option"]').first().focus();
    await page().keyboard.press('ArrowDown');
    await page().keyboard.press('Enter');
    const events = await ev(() => window.__cmp?.events.splice(0).map((e) => e.detail) ?? [], undefined);
    expect(events).toEqual([
      { featureId: top, additive: false },
      { featureId: active[1]?.[0], additive: false },
    ]);
  });

  test('a catalog without a map, or with a broken one, says so', async () => {
    const texts = await ev(async () => {
      const c = window.__cmp;
      if (c === undefined) throw new Error('page not ready');
      const out: string[] = [];
      for (const map of [undefined, new Float32Array(10), Float32Array.from({ length: 2048 }, (_, i) => (i === 7 ? 3 : 0.5))]) {
        const cat = new c.TablesCatalog(c.tables);
        Object.defineProperty(cat, 'map', { value: map });
        const el = c.stage('<loupe-feature-map></loupe-feature-map>') as LoupeFeatureMap;
        el.catalog = cat;
        await el.updateComplete;
        out.push(el.shadowRoot?.textContent?.replace(/\s+/g, ' ').trim() ?? '');
      }
      return out;
    }, undefined);
    expect(texts).toEqual([
      'This catalog has no feature map.',
      "The catalog's map has 10 values; expected 2 × 1024 (x, y per feature).",
      "The catalog's map value 7 is 3; coordinates must lie in [0, 1].",
    ]);
  });
});

// ---- <loupe-session> -----------------------------------------------------------------------

describe('<loupe-session>', () => {
  const SEQ = 0;

  async function mountSession(): Promise<void> {
    await ev(async () => {
      const c = window.__cmp;
      if (c === undefined) throw new Error('page not ready');
      const s = c.session();
      c.vars['s'] = s;
      s.script = c.readouts([0]);
      const el = c.stage('<loupe-session max-new-tokens="32" prompt="What is 12 × 3 + 6?"></loupe-session>') as LoupeSession;
      el.session = s;
      await el.updateComplete;
    }, undefined);
  }

  const inner = async <R>(fn: (root: ShadowRoot) => R | Promise<R>): Promise<R> => {
    const src = fn.toString();
    return ev(async (code) => {
      const el = document.querySelector('loupe-session');
      await el?.updateComplete;
      const root = el?.shadowRoot;
      if (root == null) throw new Error('no session element');
      return (new Function('root', `return (${code})(root);`) as (r: ShadowRoot) => R)(root);
    }, src);
  };

  test('Generate runs the prompt; tokens flow to the stream; the status line follows the session', async () => {
    await mountSession();
    const rows = sequenceTokens(ref, SEQ);
    expect(await inner((root) => root.querySelector('[part~="status"]')?.textContent?.trim())).toBe('Ready.');
    await page().locator('loupe-session [part="generate-button"]').click();
    await page().waitForFunction(() => (window.__cmp?.vars['s'] as { status?: string } | undefined)?.status === 'done', undefined, { timeout: 30_000 });
    const after = await inner((root) => ({
      status: root.querySelector('[part~="status"]')?.textContent?.trim(),
      tokens: root.querySelector('loupe-token-stream')?.shadowRoot?.querySelectorAll('[role="option"]').length,
    }));
    expect(after).toEqual({ status: `Done: ${rows.length} tokens.`, tokens: rows.length });
    const run = await ev(() => {
      const c = window.__cmp;
      const s = c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>;
      return s.calls.run.map((r) => ({ messages: r.messages, maxNewTokens: r.maxNewTokens }));
    }, undefined);
    expect(run).toEqual([{ messages: [{ role: 'user', content: 'What is 12 × 3 + 6?' }], maxNewTokens: 32 }]);

    // Cancel while generating.
    await ev(() => {
      const c = window.__cmp;
      (c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>).delayMs = 30;
    }, undefined);
    await page().locator('loupe-session [part="generate-button"]').click();
    await page().waitForFunction(() => (window.__cmp?.vars['s'] as { status?: string } | undefined)?.status === 'generating', undefined, { timeout: 30_000 });
    await page().locator('loupe-session [part="cancel-button"]').click();
    await page().waitForFunction(() => (window.__cmp?.vars['s'] as { status?: string } | undefined)?.status === 'cancelled', undefined, { timeout: 30_000 });
    const cancelled = await inner((root) => ({
      status: root.querySelector('[part~="status"]')?.textContent?.trim() ?? '',
      tokens: root.querySelector('loupe-token-stream')?.shadowRoot?.querySelectorAll('[role="option"]').length,
    }));
    // The new run replaced the old one in the stream: only its own tokens are shown.
    const m = /^Cancelled after (\d+) tokens\.$/.exec(cancelled.status);
    expect(m).not.toBeNull();
    expect(Number(m?.[1])).toBeLessThan(rows.length);
    expect(cancelled.tokens).toBe(Number(m?.[1]));
    // layout="stacked": one column.
    const columns = await inner(async (root) => {
      const host = root.host as HTMLElement & { updateComplete: Promise<boolean> };
      const before = getComputedStyle(root.querySelector('.main') as Element).gridTemplateColumns.split(' ').length;
      host.setAttribute('layout', 'stacked');
      await host.updateComplete;
      return [before, getComputedStyle(root.querySelector('.main') as Element).gridTemplateColumns.split(' ').length];
    });
    expect(columns).toEqual([2, 1]);
  });

  test('one selection: list, map and stream select; stream shading, card and steer panel follow', async () => {
    await mountSession();
    await ev(async () => {
      const c = window.__cmp;
      const s = c?.vars['s'] as InstanceType<NonNullable<typeof c>['ScriptedSession']>;
      s.appendAll(s.script);
      await document.querySelector('loupe-session')?.updateComplete;
      c?.events.splice(0);
    }, undefined);
    const first = page().locator('loupe-session loupe-feature-list [role="option"]').first();
    const f = Number(await first.getAttribute('data-f'));
    await first.click();
    const state = async (): Promise<{ stream: number[]; m0: string; card: number | undefined; steer: string; map: number[]; heading: string }> =>
      inner((root) => {
        const stream = root.querySelector('loupe-token-stream');
        return {
          stream: [...(stream?.selected ?? [])],
          m0: stream?.shadowRoot?.querySelector<HTMLElement>('[role="listbox"]')?.style.getPropertyValue('--loupe-m0') ?? '',
          card: root.querySelector('loupe-feature-card')?.featureId,
          steer: root.querySelector('loupe-steer-panel')?.shadowRoot?.querySelector('button')?.textContent?.trim() ?? '',
          map: [...(root.querySelector('loupe-feature-map')?.selected ?? [])],
          heading: root.querySelector('loupe-feature-card')?.shadowRoot?.querySelector('h3')?.textContent?.replace(/\s+/g, ' ').trim() ?? '',
        };
      });
    let s = await state();
    const rows = sequenceTokens(ref, SEQ);
    expect(s.stream).toEqual([f]);
    expect(Number(s.m0)).toBeCloseTo(Math.max(...rows.map((r) => act(SEQ, r.idx, f))), 3);
    expect(s.card).toBe(f);
    expect(s.heading).toBe(`${labelOf(f)} #${f}`);
    expect(s.steer).toBe(`Add selected (#${f})`);
    expect(s.map).toEqual([f]);
    // Shift-click adds a second feature.
    const second = page().locator('loupe-session loupe-feature-list [role="option"]').nth(1);
    const g = Number(await second.getAttribute('data-f'));
    await second.click({ modifiers: ['Shift'] });
    s = await state();
    expect(s.stream).toEqual([f, g]);
    expect(s.card).toBe(g);
    // Enter on a token selects its top feature alone.
    const t = rows.findIndex((r) => topOf(SEQ, r.idx).length > 0 && topOf(SEQ, r.idx)[0]?.[0] !== f);
    await page().locator('loupe-session loupe-token-stream [role="option"]').nth(t).focus();
    await page().keyboard.press('Enter');
    s = await state();
    const top = topOf(SEQ, rows[t]?.idx ?? 0)[0]?.[0];
    expect(s.stream).toEqual([top]);
    const events = await ev(() => window.__cmp?.events.splice(0) ?? [], undefined);
    const selections = events.filter((e) => e.type === 'loupe-selection').map((e) => e.detail);
    expect(selections).toEqual([{ selected: [f] }, { selected: [f, g] }, { selected: [top] }]);
    // loupe-select is composed: the document hears it from inside <loupe-session>'s shadow root.
    const select = events.find((e) => e.type === 'loupe-select');
    expect(select?.path).toEqual(expect.arrayContaining(['loupe-feature-list', 'loupe-session', 'body', 'html']));
  });

  test('status line: unsupported with its message, and WebGPU missing', async () => {
    const browser = chrome?.browser;
    if (browser === undefined) throw new Error('no browser');
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    try {
      await context.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
      });
      const p = await context.newPage();
      await openPage(p);
      const text = await withTimeout(
        p.evaluate(async () => {
          const c = window.__cmp;
          if (c === undefined) throw new Error('page not ready');
          const s = c.session();
          const el = c.stage('<loupe-session></loupe-session>') as LoupeSession;
          el.session = s;
          s.setStatus('unsupported', 'This SAE (65,536 × 7,168) is too large for the CPU fallback.');
          await el.updateComplete;
          const root = el.shadowRoot;
          return {
            status: root?.querySelector('[part~="status"]')?.textContent?.trim(),
            role: root?.querySelector('[part~="status"]')?.getAttribute('role'),
            generate: root?.querySelector<HTMLButtonElement>('[part="generate-button"]')?.disabled,
          };
        }),
        60_000,
        'unsupported status',
      );
      expect(text).toEqual({
        status:
          'Not supported in this browser: This SAE (65,536 × 7,168) is too large for the CPU fallback. WebGPU is not available in this browser (navigator.gpu is missing): use a recent Chrome or Edge, or enable WebGPU in Firefox or Safari.',
        role: 'status',
        generate: true,
      });
    } finally {
      await context.close();
    }
  });
});

// ---- hostile text --------------------------------------------------------------------------

describe('untrusted text', () => {
  test('a label, a token, an example and a status message of "<img onerror>" render as text in every element', async () => {
    const FEATURE = 696;
    const result = await ev(
      async ({ hostile, feature }) => {
        const c = window.__cmp;
        if (c === undefined) throw new Error('page not ready');
        delete window.__pwned;
        const s = c.session();
        const cat = s.catalog as InstanceType<typeof c.TablesCatalog>;
        cat.setLabel({ featureId: feature, label: hostile, quality: 0.5, dead: false });
        const base = c.readouts([0]);
        const evil = { ...base[base.length - 1], position: base.length, text: hostile, indices: Uint32Array.of(feature), values: Float32Array.of(9) } as (typeof base)[number];
        cat.gate = undefined;
        const real = cat.examples.bind(cat);
        cat.examples = async (f, q) => {
          const ex = await real(f, q);
          return ex.map((e) => ({ ...e, tokens: e.tokens.map((t) => (t.tokenIdx === e.tokenIdx ? { ...t, text: hostile } : t)) }));
        };
        const el = c.stage('<loupe-session></loupe-session>') as LoupeSession;
        el.session = s;
        s.appendAll([...base, evil]);
        el.selected = [feature];
        await el.updateComplete;
        const root = el.shadowRoot;
        if (root === null) throw new Error('no shadow root');
        // Focus the hostile token (tooltip), search the label in the steer panel, wait for the card's examples.
        const list = root.querySelector('loupe-feature-list');
        if (list !== null) list.mode = 'overall';
        const stream = root.querySelector('loupe-token-stream');
        stream?.focusToken(base.length);
        const panel = root.querySelector('loupe-steer-panel');
        const search = panel?.shadowRoot?.querySelector<HTMLInputElement>('input[type="search"]');
        if (search == null) throw new Error('no search box');
        search.value = 'img';
        search.dispatchEvent(new Event('input'));
        const card = root.querySelector('loupe-feature-card');
        for (let i = 0; i < 100 && card?.examplesState.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 20));
        s.setStatus('error', hostile);
        await el.updateComplete;
        await stream?.updateComplete;
        await new Promise((r) => setTimeout(r, 50));
        const text = (sel: string): string[] => c.deepQueryAll(root, sel).map((n) => n.textContent ?? '');
        return {
          imgs: c.deepQueryAll(document, 'img').length,
          pwned: window.__pwned ?? null,
          token: text('[role="option"][aria-posinset]').filter((t) => t.includes('<img')),
          tooltip: text('.tip li'),
          // (Selectors stay inside one shadow root each.)
          list: text('.name[part="label"]'),
          cardHeader: text('h3'),
          example: text('.xt.hit'),
          map: text('details [role="option"]'),
          steer: text('[part="results"] button'),
          status: text('[part~="status"]'),
        };
      },
      { hostile: HOSTILE, feature: FEATURE },
    );
    expect(result.imgs).toBe(0);
    expect(result.pwned).toBeNull();
    expect(result.token).toEqual([HOSTILE]);
    expect(result.tooltip.some((t) => t.includes(HOSTILE))).toBe(true);
    expect(result.list.filter((t) => t === HOSTILE).length, JSON.stringify(result.list)).toBe(1);
    expect(result.cardHeader.some((t) => t.includes(HOSTILE))).toBe(true);
    expect(result.example.length).toBeGreaterThan(0);
    for (const t of result.example) expect(t).toBe(HOSTILE);
    expect(result.map.some((t) => t.includes(HOSTILE))).toBe(true);
    expect(result.steer.some((t) => t.includes(HOSTILE))).toBe(true);
    expect(result.status.some((t) => t.includes(HOSTILE))).toBe(true);
    // Give an image (had one been created) time to fail and run its handler.
    await new Promise((r) => setTimeout(r, 200));
    expect(await ev(() => window.__pwned ?? null, undefined)).toBeNull();
  });
});
