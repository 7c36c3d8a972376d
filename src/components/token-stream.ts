/**
 * `<loupe-token-stream>`: the generated text, one span per token, shaded by the selected
 * features' activations, virtualised so that a 5,000-token trace keeps only the lines near the
 * viewport in the DOM.
 */
import { LitElement, html, nothing, type PropertyDeclarations, type TemplateResult } from 'lit';
import { guard } from 'lit/directives/guard.js';
import { ifDefined } from 'lit/directives/if-defined.js';
import { repeat } from 'lit/directives/repeat.js';
import type { FeatureCatalog } from '../features/types.js';
import type { Readouts, SessionLike, TokenReadout } from '../session/types.js';
import { emit, isAdditive } from './events.js';
import { featureName, formatValue, phaseName, whitespaceName } from './format.js';
import { lineNeighbour } from './line-navigation.js';
import { featureIdsConverter, isFeatureId, MAX_SHADED } from './selection.js';
import { SessionController } from './session-controller.js';
import { themeStyles } from './theme.js';
import { tokenStreamStyles } from './token-stream.styles.js';
import { EMPTY_RANGE, sameRange, TokenChunks, type ChunkRange, type TokenChunk } from './token-chunks.js';

const TIP_ID = 'loupe-token-tip';
/** Chunks rendered beyond the viewport, as a fraction of its height, each side. */
const OVERSCAN = 0.5;
/** Viewport assumed before the element has been laid out. */
const DEFAULT_VIEWPORT_PX = 600;
/** Re-measure passes allowed after one update before waiting for the next event. */
const MAX_LAYOUT_PASSES = 8;

/**
 * The generated text of a session, prompt included, one span per token. Each token is shaded by
 * the activation of the selected features (up to three, one colour each), relative to the
 * feature's maximum over the tokens so far. Prompt, thinking and answer are separate groups with
 * their own styling and a label for screen readers.
 *
 * Focus or hover on a token shows its strongest features with their labels in a tooltip. The
 * tokens form a listbox (each token an option; arrow keys, Home, End, PageUp, PageDown move; Enter
 * or a click selects the token's top feature; Escape hides the tooltip). A listbox rather than a
 * grid: the tokens are one sequence, and the "rows" of wrapped text change with the width, so
 * ArrowUp/ArrowDown move to the token above/below on screen but no row structure is announced.
 *
 * Only chunks of whole lines near the viewport are in the DOM; appending a token touches only
 * the open last chunk. While scrolled to the bottom the view follows new tokens; scrolling up (or
 * focusing a token) stops following, and "Latest ↓" resumes it.
 *
 * Give it `session` (a SessionLike: tokens arrive through its `token` events), or `readouts`
 * (and `catalog`) directly and call `requestUpdate()` after appending.
 *
 *
 * @tag loupe-token-stream
 * @fires loupe-select - `{ featureId, additive }`: Enter or a click on a token selected its strongest feature.
 * @csspart scroller - The scrolling box.
 * @csspart listbox - The token list inside it.
 * @csspart chunk - A run of whole lines of one phase; also carries the part `prompt`, `thinking` or `answer`.
 * @csspart phase-label - The visible label at the start of each phase.
 * @csspart token - Every token span; also `prompt`/`thinking`/`answer`, `steered`, `nonfinite`.
 * @csspart tooltip - The tooltip listing a token's top features.
 * @csspart follow-button - "Latest ↓", shown while not following the newest token.
 * @cssprop --loupe-stream-height - Height of the element (default 24rem).
 * @cssprop --loupe-stream-font - Font of the tokens (default ui-monospace).
 * @cssprop --loupe-highlight - Shade of the first selected feature.
 * @cssprop --loupe-highlight-2 - Shade of the second selected feature.
 * @cssprop --loupe-highlight-3 - Shade of the third selected feature.
 * @cssprop --loupe-prompt-color - Edge colour of prompt lines.
 * @cssprop --loupe-thinking-color - Edge colour of thinking lines.
 * @cssprop --loupe-answer-color - Edge colour of answer lines.
 * @cssprop --loupe-steered - Underline of tokens generated under steering.
 * @cssprop --loupe-tooltip-bg - Tooltip background.
 * @cssprop --loupe-tooltip-fg - Tooltip text colour.
 * @cssprop --loupe-accent - Focus ring and active token outline.
 */
export class LoupeTokenStream extends LitElement {
  static {
    // updated() measures the chunks it rendered and, when they change the window, renders once
    // more: that second update is the design, not an accident (lit.dev/msg/change-in-update).
    this.disableWarning?.('change-in-update');
  }

  static override properties: PropertyDeclarations = {
    session: { attribute: false },
    readouts: { attribute: false },
    catalog: { attribute: false },
    selected: { converter: featureIdsConverter },
    tooltipFeatures: { type: Number, attribute: 'tooltip-features' },
    label: {},
  };

  static override styles = [themeStyles, tokenStreamStyles];

  /** The session whose tokens are shown (its `readouts` and `catalog` unless those are set). */
  declare session: SessionLike | undefined;
  /** Readouts to show instead of the session's; call `requestUpdate()` after appending to them. */
  declare readouts: Readouts | undefined;
  /** Catalog for the tooltip's labels instead of the session's. */
  declare catalog: FeatureCatalog | undefined;
  /** Features shading the tokens; the first three are shown (attribute: ids separated by spaces). */
  declare selected: readonly number[];
  /** Features listed in a token's tooltip (attribute `tooltip-features`, default 5). */
  declare tooltipFeatures: number;
  /** Accessible name of the token list (default "Generated tokens"). */
  declare label: string;

  readonly #source = new SessionController(this, ['token', 'reset']);
  readonly #chunks = new TokenChunks();
  #generation = 0;
  #indexedFirst: TokenReadout | undefined;
  #range: ChunkRange = EMPTY_RANGE;
  #scrollTop = 0;
  #viewport = 0;
  #width = 0;
  #follow = true;
  /** The token holding tabindex 0 (-1: none yet). */
  #active = -1;
  #hover = -1;
  #focusWithin = false;
  #tipDismissed = false;
  #pendingFocus = false;
  #layoutPasses = 0;
  #resize: ResizeObserver | undefined;

  constructor() {
    super();
    this.session = undefined;
    this.readouts = undefined;
    this.catalog = undefined;
    this.selected = [];
    this.tooltipFeatures = 5;
    this.label = 'Generated tokens';
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.#resize ??= new ResizeObserver(() => this.#onResize());
    const scroller = this.#scroller();
    if (scroller !== null) this.#resize.observe(scroller);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#resize?.disconnect();
  }

  /** Scrolls token `index` (into `readouts.tokens`) into view; stops following. */
  scrollToToken(index: number): void {
    const c = this.#chunks.chunkOf(index);
    if (c < 0) return;
    this.#follow = false;
    const scroller = this.#scroller();
    if (scroller !== null) {
      scroller.scrollTop = Math.max(0, this.#chunks.top(c) - this.#viewportPx() / 3);
      this.#scrollTop = scroller.scrollTop;
    }
    this.requestUpdate();
  }

  /** Moves keyboard focus to token `index`, scrolling it into view. */
  focusToken(index: number): void {
    const tokens = this.#source.readouts?.tokens ?? [];
    if (index < 0 || index >= tokens.length) return;
    this.#moveTo(index);
  }

  protected override firstUpdated(): void {
    const scroller = this.#scroller();
    if (scroller !== null) this.#resize?.observe(scroller);
  }

  protected override willUpdate(): void {
    const tokens = this.#source.readouts?.tokens ?? [];
    this.#chunks.sync(tokens);
    if (tokens[0] !== this.#indexedFirst || this.#chunks.length === 0) {
      // A new run: forget the old one's focus, hover and scroll position.
      this.#indexedFirst = tokens[0];
      this.#generation++;
      this.#active = -1;
      this.#hover = -1;
      this.#follow = true;
      this.#scrollTop = 0;
    }
    this.#range = this.#computeRange();
  }

  protected override render(): TemplateResult {
    const readouts = this.#source.readouts;
    const tokens = readouts?.tokens ?? [];
    const shade = this.selected.filter(isFeatureId).slice(0, MAX_SHADED);
    const maxes = shade.map((f, k) => `--loupe-m${k}:${readouts?.stats(f).max || 1}`).join(';');
    const shadeKey = shade.join(' ');
    const r = this.#range;
    const tip = this.#tipIndex(tokens.length);
    const activeRendered = this.#isRendered(this.#active);
    const visible = readouts === undefined ? [] : this.#chunks.chunks.slice(r.first, r.last + 1);
    // Keyed by chunk: when the window slides, chunks leaving it are removed and the others keep
    // their DOM; guard re-renders a chunk only when its tokens, the shading, focus or tooltip changed.
    const chunks = repeat(
      visible,
      (chunk) => `${this.#generation}:${chunk.index}`,
      (chunk) => {
        const active = chunk.start <= this.#active && this.#active < chunk.end ? this.#active : -1;
        const tipIn = chunk.start <= tip && tip < chunk.end ? tip : -1;
        const labelled = chunk.index === 0 || this.#chunks.chunks[chunk.index - 1]?.phase !== chunk.phase;
        return guard([chunk, chunk.end, shadeKey, active, tipIn], () => (readouts === undefined ? nothing : this.#renderChunk(chunk, readouts, shade, active, tipIn, labelled)));
      },
    );
    return html`<div class="scroller" part="scroller" @scroll=${this.#onScroll}>
        <div
          role="listbox"
          part="listbox"
          aria-label=${this.label}
          tabindex=${activeRendered ? '-1' : '0'}
          style=${maxes}
          @keydown=${this.#onKeyDown}
          @click=${this.#onClick}
          @focusin=${this.#onFocusIn}
          @focusout=${this.#onFocusOut}
          @pointerover=${this.#onPointerOver}
          @pointerleave=${this.#onPointerLeave}
        >
          <div class="spacer" role="none" style="height:${Math.round(r.above)}px"></div>
          ${chunks}
          <div class="spacer" role="none" style="height:${Math.round(r.below)}px"></div>
          ${tokens.length === 0 ? html`<p class="empty muted">No tokens yet.</p>` : nothing}
        </div>
      </div>
      ${this.#renderTip(tokens, tip)}
      ${!this.#follow && tokens.length > 0
        ? html`<button class="follow" part="follow-button" aria-label="Jump to the latest token" @click=${this.#jumpToLatest}>Latest ↓</button>`
        : nothing}`;
  }

  /* No whitespace between tags: the chunk is white-space: pre-wrap, so any would show. */
  #renderChunk(chunk: TokenChunk, readouts: Readouts, shade: readonly number[], active: number, tip: number, labelled: boolean): TemplateResult {
    const spans: TemplateResult[] = [];
    for (let i = chunk.start; i < chunk.end; i++) {
      const t = readouts.tokens[i];
      if (t !== undefined) spans.push(this.#renderToken(t, i, readouts, shade, i === active, i === tip));
    }
    const label = labelled ? html`<span class="phase-label" part="phase-label" aria-hidden="true">${chunk.phase}</span>` : nothing;
    return html`<div class="chunk ${chunk.phase}" part="chunk ${chunk.phase}" role="group" aria-label=${phaseName(chunk.phase)} data-chunk=${chunk.index}>${label}${spans}</div>`;
  }

  #renderToken(t: TokenReadout, i: number, readouts: Readouts, shade: readonly number[], active: boolean, tip: boolean): TemplateResult {
    let style = '';
    shade.forEach((f, k) => {
      const a = readouts.activation(i, f);
      if (a !== 0) style += `--loupe-a${k}:${a};`;
    });
    const flags = `${t.phase}${t.steered ? ' steered' : ''}${t.nonFinite ? ' nonfinite' : ''}`;
    const cls = `tok ${flags}${style !== '' ? ' s' : ''}${t.text.endsWith('\n') ? ' nl' : ''}`;
    return html`<span
      class=${cls}
      part=${`token ${flags}`}
      role="option"
      id=${`t${i}`}
      data-i=${i}
      tabindex=${active ? '0' : '-1'}
      aria-selected=${active ? 'true' : 'false'}
      aria-posinset=${i + 1}
      aria-setsize="-1"
      aria-label=${ifDefined(whitespaceName(t.text))}
      aria-describedby=${ifDefined(tip ? TIP_ID : undefined)}
      style=${style}
      >${t.text}</span
    >`;
  }

  #renderTip(tokens: readonly TokenReadout[], i: number): TemplateResult {
    const t = i >= 0 ? tokens[i] : undefined;
    if (t === undefined) return html`<div id=${TIP_ID} class="tip" part="tooltip" role="tooltip" hidden></div>`;
    const catalog = this.#source.catalog;
    const n = Math.min(Math.max(0, this.tooltipFeatures), t.indices.length);
    const items: TemplateResult[] = [];
    for (let j = 0; j < n; j++) {
      const f = t.indices[j] ?? 0;
      items.push(
        html`<li><span class="tip-label">${featureName(catalog, f)}</span> <span class="tip-id">#${f}</span> <span class="tip-val">${formatValue(t.values[j] ?? 0)}</span></li>`,
      );
    }
    const more = t.indices.length - n;
    const body = t.nonFinite
      ? html`<div class="error">Non-finite activation (NaN or ±Inf): no features.</div>`
      : n === 0
        ? html`<div>No active features.</div>`
        : html`<ol aria-label="Top features">${items}</ol>${more > 0 ? html`<div class="tip-more">+${more} more</div>` : nothing}`;
    return html`<div id=${TIP_ID} class="tip" part="tooltip" role="tooltip">
      <div><span class="tip-token">${JSON.stringify(t.text)}</span> <span class="tip-id">token ${t.position} · ${phaseName(t.phase)}${t.steered ? ' · steered' : ''}</span></div>
      ${body}
    </div>`;
  }

  protected override updated(): void {
    const scroller = this.#scroller();
    if (scroller === null) return;
    this.#viewport = scroller.clientHeight;
    for (const el of this.renderRoot.querySelectorAll<HTMLElement>('.chunk')) {
      this.#chunks.measure(Number(el.dataset['chunk']), el.offsetHeight);
    }
    if (this.#follow) {
      scroller.scrollTop = scroller.scrollHeight;
      this.#scrollTop = scroller.scrollTop;
    }
    if (this.#pendingFocus) {
      const el = this.#tokenEl(this.#active);
      if (el !== null) {
        this.#pendingFocus = false;
        el.focus();
        this.#scrollTop = scroller.scrollTop;
      }
    }
    this.#positionTip();
    // Measuring may show that more (or fewer) chunks are needed: one more pass, a bounded number of times.
    if (!sameRange(this.#computeRange(), this.#range) && this.#layoutPasses < MAX_LAYOUT_PASSES) {
      this.#layoutPasses++;
      this.requestUpdate();
    } else {
      this.#layoutPasses = 0;
    }
  }

  #computeRange(): ChunkRange {
    const viewport = this.#viewportPx();
    return this.#chunks.range(this.#scrollTop, viewport, viewport * OVERSCAN, this.#follow);
  }

  #viewportPx(): number {
    return this.#viewport > 0 ? this.#viewport : DEFAULT_VIEWPORT_PX;
  }

  #scroller(): HTMLElement | null {
    return this.renderRoot instanceof ShadowRoot || this.renderRoot instanceof HTMLElement ? this.renderRoot.querySelector<HTMLElement>('.scroller') : null;
  }

  #tokenEl(i: number): HTMLElement | null {
    return i < 0 ? null : (this.renderRoot.querySelector<HTMLElement>(`#t${i}`) ?? null);
  }

  #isRendered(i: number): boolean {
    if (i < 0) return false;
    const c = this.#chunks.chunkOf(i);
    return c >= this.#range.first && c <= this.#range.last;
  }

  #tipIndex(n: number): number {
    if (this.#tipDismissed) return -1;
    if (this.#hover >= 0 && this.#hover < n) return this.#hover;
    return this.#focusWithin && this.#active < n ? this.#active : -1;
  }

  #positionTip(): void {
    const tip = this.renderRoot.querySelector<HTMLElement>(`#${TIP_ID}`);
    if (tip === null || tip.hidden) return;
    const anchor = this.#tokenEl(this.#tipIndex(this.#chunks.length));
    if (anchor === null) {
      tip.style.visibility = 'hidden';
      return;
    }
    tip.style.visibility = '';
    const host = this.getBoundingClientRect();
    const r = anchor.getBoundingClientRect();
    const left = Math.max(0, Math.min(r.left - host.left, host.width - tip.offsetWidth));
    // Below the token, or above it when the token sits in the lower part of the box.
    const below = r.bottom - host.top + 4;
    const top = below + tip.offsetHeight > host.height && r.top - host.top > tip.offsetHeight ? r.top - host.top - tip.offsetHeight - 4 : below;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }

  #onResize(): void {
    const scroller = this.#scroller();
    if (scroller === null) return;
    if (scroller.clientWidth !== this.#width) {
      if (this.#width !== 0) this.#chunks.forgetHeights();
      this.#width = scroller.clientWidth;
    }
    this.#viewport = scroller.clientHeight;
    this.requestUpdate();
  }

  readonly #onScroll = (): void => {
    const s = this.#scroller();
    if (s === null) return;
    this.#scrollTop = s.scrollTop;
    this.#viewport = s.clientHeight;
    const atBottom = s.scrollHeight - s.scrollTop - s.clientHeight <= 2;
    if (atBottom !== this.#follow) {
      this.#follow = atBottom;
      this.requestUpdate();
    }
    if (!sameRange(this.#computeRange(), this.#range)) this.requestUpdate();
    this.#positionTip();
  };

  readonly #jumpToLatest = (): void => {
    this.#follow = true;
    this.requestUpdate();
  };

  #indexOf(e: Event): number {
    for (const node of e.composedPath()) {
      if (node === this) break;
      if (node instanceof HTMLElement && node.dataset['i'] !== undefined) return Number(node.dataset['i']);
    }
    return -1;
  }

  #moveTo(i: number): void {
    this.#active = i;
    this.#hover = -1;
    this.#tipDismissed = false;
    this.#follow = false;
    if (!this.#isRendered(i)) {
      const scroller = this.#scroller();
      const c = this.#chunks.chunkOf(i);
      if (scroller !== null && c >= 0) {
        scroller.scrollTop = Math.max(0, this.#chunks.top(c) - this.#viewportPx() / 3);
        this.#scrollTop = scroller.scrollTop;
      }
    }
    this.#pendingFocus = true;
    this.requestUpdate();
  }

  /** The first token whose box reaches into the viewport (where Tab lands when nothing was focused). */
  #firstVisible(): number {
    const scroller = this.#scroller();
    if (scroller === null) return 0;
    const top = scroller.getBoundingClientRect().top;
    for (const el of this.renderRoot.querySelectorAll<HTMLElement>('.tok')) {
      if (el.getBoundingClientRect().bottom > top) return Number(el.dataset['i']);
    }
    return 0;
  }

  /** The token on the line above (dir −1) or below (+1) nearest the same x, when rendered. */
  #lineNeighbour(i: number, dir: 1 | -1, n: number): number {
    return lineNeighbour(i, dir, n, (j) => this.#tokenEl(j)?.getBoundingClientRect());
  }

  #selectTop(i: number, additive: boolean): void {
    const t = this.#source.readouts?.tokens[i];
    const top = t?.indices[0];
    if (t === undefined || top === undefined || t.nonFinite) return;
    emit(this, 'loupe-select', { featureId: top, additive });
  }

  readonly #onKeyDown = (e: KeyboardEvent): void => {
    const n = this.#source.readouts?.tokens.length ?? 0;
    if (n === 0) return;
    const cur = this.#active >= 0 && this.#active < n ? this.#active : this.#firstVisible();
    const page = Math.max(1, Math.floor(this.#viewportPx() / Math.max(1, this.#chunks.pxPerToken)));
    let next: number;
    switch (e.key) {
      case 'ArrowRight':
        next = Math.min(n - 1, cur + 1);
        break;
      case 'ArrowLeft':
        next = Math.max(0, cur - 1);
        break;
      case 'ArrowDown':
        next = this.#lineNeighbour(cur, 1, n);
        break;
      case 'ArrowUp':
        next = this.#lineNeighbour(cur, -1, n);
        break;
      case 'Home':
        next = 0;
        break;
      case 'End':
        next = n - 1;
        break;
      case 'PageDown':
        next = Math.min(n - 1, cur + page);
        break;
      case 'PageUp':
        next = Math.max(0, cur - page);
        break;
      case 'Enter':
      case ' ':
        e.preventDefault();
        this.#selectTop(cur, isAdditive(e));
        return;
      case 'Escape':
        if (this.#tipIndex(n) >= 0) {
          e.preventDefault();
          this.#tipDismissed = true;
          this.requestUpdate();
        }
        return;
      default:
        return;
    }
    e.preventDefault();
    this.#moveTo(next);
  };

  readonly #onClick = (e: MouseEvent): void => {
    const i = this.#indexOf(e);
    if (i >= 0) this.#selectTop(i, isAdditive(e));
  };

  readonly #onFocusIn = (e: FocusEvent): void => {
    this.#focusWithin = true;
    const i = this.#indexOf(e);
    if (i >= 0) {
      if (i !== this.#active) this.#tipDismissed = false;
      this.#active = i;
      this.#follow = false;
      this.requestUpdate();
      return;
    }
    // The list itself took focus (its token is scrolled out of the DOM): hand it to a token.
    const n = this.#source.readouts?.tokens.length ?? 0;
    if (n > 0) this.#moveTo(this.#active >= 0 && this.#active < n ? this.#active : this.#firstVisible());
  };

  readonly #onFocusOut = (e: FocusEvent): void => {
    const to = e.relatedTarget;
    if (to instanceof Node && this.renderRoot.contains(to)) return;
    this.#focusWithin = false;
    this.requestUpdate();
  };

  readonly #onPointerOver = (e: PointerEvent): void => {
    const i = this.#indexOf(e);
    if (i >= 0 && i !== this.#hover) {
      this.#hover = i;
      this.#tipDismissed = false;
      this.requestUpdate();
    }
  };

  readonly #onPointerLeave = (): void => {
    if (this.#hover < 0) return;
    this.#hover = -1;
    this.requestUpdate();
  };
}

declare global {
  interface HTMLElementTagNameMap {
    'loupe-token-stream': LoupeTokenStream;
  }
}
