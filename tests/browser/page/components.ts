/**
 * The component tests' page: defines Loupe's elements and publishes `window.__cmp` — Tiny-R1's
 * example tables, a scripted session (a real ReadoutStore fed with Tiny-R1's tokens and codes)
 * and a catalog over the same tables — for tests/browser/components.test.ts to mount elements
 * with.
 */
import '../../../src/components/index.js';
import { ReadoutStore } from '../../../src/session/store.js';
import type { TokenReadout } from '../../../src/session/types.js';
import { activationIndex, loadTables, sequenceReadouts, sequencesFor, type TinyR1Tables } from './components-data.js';
import { ScriptedSession, TablesCatalog } from './components-session.js';

/** Every element matching `selector` under `root`, inside open shadow roots too. */
function deepQueryAll(root: ParentNode, selector: string): Element[] {
  const out: Element[] = [...root.querySelectorAll(selector)];
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot !== null) out.push(...deepQueryAll(el.shadowRoot, selector));
  return out;
}

/** The element with focus, through shadow roots. */
function deepActive(): Element | null {
  let el: Element | null = document.activeElement;
  while (el?.shadowRoot?.activeElement != null) el = el.shadowRoot.activeElement;
  return el;
}

const tables = await loadTables();
const index = activationIndex(tables);

export interface ComponentsApi {
  readonly tables: TinyR1Tables;
  readonly ScriptedSession: typeof ScriptedSession;
  readonly TablesCatalog: typeof TablesCatalog;
  readonly ReadoutStore: typeof ReadoutStore;
  readouts(seqs: readonly number[]): TokenReadout[];
  sequencesFor(n: number): number[];
  /** A fresh catalog and a session holding nothing yet. */
  session(): ScriptedSession;
  /** Replaces the stage's content with `html` (static markup: attributes only) and returns its first element. */
  stage(html: string): HTMLElement;
  deepQueryAll(root: ParentNode, selector: string): Element[];
  deepActive(): Element | null;
  /** loupe-select / loupe-steer / loupe-selection events heard on document. */
  readonly events: Array<{ type: string; detail: unknown; path: string[] }>;
  /** Tests may keep objects here between evaluate calls. */
  readonly vars: Record<string, unknown>;
}

const events: ComponentsApi['events'] = [];
for (const type of ['loupe-select', 'loupe-steer', 'loupe-selection']) {
  document.addEventListener(type, (e) => {
    events.push({ type, detail: (e as CustomEvent).detail, path: e.composedPath().map((n) => (n instanceof Element ? n.localName : String(n))) });
  });
}

declare global {
  interface Window {
    __cmp?: ComponentsApi;
    __pwned?: number;
  }
}

window.__cmp = {
  tables,
  ScriptedSession,
  TablesCatalog,
  ReadoutStore,
  readouts: (seqs) => sequenceReadouts(tables, seqs, index),
  sequencesFor: (n) => sequencesFor(tables, n),
  session: () => new ScriptedSession(new TablesCatalog(tables)),
  stage(html) {
    const stage = document.getElementById('stage');
    if (stage === null) throw new Error('the page lacks #stage');
    stage.innerHTML = html;
    const first = stage.firstElementChild;
    if (!(first instanceof HTMLElement)) throw new Error('stage(): the markup has no element');
    return first;
  },
  deepQueryAll,
  deepActive,
  events,
  vars: {},
};
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
