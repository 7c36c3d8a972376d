/**
 * `<loupe-feature-card>`: one feature in detail — label, quality, this run's statistics by phase,
 * and its max-activating examples from the catalog.
 */
import { LitElement, css, html, nothing, type PropertyDeclarations, type TemplateResult } from 'lit';
import type { FeatureCatalog, FeatureExample } from '../features/types.js';
import type { FeatureStats, Readouts, SessionLike } from '../session/types.js';
import { featureName, formatValue } from './format.js';
import { featureIdConverter, isFeatureId } from './selection.js';
import { SessionController } from './session-controller.js';
import { themeStyles } from './theme.js';

/** Where the examples of the current feature stand. */
export type ExamplesState =
  | { readonly status: 'idle' }
  | { readonly status: 'loading'; readonly featureId: number }
  | { readonly status: 'ready'; readonly featureId: number; readonly examples: readonly FeatureExample[] }
  | { readonly status: 'error'; readonly featureId: number; readonly message: string };

interface LoadKey {
  readonly catalog: FeatureCatalog | undefined;
  readonly featureId: number | undefined;
  readonly limit: number;
  readonly context: number;
}

/**
 * One feature: its catalog label and quality, its statistics over the tokens so far (count, mean
 * and max, overall and per phase) and its max-activating examples, each with the hit token and
 * its context shaded by the feature's activation (relative to the strongest token shown).
 *
 * Examples load asynchronously (`FeatureCatalog.examples`); when the feature changes while they
 * load, the old request is aborted and its result, should it still arrive, is dropped — only the
 * current feature's examples ever land. States: no feature selected, loading, loaded, no
 * examples, error.
 *
 *
 * @tag loupe-feature-card
 * @csspart header - Label, id and quality.
 * @csspart label - The label text.
 * @csspart stats - The statistics table.
 * @csspart examples - The examples section.
 * @csspart example - One example.
 * @csspart example-token - A token of an example; the hit also has the part `hit`.
 * @csspart hit - The token the example is about.
 * @csspart empty - The text shown when there is nothing to show.
 * @cssprop --loupe-highlight - Shade of example tokens.
 * @cssprop --loupe-hit-outline - Outline of the hit token (default: --loupe-accent).
 * @cssprop --loupe-error - Colour of error messages.
 */
export class LoupeFeatureCard extends LitElement {
  static override properties: PropertyDeclarations = {
    featureId: { converter: featureIdConverter, attribute: 'feature-id' },
    session: { attribute: false },
    readouts: { attribute: false },
    catalog: { attribute: false },
    exampleLimit: { type: Number, attribute: 'example-limit' },
    context: { type: Number },
  };

  static override styles = [
    themeStyles,
    css`
      :host {
        display: block;
        font-size: 0.9rem;
      }
      h3 {
        margin: 0 0 0.25rem;
        font-size: 1rem;
        overflow-wrap: anywhere;
      }
      h4 {
        margin: 0.75rem 0 0.25rem;
        font-size: 0.9rem;
      }
      .fid {
        color: var(--_muted);
        font-weight: normal;
      }
      .meta {
        color: var(--_muted);
        font-size: 0.8rem;
      }
      table {
        border-collapse: collapse;
        margin-top: 0.5rem;
        font-variant-numeric: tabular-nums;
      }
      th,
      td {
        padding: 0.1rem 0.6rem 0.1rem 0;
        text-align: right;
      }
      th:first-child,
      td:first-child {
        text-align: left;
      }
      ol {
        margin: 0;
        padding-left: 1.5rem;
      }
      li {
        margin-bottom: 0.4rem;
      }
      .ex-meta {
        color: var(--_muted);
        font-size: 0.75rem;
      }
      .ex-text {
        white-space: pre-wrap;
        overflow-wrap: anywhere;
        font-family: var(--loupe-stream-font, ui-monospace, monospace);
        font-size: 0.85rem;
      }
      .xt {
        border-radius: 2px;
        background-color: color-mix(in srgb, var(--_h0) calc(var(--loupe-level, 0) * 100%), transparent);
      }
      .xt.hit {
        outline: 1px solid var(--loupe-hit-outline, var(--_accent));
        font-weight: 600;
      }
    `,
  ];

  /** The feature shown (attribute `feature-id`); undefined shows the empty state. */
  declare featureId: number | undefined;
  /** Session providing readouts (statistics) and catalog, unless those are set. */
  declare session: SessionLike | undefined;
  /** Readouts for the statistics instead of the session's. */
  declare readouts: Readouts | undefined;
  /** Catalog for label and examples instead of the session's. */
  declare catalog: FeatureCatalog | undefined;
  /** Examples to show (attribute `example-limit`, default 5). */
  declare exampleLimit: number;
  /** Context tokens each side of an example's hit (default 5). */
  declare context: number;

  readonly #source = new SessionController(this, ['token', 'reset']);
  #examples: ExamplesState = { status: 'idle' };
  #key: LoadKey | undefined;
  #call = 0;
  #abort: AbortController | undefined;

  constructor() {
    super();
    this.featureId = undefined;
    this.session = undefined;
    this.readouts = undefined;
    this.catalog = undefined;
    this.exampleLimit = 5;
    this.context = 5;
  }

  /** The examples' state (for hosts that want to wait on it). */
  get examplesState(): ExamplesState {
    return this.#examples;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    // Detaching aborted the load; coming back loads again.
    if (this.#key === undefined && this.hasUpdated) this.requestUpdate();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#abort?.abort();
    this.#abort = undefined;
    this.#key = undefined;
  }

  protected override willUpdate(): void {
    const key: LoadKey = {
      catalog: this.#source.catalog,
      featureId: this.featureId,
      limit: Number.isInteger(this.exampleLimit) && this.exampleLimit > 0 ? this.exampleLimit : 5,
      context: Number.isInteger(this.context) && this.context >= 0 ? this.context : 5,
    };
    const k = this.#key;
    if (k === undefined || k.catalog !== key.catalog || k.featureId !== key.featureId || k.limit !== key.limit || k.context !== key.context) {
      this.#key = key;
      this.#load(key);
    }
  }

  /** The feature's range check: undefined when fine, else why not. */
  #outOfRange(f: number): string | undefined {
    const size = this.#source.catalog?.size ?? this.#source.readouts?.dSae;
    if (!isFeatureId(f)) return `Feature ${String(f)} is not a feature id: expected a non-negative integer.`;
    if (size !== undefined && f >= size) return `Feature ${f} is outside this SAE: it has features 0–${size - 1}.`;
    return undefined;
  }

  #load(key: LoadKey): void {
    this.#abort?.abort();
    this.#abort = undefined;
    const call = ++this.#call;
    const f = key.featureId;
    if (f === undefined || key.catalog === undefined) {
      this.#examples = { status: 'idle' };
      return;
    }
    const bad = this.#outOfRange(f);
    if (bad !== undefined) {
      this.#examples = { status: 'error', featureId: f, message: bad };
      return;
    }
    const abort = new AbortController();
    this.#abort = abort;
    this.#examples = { status: 'loading', featureId: f };
    const land = (state: ExamplesState): void => {
      // A stale answer (the feature changed, or the element was detached) never lands.
      if (call !== this.#call || abort.signal.aborted) return;
      this.#examples = state;
      this.#abort = undefined;
      this.requestUpdate();
    };
    let pending: Promise<FeatureExample[]>;
    try {
      pending = key.catalog.examples(f, { limit: key.limit, window: key.context, signal: abort.signal });
    } catch (err) {
      pending = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    pending.then(
      (examples) => land({ status: 'ready', featureId: f, examples }),
      (err: unknown) => land({ status: 'error', featureId: f, message: err instanceof Error ? err.message : String(err) }),
    );
  }

  protected override render(): TemplateResult {
    const f = this.featureId;
    if (f === undefined) return html`<p class="muted" part="empty">Select a feature to see its label, statistics and examples.</p>`;
    const catalog = this.#source.catalog;
    const label = catalog?.label(f);
    const meta: string[] = [];
    if (label?.quality !== undefined) meta.push(`quality ${label.quality.toFixed(2)}`);
    if (label?.interestingness !== undefined) meta.push(`interestingness ${label.interestingness.toFixed(2)}`);
    if (label?.dead === true) meta.push('dead feature');
    const bad = this.#outOfRange(f);
    return html`<article aria-labelledby="h">
      <header part="header">
        <h3 id="h"><span part="label">${featureName(catalog, f)}</span> <span class="fid">#${f}</span></h3>
        ${meta.length > 0 ? html`<div class="meta">${meta.join(' · ')}</div>` : nothing}
        ${catalog === undefined ? html`<div class="meta">No feature catalog: labels and examples are unavailable.</div>` : nothing}
      </header>
      ${bad === undefined ? this.#renderStats(f) : nothing} ${this.#renderExamples(catalog)}
    </article>`;
  }

  #renderStats(f: number): TemplateResult | typeof nothing {
    const readouts = this.#source.readouts;
    if (readouts === undefined) return nothing;
    const s: FeatureStats = readouts.stats(f);
    const row = (name: string, v: { readonly count: number; readonly sum: number; readonly max: number }): TemplateResult =>
      html`<tr>
        <th scope="row">${name}</th>
        <td>${v.count}</td>
        <td>${v.count > 0 ? formatValue(v.sum / v.count) : '—'}</td>
        <td>${v.count > 0 ? formatValue(v.max) : '—'}</td>
      </tr>`;
    return html`<table part="stats">
      <caption class="sr-only">
        Feature ${f} over this run's ${readouts.tokens.length} tokens
      </caption>
      <thead>
        <tr>
          <th scope="col">Phase</th>
          <th scope="col">Tokens</th>
          <th scope="col">Mean</th>
          <th scope="col">Max</th>
        </tr>
      </thead>
      <tbody>
        ${row('All', s)} ${row('Prompt', s.byPhase.prompt)} ${row('Thinking', s.byPhase.thinking)} ${row('Answer', s.byPhase.answer)}
      </tbody>
    </table>`;
  }

  #renderExamples(catalog: FeatureCatalog | undefined): TemplateResult | typeof nothing {
    if (catalog === undefined) return nothing;
    const st = this.#examples;
    let body: TemplateResult;
    switch (st.status) {
      case 'idle':
        return nothing;
      case 'loading':
        body = html`<p role="status" class="muted">Loading examples…</p>`;
        break;
      case 'error':
        body = html`<p role="alert" class="error">Could not load examples: ${st.message}</p>`;
        break;
      case 'ready': {
        const scale = exampleScale(st.examples);
        body =
          st.examples.length === 0
            ? html`<p class="muted" part="empty">No examples in the catalog for this feature.</p>`
            : html`<ol>
                ${st.examples.map((ex) => this.#renderExample(ex, scale))}
              </ol>`;
        break;
      }
    }
    return html`<section part="examples" aria-labelledby="ex" aria-busy=${st.status === 'loading' ? 'true' : 'false'}>
      <h4 id="ex">Max-activating examples</h4>
      ${body}
    </section>`;
  }

  /* No whitespace between the token spans: the text is white-space: pre-wrap. */
  #renderExample(ex: FeatureExample, scale: number): TemplateResult {
    const tokens = ex.tokens.map((t) => {
      const hit = t.tokenIdx === ex.tokenIdx;
      const level = scale > 0 && Number.isFinite(t.activation) ? Math.min(1, Math.max(0, t.activation / scale)) : 0;
      return html`<span class=${hit ? 'xt hit' : 'xt'} part=${hit ? 'example-token hit' : 'example-token'} style=${`--loupe-level:${level}`}>${t.text}</span>`;
    });
    return html`<li part="example">
      <div class="ex-meta">sequence ${ex.sequenceId}, token ${ex.tokenIdx} · activation ${formatValue(ex.strength)}</div>
      <div class="ex-text">${tokens}</div>
    </li>`;
  }
}

/** The strongest activation among the examples shown: every token is shaded relative to it. */
export function exampleScale(examples: readonly FeatureExample[]): number {
  let max = 0;
  for (const ex of examples) {
    if (Number.isFinite(ex.strength)) max = Math.max(max, ex.strength);
    for (const t of ex.tokens) if (Number.isFinite(t.activation)) max = Math.max(max, t.activation);
  }
  return max;
}

declare global {
  interface HTMLElementTagNameMap {
    'loupe-feature-card': LoupeFeatureCard;
  }
}
