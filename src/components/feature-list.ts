/**
 * `<loupe-feature-list>`: the features most active now, or over the whole run, with labels and
 * sparklines; the reader selects features from it.
 */
import { LitElement, css, html, nothing, type PropertyDeclarations, type TemplateResult } from 'lit';
import { repeat } from 'lit/directives/repeat.js';
import type { FeatureCatalog } from '../features/types.js';
import type { FeatureStats, Phase, Readouts, SessionLike } from '../session/types.js';
import { emit, isAdditive } from './events.js';
import { featureName, formatValue } from './format.js';
import { featureIdsConverter } from './selection.js';
import { SessionController } from './session-controller.js';
import { sparklinePoints } from './sparkline.js';
import { themeStyles } from './theme.js';
import { listboxKey } from './listbox-keys.js';

export type FeatureListMode = 'recent' | 'overall';

const SPARK_W = 60;
const SPARK_H = 16;

/**
 * The features most active over the last few tokens (`mode="recent"`, Readouts.topRecent) or
 * over the whole run (`mode="overall"`, Readouts.topOverall), each with its catalog label, its
 * value and a sparkline of its activation over the last tokens.
 *
 * A listbox (multi-select): ArrowUp/ArrowDown/Home/End move, Enter, Space or a click selects
 * (with Shift, Ctrl or ⌘: adds to the selection). While the pointer or focus is in the list its
 * order is held still (values keep updating), so rows do not jump away from the reader; it
 * resumes when they leave.
 *
 *
 * @tag loupe-feature-list
 * @fires loupe-select - `{ featureId, additive }`: the reader selected a feature.
 * @csspart header - The title and the ranking buttons.
 * @csspart mode-button - The "Now" and "Whole run" buttons.
 * @csspart listbox - The list of features.
 * @csspart option - One feature row.
 * @csspart label - A row's label.
 * @csspart value - A row's value.
 * @csspart sparkline - A row's sparkline (SVG).
 * @cssprop --loupe-sparkline - Sparkline stroke colour (default: --loupe-highlight).
 * @cssprop --loupe-selected-bg - Background of selected rows.
 * @cssprop --loupe-accent - Focus ring.
 */
export class LoupeFeatureList extends LitElement {
  static override properties: PropertyDeclarations = {
    session: { attribute: false },
    readouts: { attribute: false },
    catalog: { attribute: false },
    selected: { converter: featureIdsConverter },
    mode: { reflect: true },
    limit: { type: Number },
    recentWindow: { type: Number, attribute: 'recent-window' },
    sparkLength: { type: Number, attribute: 'spark-length' },
    phase: {},
  };

  static override styles = [
    themeStyles,
    css`
      :host {
        display: block;
        font-size: 0.9rem;
      }
      .head {
        display: flex;
        flex-wrap: wrap;
        align-items: center;
        justify-content: space-between;
        gap: 0.5rem;
        margin-bottom: 0.25rem;
      }
      .title {
        font-weight: 600;
      }
      .modes button {
        border: 1px solid var(--_border);
        background: transparent;
        color: inherit;
        padding: 0.1rem 0.5rem;
        border-radius: 3px;
        cursor: pointer;
      }
      .modes button[aria-pressed='true'] {
        background: var(--_accent);
        border-color: var(--_accent);
        color: white;
      }
      [role='listbox'] {
        border: 1px solid var(--_border);
        border-radius: 4px;
        overflow: hidden;
      }
      [role='option'] {
        display: grid;
        grid-template-columns: minmax(0, 1fr) auto ${SPARK_W}px 6.5em;
        align-items: center;
        gap: 0.5rem;
        padding: 0.2rem 0.5rem;
        cursor: pointer;
        border-bottom: 1px solid var(--_border);
      }
      [role='option']:last-child {
        border-bottom: none;
      }
      [role='option'][aria-selected='true'] {
        background: var(--loupe-selected-bg, color-mix(in srgb, var(--_h0) 22%, transparent));
      }
      [role='option']:focus-visible {
        outline: 2px solid var(--_accent);
        outline-offset: -2px;
      }
      .name {
        overflow: hidden;
        text-overflow: ellipsis;
        white-space: nowrap;
      }
      .fid,
      .val {
        font-variant-numeric: tabular-nums;
        color: var(--_muted);
      }
      .val {
        text-align: right;
      }
      svg {
        width: ${SPARK_W}px;
        height: ${SPARK_H}px;
        overflow: visible;
      }
      polyline {
        fill: none;
        stroke: var(--loupe-sparkline, var(--_h0));
        stroke-width: 1.5;
        vector-effect: non-scaling-stroke;
      }
      .paused {
        font-size: 0.75rem;
      }
      .empty {
        margin: 0.25rem 0;
      }
    `,
  ];

  /** The session whose readouts are ranked (its `readouts` and `catalog` unless those are set). */
  declare session: SessionLike | undefined;
  /** Readouts to rank instead of the session's; call `requestUpdate()` after appending to them. */
  declare readouts: Readouts | undefined;
  /** Catalog for the labels instead of the session's. */
  declare catalog: FeatureCatalog | undefined;
  /** Selected features, marked aria-selected (attribute: ids separated by spaces). */
  declare selected: readonly number[];
  /** `recent` (default): mean activation over the last `recent-window` tokens; `overall`: summed over the run. */
  declare mode: FeatureListMode;
  /** Rows shown (default 10). */
  declare limit: number;
  /** Tokens that count as "now" in `recent` mode (attribute `recent-window`, default 8). */
  declare recentWindow: number;
  /** Tokens in each sparkline (attribute `spark-length`, default 48). */
  declare sparkLength: number;
  /** In `overall` mode, rank over one phase only (`prompt`, `thinking` or `answer`). */
  declare phase: Phase | undefined;

  readonly #source = new SessionController(this, ['token', 'reset']);
  /** Row order held while the pointer or focus is in the list. */
  #frozen: number[] | undefined;
  #hovering = false;
  #focusWithin = false;
  #activeId = -1;

  constructor() {
    super();
    this.session = undefined;
    this.readouts = undefined;
    this.catalog = undefined;
    this.selected = [];
    this.mode = 'recent';
    this.limit = 10;
    this.recentWindow = 8;
    this.sparkLength = 48;
    this.phase = undefined;
  }

  /** The feature ids shown, in order. */
  get shownFeatures(): number[] {
    return this.#rows().map((s) => s.featureId);
  }

  #window(): number {
    return Number.isInteger(this.recentWindow) && this.recentWindow > 0 ? this.recentWindow : 8;
  }

  #rows(): FeatureStats[] {
    const r = this.#source.readouts;
    if (r === undefined || r.tokens.length === 0) return [];
    if (this.#frozen !== undefined) return this.#frozen.map((f) => r.stats(f));
    const n = Number.isInteger(this.limit) && this.limit > 0 ? this.limit : 10;
    const phase = this.phase === 'prompt' || this.phase === 'thinking' || this.phase === 'answer' ? this.phase : undefined;
    return this.mode === 'overall' ? r.topOverall(n, phase) : r.topRecent(n, this.#window());
  }

  protected override render(): TemplateResult {
    const readouts = this.#source.readouts;
    const catalog = this.#source.catalog;
    const rows = this.#rows();
    const recent = this.mode !== 'overall';
    const title = recent ? `Active now (last ${this.#window()} tokens)` : `Most active over the run${this.phase !== undefined ? ` (${this.phase})` : ''}`;
    const tabStop = rows.some((s) => s.featureId === this.#activeId) ? this.#activeId : (rows[0]?.featureId ?? -1);
    const sparkLength = Number.isInteger(this.sparkLength) && this.sparkLength > 1 ? this.sparkLength : 48;
    return html`<div class="head" part="header">
        <span class="title" id="title">${title}</span>
        ${this.#frozen !== undefined ? html`<span class="paused muted">order paused</span>` : nothing}
        <span class="modes" role="group" aria-label="Ranking">
          <button part="mode-button" aria-pressed=${recent ? 'true' : 'false'} @click=${() => this.#setMode('recent')}>Now</button>
          <button part="mode-button" aria-pressed=${recent ? 'false' : 'true'} @click=${() => this.#setMode('overall')}>Whole run</button>
        </span>
      </div>
      ${rows.length === 0 ? html`<p class="empty muted">No features yet: they appear as tokens arrive.</p>` : nothing}
      <div
        role="listbox"
        part="listbox"
        aria-labelledby="title"
        aria-multiselectable="true"
        ?hidden=${rows.length === 0}
        @keydown=${this.#onKeyDown}
        @click=${this.#onClick}
        @focusin=${this.#onFocusIn}
        @focusout=${this.#onFocusOut}
        @pointerenter=${this.#onPointerEnter}
        @pointerleave=${this.#onPointerLeave}
      >
        ${repeat(
          rows,
          (s) => s.featureId,
          (s) => {
            const f = s.featureId;
            const series = readouts?.series(f, sparkLength) ?? new Float32Array(0);
            const value = recent ? `now ${formatValue(recentMean(readouts, f, this.#window()))}` : `Σ ${formatValue(s.sum)} · ${s.count}×`;
            return html`<div
              role="option"
              part="option"
              id=${`f${f}`}
              data-f=${f}
              tabindex=${f === tabStop ? '0' : '-1'}
              aria-selected=${this.selected.includes(f) ? 'true' : 'false'}
            >
              <span class="name" part="label" title=${featureName(catalog, f)}>${featureName(catalog, f)}</span>
              <span class="fid">#${f}</span>
              <svg part="sparkline" viewBox="0 0 ${SPARK_W} ${SPARK_H}" preserveAspectRatio="none" aria-hidden="true">
                <polyline points=${sparklinePoints(series, SPARK_W, SPARK_H)}></polyline>
              </svg>
              <span class="val" part="value">${value}</span>
            </div>`;
          },
        )}
      </div>`;
  }

  #setMode(mode: FeatureListMode): void {
    this.#frozen = undefined;
    this.mode = mode;
  }

  #rowOf(e: Event): HTMLElement | undefined {
    for (const node of e.composedPath()) {
      if (node === this) break;
      if (node instanceof HTMLElement && node.dataset['f'] !== undefined) return node;
    }
    return undefined;
  }

  #select(f: number, additive: boolean): void {
    emit(this, 'loupe-select', { featureId: f, additive });
  }

  readonly #onClick = (e: MouseEvent): void => {
    const row = this.#rowOf(e);
    if (row !== undefined) this.#select(Number(row.dataset['f']), isAdditive(e));
  };

  readonly #onKeyDown = (e: KeyboardEvent): void => {
    const rows = [...this.renderRoot.querySelectorAll<HTMLElement>('[role="option"]')];
    const r = listboxKey(e, rows, this.#rowOf(e));
    if (r?.kind === 'activate') this.#select(Number(r.option.dataset['f']), isAdditive(e));
    else if (r?.kind === 'moved') this.#activeId = Number(r.option.dataset['f']);
  };

  readonly #onFocusIn = (e: FocusEvent): void => {
    const row = this.#rowOf(e);
    if (row !== undefined) this.#activeId = Number(row.dataset['f']);
    this.#focusWithin = true;
    this.#freeze();
  };

  readonly #onFocusOut = (e: FocusEvent): void => {
    const to = e.relatedTarget;
    if (to instanceof Node && this.renderRoot.contains(to)) return;
    this.#focusWithin = false;
    this.#thaw();
  };

  readonly #onPointerEnter = (): void => {
    this.#hovering = true;
    this.#freeze();
  };

  readonly #onPointerLeave = (): void => {
    this.#hovering = false;
    this.#thaw();
  };

  #freeze(): void {
    if (this.#frozen !== undefined) return;
    this.#frozen = this.#rows().map((s) => s.featureId);
    this.requestUpdate();
  }

  #thaw(): void {
    if (this.#hovering || this.#focusWithin || this.#frozen === undefined) return;
    this.#frozen = undefined;
    this.requestUpdate();
  }
}

/** Mean activation of `f` over the last `window` tokens (or all, when fewer): what `topRecent` ranks by. */
function recentMean(readouts: Readouts | undefined, f: number, window: number): number {
  const w = Math.min(window, readouts?.tokens.length ?? 0);
  if (readouts === undefined || w === 0) return 0;
  const series = readouts.series(f, w);
  let sum = 0;
  for (const v of series) sum += v;
  return sum / w;
}

declare global {
  interface HTMLElementTagNameMap {
    'loupe-feature-list': LoupeFeatureList;
  }
}
