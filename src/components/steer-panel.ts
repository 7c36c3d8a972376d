/**
 * `<loupe-steer-panel>`: build a steering plan (features, signed strengths, when to start), run
 * it, or run it side by side with the unsteered model.
 */
import { LitElement, html, nothing, type PropertyDeclarations, type TemplateResult } from 'lit';
import { repeat } from 'lit/directives/repeat.js';
import type { FeatureCatalog } from '../features/types.js';
import type { ComparingSession, RunRequest, SessionLike, SideBySide, TokenReadout } from '../session/types.js';
import type { SteeringPlan } from '../steer/plan.js';
import { emit } from './events.js';
import { featureName, formatStrength } from './format.js';
import { featureIdsConverter, isFeatureId } from './selection.js';
import { SessionController } from './session-controller.js';
import { themeStyles } from './theme.js';
import { steerPanelStyles } from './steer-panel.styles.js';

/** One feature in the plan being edited: pushed by a signed strength, or clamped to a value. */
export interface SteerEntry {
  readonly feature: number;
  readonly mode: 'push' | 'clamp';
  readonly value: number;
  /** The slider spans −max…+max (push) or 0…max (clamp). */
  readonly max: number;
}

/** Slider range without an explicit `max-strength` and before the feature was seen active. */
const DEFAULT_MAX_STRENGTH = 10;

/** 1, 2 or 5 × a power of ten at or above `v`: slider ends a reader can name. */
function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** When steering starts: after R1's "Okay, so the user …" prefix, at the first answer token, or at a position. */
export type SteerStartChoice = 'after-prefix' | 'answer' | 'position';

const SEARCH_RESULTS = 8;

/** Whether the session can also run the unsteered baseline (`ComparingSession`). */
export function isComparingSession(s: SessionLike | undefined): s is ComparingSession {
  return s !== undefined && typeof (s as Partial<ComparingSession>).sideBySide === 'function';
}

/**
 * Steering: pick features (the current selection, or a search of the catalog's labels), give
 * each a signed strength (push: add strength × the feature's decoder row) or a clamp value, and
 * choose when steering starts. "Run steered" sets the plan on the session
 * (`session.setSteering`) and generates with it; "Side by side" runs the steered and the default
 * model on the same prompt (`ComparingSession.sideBySide`) and shows both texts next to each
 * other; "Stop steering" clears the session's plan.
 *
 *
 * @tag loupe-steer-panel
 * @fires loupe-steer - `{ plan, action }`: the plan was set on the session (`action` 'run' or 'side-by-side') or cleared (`plan` undefined, action 'clear').
 * @csspart panel - The whole panel.
 * @csspart search - The label search box.
 * @csspart results - The search results.
 * @csspart entry - One feature of the plan.
 * @csspart slider - A strength slider.
 * @csspart run-button - "Run steered".
 * @csspart compare-button - "Side by side".
 * @csspart clear-button - "Stop steering".
 * @csspart comparison - The side-by-side texts.
 * @csspart steered-text - The steered generation's text.
 * @csspart baseline-text - The default generation's text.
 * @cssprop --loupe-accent - Primary button and focus ring colour.
 * @cssprop --loupe-error - Error text colour.
 */
export class LoupeSteerPanel extends LitElement {
  static override properties: PropertyDeclarations = {
    session: { attribute: false },
    catalog: { attribute: false },
    selected: { converter: featureIdsConverter },
    prompt: {},
    maxNewTokens: { type: Number, attribute: 'max-new-tokens' },
    maxStrength: { type: Number, attribute: 'max-strength' },
    strength: { type: Number },
  };

  static override styles = [themeStyles, steerPanelStyles];

  /** The session steered (SessionLike; side by side needs a ComparingSession). */
  declare session: SessionLike | undefined;
  /** Catalog for labels and search instead of the session's. */
  declare catalog: FeatureCatalog | undefined;
  /** Features "Add selected" adds (attribute: ids separated by spaces). */
  declare selected: readonly number[];
  /** The user message runs are made with. */
  declare prompt: string;
  /** New tokens per run (attribute `max-new-tokens`, default 256). */
  declare maxNewTokens: number;
  /**
   * The strength slider spans −max…+max (attribute `max-strength`). Unset (the default): per
   * feature, 4 × the largest activation it reached in this session, rounded up to 1/2/5 × 10ⁿ
   * (10 before it was seen) — a push matters in units of the feature's own activations, and those
   * differ by orders of magnitude between SAEs (Tiny-R1's reach ~10, Goodfire's ~1).
   */
  declare maxStrength: number | undefined;
  /** Strength a newly added feature starts with (default: its largest activation seen, else 4). */
  declare strength: number | undefined;

  readonly #source = new SessionController(this, ['status', 'steering', 'reset', 'token', 'baseline-token'], (e) => this.#onSessionEvent(e));
  /** Generated text of the side-by-side run in progress: steered (`token`) and baseline (`baseline-token`). */
  #live = { steered: '', baseline: '' };
  #entries: SteerEntry[] = [];
  #start: SteerStartChoice = 'after-prefix';
  #position = 0;
  #query = '';
  #busy: 'run' | 'side-by-side' | undefined;
  #comparison: SideBySide | undefined;
  #error: string | undefined;

  constructor() {
    super();
    this.session = undefined;
    this.catalog = undefined;
    this.selected = [];
    this.prompt = '';
    this.maxNewTokens = 256;
    this.maxStrength = undefined;
    this.strength = undefined;
  }

  /** The features in the plan being edited. */
  get entries(): readonly SteerEntry[] {
    return this.#entries;
  }

  /** Adds a feature to the plan (ignored when already there or not a feature id). */
  addFeature(feature: number, mode: 'push' | 'clamp' = 'push', value?: number): void {
    if (!isFeatureId(feature) || this.#entries.some((e) => e.feature === feature)) return;
    const seen = this.#seenMax(feature);
    const max = this.#maxFor(seen);
    const start = value ?? this.strength ?? (seen > 0 ? Math.round(seen * 2) / 2 : 4);
    this.#entries = [...this.#entries, { feature, mode, value: Math.min(max, Math.max(-max, start)), max }];
    this.requestUpdate();
  }

  /** The feature's largest activation in this session so far (0 if never active). */
  #seenMax(feature: number): number {
    const r = this.session?.readouts;
    if (r === undefined || feature >= r.dSae) return 0;
    const m = r.stats(feature).max;
    return Number.isFinite(m) && m > 0 ? m : 0;
  }

  #maxFor(seen: number): number {
    const fixed = this.maxStrength;
    if (fixed !== undefined && Number.isFinite(fixed) && fixed > 0) return fixed;
    return seen > 0 ? niceCeil(4 * seen) : DEFAULT_MAX_STRENGTH;
  }

  /** Removes a feature from the plan. */
  removeFeature(feature: number): void {
    this.#entries = this.#entries.filter((e) => e.feature !== feature);
    this.requestUpdate();
  }

  /** Sets a feature's strength (push) or clamp value. */
  setValue(feature: number, value: number): void {
    if (!Number.isFinite(value)) return;
    this.#entries = this.#entries.map((e) => (e.feature === feature ? { ...e, value: e.mode === 'clamp' ? Math.max(0, Math.min(e.max, value)) : Math.min(e.max, Math.max(-e.max, value)) } : e));
    this.requestUpdate();
  }

  /** Chooses when steering starts; `position` is used with 'position'. */
  setStart(start: SteerStartChoice, position?: number): void {
    this.#start = start;
    if (position !== undefined && Number.isInteger(position) && position >= 0) this.#position = position;
    this.requestUpdate();
  }

  /** The plan the panel describes, or undefined when it has no features. */
  plan(): SteeringPlan | undefined {
    if (this.#entries.length === 0) return undefined;
    const push = this.#entries.filter((e) => e.mode === 'push').map((e) => ({ feature: e.feature, strength: e.value }));
    const clamp = this.#entries.filter((e) => e.mode === 'clamp').map((e) => ({ feature: e.feature, value: e.value }));
    const start = this.#start === 'position' ? this.#position : this.#start;
    return { ...(push.length > 0 ? { push } : {}), ...(clamp.length > 0 ? { clamp } : {}), start };
  }

  #request(): Omit<RunRequest, 'steering'> {
    const n = Number.isInteger(this.maxNewTokens) && this.maxNewTokens > 0 ? this.maxNewTokens : 256;
    return { messages: [{ role: 'user', content: this.prompt }], maxNewTokens: n };
  }

  /** Why the run buttons are disabled, if they are. */
  #blocked(): string | undefined {
    const s = this.session;
    if (s === undefined) return 'No session to steer.';
    if (this.#busy !== undefined) return undefined;
    if (s.status === 'loading') return 'The model is still loading.';
    if (s.status === 'generating') return 'A generation is running.';
    if (s.status === 'unsupported') return `This browser cannot run the SAE${s.message !== undefined ? `: ${s.message}` : '.'}`;
    if (this.#entries.length === 0) return 'Add a feature to steer.';
    if (this.prompt.trim() === '') return 'Enter a prompt first.';
    return undefined;
  }

  readonly #run = async (): Promise<void> => {
    const s = this.session;
    const plan = this.plan();
    if (s === undefined || plan === undefined || this.#blocked() !== undefined || this.#busy !== undefined) return;
    s.setSteering(plan);
    emit(this, 'loupe-steer', { plan, action: 'run' });
    await this.#track('run', async () => {
      const summary = await s.run({ ...this.#request(), steering: plan });
      if (summary.status === 'error') this.#error = summary.error?.message ?? 'The steered run failed.';
    });
  };

  readonly #compare = async (): Promise<void> => {
    const s = this.session;
    const plan = this.plan();
    if (!isComparingSession(s) || plan === undefined || this.#blocked() !== undefined || this.#busy !== undefined) return;
    s.setSteering(plan);
    emit(this, 'loupe-steer', { plan, action: 'side-by-side' });
    await this.#track('side-by-side', async () => {
      this.#comparison = await s.sideBySide(this.#request());
    });
  };

  readonly #clear = (): void => {
    this.session?.setSteering(undefined);
    emit(this, 'loupe-steer', { plan: undefined, action: 'clear' });
    this.requestUpdate();
  };

  /** Tokens matter only while a side-by-side run is shown live; other events always re-render. */
  #onSessionEvent(e: Event): boolean {
    if (e.type !== 'token' && e.type !== 'baseline-token' && e.type !== 'reset') return true;
    if (this.#busy !== 'side-by-side') return false;
    if (e.type === 'reset') {
      this.#live = { ...this.#live, steered: '' };
      return true;
    }
    const t = (e as CustomEvent<TokenReadout>).detail;
    const which = e.type === 'token' ? 'steered' : 'baseline';
    const text = t.position === 0 ? '' : this.#live[which];
    this.#live = { ...this.#live, [which]: t.phase === 'prompt' ? text : text + t.text };
    return true;
  }

  async #track(kind: 'run' | 'side-by-side', work: () => Promise<void>): Promise<void> {
    this.#busy = kind;
    this.#error = undefined;
    if (kind === 'side-by-side') {
      this.#comparison = undefined;
      this.#live = { steered: '', baseline: '' };
    }
    this.requestUpdate();
    try {
      await work();
    } catch (err) {
      this.#error = err instanceof Error ? err.message : String(err);
    } finally {
      this.#busy = undefined;
      this.requestUpdate();
    }
  }

  protected override render(): TemplateResult {
    const catalog = this.#source.catalog;
    const selectable = this.selected.filter((f) => isFeatureId(f) && !this.#entries.some((e) => e.feature === f));
    const results = catalog !== undefined && this.#query.trim() !== '' ? catalog.search(this.#query.trim(), SEARCH_RESULTS) : [];
    const blocked = this.#blocked();
    const comparing = isComparingSession(this.session);
    const active = this.session?.steering;
    return html`<div class="panel" part="panel">
      <h3>Steering</h3>
      <div>
        <button ?disabled=${selectable.length === 0} @click=${() => selectable.forEach((f) => this.addFeature(f))}>
          ${selectable.length === 0 ? 'Add selected' : `Add selected (${selectable.map((f) => `#${f}`).join(', ')})`}
        </button>
      </div>
      <div>
        <label
          >Search features
          <input
            type="search"
            part="search"
            .value=${this.#query}
            ?disabled=${catalog === undefined}
            placeholder=${catalog === undefined ? 'no catalog' : 'label text'}
            @input=${(e: Event) => {
              this.#query = (e.target as HTMLInputElement).value;
              this.requestUpdate();
            }}
        /></label>
        ${results.length > 0
          ? html`<ul class="results" part="results" aria-label="Matching features">
              ${results.map(
                (r) =>
                  html`<li>
                    <button @click=${() => this.addFeature(r.featureId)} ?disabled=${this.#entries.some((e) => e.feature === r.featureId)}>
                      <span>${r.label}</span> <span class="muted">#${r.featureId}${r.dead ? ' (dead)' : ''}</span>
                    </button>
                  </li>`,
              )}
            </ul>`
          : this.#query.trim() !== '' && catalog !== undefined
            ? html`<p class="muted">No label matches.</p>`
            : nothing}
      </div>
      ${this.#entries.length === 0
        ? html`<p class="muted">No features in the plan.</p>`
        : html`<ul aria-label="Features to steer">
            ${repeat(
              this.#entries,
              (e) => e.feature,
              (e) => this.#renderEntry(e, featureName(catalog, e.feature)),
            )}
          </ul>`}
      <fieldset>
        <legend>Start steering</legend>
        ${this.#radio('after-prefix', 'After the response prefix ("Okay, so the user …")')} ${this.#radio('answer', 'At the first answer token')}
        <label
          ><input type="radio" name="start" value="position" .checked=${this.#start === 'position'} @change=${() => this.setStart('position')} /> At position
          <input
            type="number"
            min="0"
            step="1"
            aria-label="Start position"
            .value=${String(this.#position)}
            ?disabled=${this.#start !== 'position'}
            @change=${(e: Event) => this.setStart('position', Number((e.target as HTMLInputElement).value))}
        /></label>
      </fieldset>
      <div class="actions">
        <button class="primary" part="run-button" aria-describedby="why" ?disabled=${blocked !== undefined || this.#busy !== undefined} @click=${this.#run}>
          Run steered
        </button>
        <button
          part="compare-button"
          aria-describedby="why"
          ?disabled=${!comparing || blocked !== undefined || this.#busy !== undefined}
          @click=${this.#compare}
        >
          Side by side
        </button>
        <button part="clear-button" ?disabled=${active === undefined} @click=${this.#clear}>Stop steering</button>
      </div>
      <p id="why" class="muted" role="status">
        ${this.#busy === 'run'
          ? 'Running the steered generation…'
          : this.#busy === 'side-by-side'
            ? 'Running steered and default generations…'
            : (blocked ?? (comparing ? '' : 'Side by side needs a session that can run the unsteered baseline.'))}
      </p>
      ${active !== undefined ? html`<p class="muted">Steering is on: ${describePlan(active)}.</p>` : nothing}
      ${this.#error !== undefined ? html`<p role="alert" class="error">${this.#error}</p>` : nothing} ${this.#renderComparison()}
    </div>`;
  }

  #radio(value: 'after-prefix' | 'answer', text: string): TemplateResult {
    return html`<label><input type="radio" name="start" value=${value} .checked=${this.#start === value} @change=${() => this.setStart(value)} /> ${text}</label>`;
  }

  #renderEntry(e: SteerEntry, name: string): TemplateResult {
    const max = e.max;
    const clamp = e.mode === 'clamp';
    return html`<li class="entry" part="entry">
      <span class="name">${name} <span class="muted">#${e.feature}</span></span>
      <button aria-label=${`Remove feature ${e.feature}`} @click=${() => this.removeFeature(e.feature)}>✕</button>
      <span class="controls">
        <select
          aria-label=${`How to steer feature ${e.feature}`}
          @change=${(ev: Event) => {
            const mode = (ev.target as HTMLSelectElement).value === 'clamp' ? 'clamp' : 'push';
            this.#entries = this.#entries.map((x) => (x.feature === e.feature ? { ...x, mode, value: mode === 'clamp' ? Math.abs(x.value) : x.value } : x));
            this.requestUpdate();
          }}
        >
          <option value="push" ?selected=${!clamp}>push</option>
          <option value="clamp" ?selected=${clamp}>clamp to</option>
        </select>
        <input
          type="range"
          part="slider"
          min=${clamp ? 0 : -max}
          max=${max}
          step="0.5"
          .value=${String(e.value)}
          aria-label=${`${clamp ? 'Clamp value' : 'Strength'} of feature ${e.feature}: ${name}`}
          aria-valuetext=${formatStrength(e.value)}
          @input=${(ev: Event) => this.setValue(e.feature, Number((ev.target as HTMLInputElement).value))}
        />
        <output>${formatStrength(e.value)}</output>
      </span>
    </li>`;
  }

  /** The two generations side by side: live while they run, then the runs' summaries. */
  #renderComparison(): TemplateResult | typeof nothing {
    const c = this.#comparison;
    const live = this.#busy === 'side-by-side';
    if (c === undefined && !live) return nothing;
    const steered = c?.steered.text ?? this.#live.steered;
    const baseline = c?.baseline.text ?? this.#live.baseline;
    return html`<div class="comparison" part="comparison" role="group" aria-label="Steered and default generations" aria-busy=${live ? 'true' : 'false'}>
      <section>
        <h4>Steered</h4>
        <div class="gen" part="steered-text">${steered}</div>
        ${c !== undefined ? html`<div class="muted">${c.steered.generatedTokens} tokens · ${c.steered.status}</div>` : nothing}
      </section>
      <section>
        <h4>Default</h4>
        <div class="gen" part="baseline-text">${baseline}</div>
        ${c !== undefined ? html`<div class="muted">${c.baseline.generatedTokens} tokens · ${c.baseline.status}</div>` : nothing}
      </section>
    </div>`;
  }
}

/** "+4.0 × #540, −2.0 × #725, #878 clamped to 3.0, after the response prefix". */
export function describePlan(plan: SteeringPlan): string {
  const parts = [
    ...(plan.push ?? []).map((p) => `${formatStrength(p.strength)} × #${p.feature}`),
    ...(plan.clamp ?? []).map((c) => `#${c.feature} clamped to ${c.value.toFixed(1)}`),
  ];
  const start = plan.start ?? 'after-prefix';
  const when = start === 'after-prefix' ? 'after the response prefix' : start === 'answer' ? 'from the first answer token' : `from position ${start}`;
  return `${parts.join(', ') || 'no features'}, ${when}`;
}

declare global {
  interface HTMLElementTagNameMap {
    'loupe-steer-panel': LoupeSteerPanel;
  }
}
