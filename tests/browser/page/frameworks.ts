/**
 * Loupe's elements mounted the way React 19 and Vue 3 apps mount them: React passes `session` as
 * a property (it does for custom elements that define one) and listens with `onloupe-select`;
 * Vue's `h()` sets known DOM properties and listens with `onLoupe-select`. Each gets its own
 * scripted session (a real ReadoutStore over Tiny-R1's tokens and codes) and catalog.
 */
import { createElement, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { flushSync } from 'react-dom';
import { createApp, h, ref } from 'vue';
import '../../../src/components/index.js';
import type { TokenReadout } from '../../../src/session/types.js';
import { activationIndex, loadTables, sequenceReadouts, sequencesFor } from './components-data.js';
import { ScriptedSession, TablesCatalog } from './components-session.js';

const tables = await loadTables();
const index = activationIndex(tables);
const tokens: TokenReadout[] = sequenceReadouts(tables, sequencesFor(tables, 1), index);

export interface FrameworksApi {
  readonly tokens: number;
  /** Feature ids the framework's own handler received from `loupe-select`, per framework. */
  readonly selected: { react: number[]; vue: number[] };
  mount(): void;
  /** Streams the scripted tokens into both sessions. */
  feed(): void;
}

const selected: FrameworksApi['selected'] = { react: [], vue: [] };
const reactSession = new ScriptedSession(new TablesCatalog(tables));
const vueSession = new ScriptedSession(new TablesCatalog(tables));

function ReactApp(): ReturnType<typeof createElement> {
  const [prompt] = useState('What is 12 × 4 - 7?');
  return createElement('loupe-session', {
    id: 'in-react',
    session: reactSession,
    prompt,
    'no-map': true,
    'onloupe-select': (e: Event) => selected.react.push((e as CustomEvent<{ featureId: number }>).detail.featureId),
  });
}

function mount(): void {
  const reactRoot = document.getElementById('react-root');
  const vueRoot = document.getElementById('vue-root');
  if (reactRoot === null || vueRoot === null) throw new Error('page lacks its roots');
  const root = createRoot(reactRoot);
  flushSync(() => root.render(createElement(ReactApp)));
  const prompt = ref('What is 12 × 4 - 7?');
  createApp({
    setup: () => () =>
      h('loupe-session', {
        id: 'in-vue',
        session: vueSession,
        prompt: prompt.value,
        'no-map': '',
        'onLoupe-select': (e: Event) => selected.vue.push((e as CustomEvent<{ featureId: number }>).detail.featureId),
      }),
  }).mount(vueRoot);
}

declare global {
  interface Window {
    __fw?: FrameworksApi;
  }
}

window.__fw = {
  tokens: tokens.length,
  selected,
  mount,
  feed: () => {
    reactSession.appendAll(tokens);
    vueSession.appendAll(tokens);
  },
};
const status = document.getElementById('status');
if (status !== null) status.textContent = 'ready';
