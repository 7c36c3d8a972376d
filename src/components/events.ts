/**
 * The events Loupe's elements dispatch. All bubble and are composed, so a listener on the page
 * (or on `<loupe-session>`) hears them from inside any shadow root.
 */
import type { SteeringPlan } from '../steer/plan.js';

/** `loupe-select`: the reader picked a feature (a list row, a map point, a token's top feature). */
export interface LoupeSelectDetail {
  readonly featureId: number;
  /** Shift, Ctrl or ⌘ was held: add to (or remove from) the selection instead of replacing it. */
  readonly additive: boolean;
}

/** `loupe-steer`: the steer panel set (or cleared) the session's steering plan. */
export interface LoupeSteerDetail {
  readonly plan: SteeringPlan | undefined;
  /** What the reader asked for: a steered run, a side-by-side comparison, or no steering. */
  readonly action: 'run' | 'side-by-side' | 'clear';
}

/** `loupe-selection`: `<loupe-session>`'s shared selection changed. */
export interface LoupeSelectionDetail {
  readonly selected: readonly number[];
}

declare global {
  interface HTMLElementEventMap {
    'loupe-select': CustomEvent<LoupeSelectDetail>;
    'loupe-steer': CustomEvent<LoupeSteerDetail>;
    'loupe-selection': CustomEvent<LoupeSelectionDetail>;
  }
}

/** Dispatches a bubbling, composed CustomEvent from `host`. */
export function emit<K extends 'loupe-select' | 'loupe-steer' | 'loupe-selection'>(
  host: HTMLElement,
  type: K,
  detail: HTMLElementEventMap[K]['detail'],
): boolean {
  return host.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
}

/** Whether a pointer or key event asks for an additive selection. */
export function isAdditive(e: MouseEvent | KeyboardEvent): boolean {
  return e.shiftKey || e.ctrlKey || e.metaKey;
}
