/**
 * Text shown for numbers, labels and tokens. Labels and token pieces are untrusted strings: they
 * are always rendered through Lit text bindings, never as markup; these helpers only choose
 * which text.
 */
import type { FeatureCatalog, FeatureLabel } from '../features/types.js';

/** An activation or statistic with two decimals ("10.87", "-3.00"). */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return v.toFixed(2);
}

/** A signed strength ("+4.0", "-2.5", "0.0"). */
export function formatStrength(v: number): string {
  const s = v.toFixed(1);
  return v > 0 ? `+${s}` : s;
}

/** The catalog's label of a feature, or "feature N" when the catalog has none. */
export function featureName(catalog: FeatureCatalog | undefined, featureId: number): string {
  const label: FeatureLabel | undefined = catalog?.label(featureId);
  return label === undefined || label.label === '' ? `feature ${featureId}` : label.label;
}

const WHITESPACE_NAMES: Readonly<Record<string, string>> = { '\n': 'newline', ' ': 'space', '\t': 'tab', '\r': 'carriage return' };

/**
 * A spoken name for a token made only of whitespace (its visible text is empty to a screen
 * reader): "newline", "2 spaces", "newline, space". Undefined for any other token.
 */
export function whitespaceName(text: string): string | undefined {
  if (text === '') return 'empty token';
  if (text.trim() !== '') return undefined;
  const parts: string[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i] ?? '';
    let n = 1;
    while (text[i + n] === ch) n++;
    const name = WHITESPACE_NAMES[ch] ?? 'whitespace';
    parts.push(n === 1 ? name : `${n} ${name}s`);
    i += n;
  }
  return parts.join(', ');
}

/** The phase as a reader sees it. */
export function phaseName(phase: 'prompt' | 'thinking' | 'answer'): string {
  return phase === 'prompt' ? 'Prompt' : phase === 'thinking' ? 'Thinking' : 'Answer';
}
