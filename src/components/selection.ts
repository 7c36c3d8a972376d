/**
 * Feature selection shared by the elements: which features shade the token stream, fill the card
 * and seed the steer panel. Pure functions; the elements hold the state.
 */
import type { ComplexAttributeConverter } from 'lit';

/** Features shaded at once in the token stream (one colour each: --loupe-highlight, -2, -3). */
export const MAX_SHADED = 3;

/**
 * The selection after the reader picks `featureId`: alone, or — `additive` — toggled in or out
 * of the current selection, keeping the `limit` most recent picks.
 */
export function nextSelection(current: readonly number[], featureId: number, additive: boolean, limit = MAX_SHADED): number[] {
  if (!additive) return [featureId];
  if (current.includes(featureId)) return current.filter((f) => f !== featureId);
  return [...current, featureId].slice(-limit);
}

/** A feature id as the elements accept it: a non-negative integer. */
export function isFeatureId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/**
 * `selected="540 725"` (spaces or commas) ⇄ `[540, 725]`. Entries that are not non-negative
 * integers are dropped: an attribute typo must not take the element down.
 */
export const featureIdsConverter: ComplexAttributeConverter<readonly number[]> = {
  fromAttribute(value: string | null): readonly number[] {
    if (value === null) return [];
    return value
      .split(/[\s,]+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number)
      .filter(isFeatureId);
  },
  toAttribute(value: readonly number[]): string {
    return value.join(' ');
  },
};

/** `feature-id="540"` → 540; anything else → undefined (no feature). */
export const featureIdConverter: ComplexAttributeConverter<number | undefined> = {
  fromAttribute(value: string | null): number | undefined {
    if (value === null || !/^\s*\d+\s*$/.test(value)) return undefined;
    return Number(value);
  },
  toAttribute(value: number | undefined): string | null {
    return value === undefined ? null : String(value);
  },
};
