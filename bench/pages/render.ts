/**
 * The render benchmark's page (../render.ts drives it): appends Tiny-R1's tokens one at a time
 * to the elements and times each append until the DOM is updated and laid out.
 *
 *   virtual  <loupe-token-stream> + <loupe-feature-list>     (the shipped, virtualised stream)
 *   naive    <naive-token-stream> + <loupe-feature-list>     (every token in the DOM, re-rendered)
 *   session  <loupe-session>: stream, list, card, map and steer panel
 */
import type { LitElement } from 'lit';
import '../../src/components/index.js';
import type { TokenReadout } from '../../src/session/types.js';
import { activationIndex, loadTables, sequenceReadouts, sequencesFor } from '../../tests/browser/page/components-data.js';
import { ScriptedSession, TablesCatalog } from '../../tests/browser/page/components-session.js';
import './naive-stream.js';

export type RenderKind = 'virtual' | 'naive' | 'session';

export interface RenderRun {
  readonly kind: RenderKind;
  /** ms from append to updated and laid out, per token. */
  readonly perTokenMs: number[];
  /** Token spans in the DOM at the end, and the text of the last one (checked against the stream). */
  readonly domTokens: number;
  readonly lastText: string;
  readonly expectedLastText: string;
}

declare global {
  interface Window {
    __renderBench?: (kind: RenderKind, tokens: number, selected: number[]) => Promise<RenderRun>;
    __renderInfo?: { userAgent: string; cores: number; dpr: number; litDev: boolean };
  }
}

const tables = await loadTables('/');
const index = activationIndex(tables);
const all: TokenReadout[] = sequenceReadouts(tables, sequencesFor(tables, 5000), index);

/** Lets the page paint now and then, as it would between streamed tokens. */
const frame = (): Promise<void> => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));

function mount(kind: RenderKind, session: ScriptedSession, selected: number[]): { elements: LitElement[]; tokenRoot: () => ShadowRoot | null } {
  const stage = document.getElementById('stage');
  if (stage === null) throw new Error('the page lacks #stage');
  stage.replaceChildren();
  if (kind === 'session') {
    const el = document.createElement('loupe-session');
    el.session = session;
    el.selected = selected;
    stage.append(el);
    return { elements: [el], tokenRoot: () => el.shadowRoot?.querySelector('loupe-token-stream')?.shadowRoot ?? null };
  }
  const pair = document.createElement('div');
  pair.className = 'pair';
  const stream = document.createElement(kind === 'virtual' ? 'loupe-token-stream' : 'naive-token-stream');
  stream.session = session;
  stream.selected = selected;
  const list = document.createElement('loupe-feature-list');
  list.session = session;
  pair.append(stream, list);
  stage.append(pair);
  return { elements: [stream, list], tokenRoot: () => stream.shadowRoot };
}

window.__renderBench = async (kind, n, selected) => {
  const tokens = all.slice(0, n);
  if (tokens.length < n) throw new Error(`Tiny-R1's tables hold ${all.length} tokens; asked for ${n}.`);
  const session = new ScriptedSession(new TablesCatalog(tables));
  const { elements, tokenRoot } = mount(kind, session, selected);
  for (const el of elements) await el.updateComplete;
  await frame();
  const perTokenMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = tokens[i];
    if (t === undefined) break;
    const t0 = performance.now();
    session.append(t);
    for (const el of elements) await el.updateComplete;
    // Forces style and layout of the whole page (the virtual stream already did, measuring its chunks).
    void document.documentElement.offsetHeight;
    perTokenMs.push(performance.now() - t0);
    if (i % 32 === 31) await frame();
  }
  const spans = tokenRoot()?.querySelectorAll('[data-i]') ?? [];
  return {
    kind,
    perTokenMs,
    domTokens: spans.length,
    lastText: spans[spans.length - 1]?.textContent ?? '',
    expectedLastText: tokens[tokens.length - 1]?.text ?? '',
  };
};

window.__renderInfo = {
  userAgent: navigator.userAgent,
  cores: navigator.hardwareConcurrency,
  dpr: window.devicePixelRatio,
  // Lit's development build announces itself on globalThis.litIssuedWarnings.
  litDev: (globalThis as { litIssuedWarnings?: Set<unknown> }).litIssuedWarnings !== undefined,
};
