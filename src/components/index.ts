/**
 * Loupe's custom elements. Importing this module defines them all (where `customElements`
 * exists); `defineLoupeElements()` does the same explicitly, e.g. after a bundler dropped the
 * import as side-effect free, or into a scoped registry.
 *
 *   <loupe-session>       everything wired to one session
 *   <loupe-token-stream>  the generated text, shaded by the selected features
 *   <loupe-feature-list>  features most active now / over the run
 *   <loupe-feature-card>  one feature: label, statistics, examples
 *   <loupe-steer-panel>   steering plan, steered and side-by-side runs
 *   <loupe-feature-map>   the catalog's 2-D feature map, lit by the active features
 */
import { LoupeFeatureCard } from './feature-card.js';
import { LoupeFeatureList } from './feature-list.js';
import { LoupeFeatureMap } from './feature-map.js';
import { LoupeSession } from './loupe-session.js';
import { LoupeSteerPanel } from './steer-panel.js';
import { LoupeTokenStream } from './token-stream.js';

export { LoupeFeatureCard, exampleScale, type ExamplesState } from './feature-card.js';
export { LoupeFeatureList, type FeatureListMode } from './feature-list.js';
export { LoupeFeatureMap, mapToCanvas, mapProblem, MAP_PADDING, type ActiveFeature } from './feature-map.js';
export { LoupeSession, statusText, type SessionLayout } from './loupe-session.js';
export { LoupeSteerPanel, describePlan, isComparingSession, type SteerEntry, type SteerStartChoice } from './steer-panel.js';
export { LoupeTokenStream } from './token-stream.js';
export type { LoupeSelectDetail, LoupeSteerDetail, LoupeSelectionDetail } from './events.js';
export { nextSelection, MAX_SHADED } from './selection.js';

/** Tag names and their classes. */
export const LOUPE_ELEMENTS = {
  'loupe-token-stream': LoupeTokenStream,
  'loupe-feature-list': LoupeFeatureList,
  'loupe-feature-card': LoupeFeatureCard,
  'loupe-steer-panel': LoupeSteerPanel,
  'loupe-feature-map': LoupeFeatureMap,
  'loupe-session': LoupeSession,
} as const;

/** Defines every Loupe element in `registry` (default: the page's), skipping tags already defined. */
export function defineLoupeElements(registry: CustomElementRegistry = customElements): void {
  for (const [tag, cls] of Object.entries(LOUPE_ELEMENTS)) {
    if (registry.get(tag) === undefined) registry.define(tag, cls);
  }
}

if (typeof customElements !== 'undefined') defineLoupeElements();
