/**
 * `<loupe-feature-map>`: the catalog's 2-D feature map on a canvas, with the features active at
 * the newest token lit up; a list of those features stands in for the canvas for keyboard and
 * screen-reader users.
 */
import { LitElement, css, html, nothing, type PropertyDeclarations, type TemplateResult } from 'lit';
import type { FeatureCatalog } from '../features/types.js';
import type { Readouts, SessionLike } from '../session/types.js';
import { emit, isAdditive } from './events.js';
import { featureName, formatValue } from './format.js';
import { featureIdsConverter } from './selection.js';
import { SessionController } from './session-controller.js';
import { themeStyles } from './theme.js';
import { listboxKey } from './listbox-keys.js';

/** Margin inside the canvas, CSS px: a point at (0, 0) is drawn 8 px from the left and bottom edges. */
export const MAP_PADDING = 8;
/** Hover and click pick the nearest point within this distance, CSS px. */
const PICK_RADIUS = 10;

/** A feature lit on the map: its activation now, relative to its maximum over the run. */
export interface ActiveFeature {
  readonly featureId: number;
  readonly value: number;
  /** value / the feature's max so far, in [0, 1]. */
  readonly level: number;
  readonly x: number;
  readonly y: number;
}

/**
 * Where a map coordinate (x, y in [0, 1], y up) is drawn in a `width` × `height` canvas, CSS px
 * from its top-left corner.
 */
export function mapToCanvas(x: number, y: number, width: number, height: number): { x: number; y: number } {
  return { x: MAP_PADDING + x * (width - 2 * MAP_PADDING), y: MAP_PADDING + (1 - y) * (height - 2 * MAP_PADDING) };
}

const checkedMaps = new WeakMap<Float32Array, { readonly size: number; readonly problem: string | undefined }>();

/** Why `map` cannot be drawn for `size` features, or undefined when it can (checked once per map). */
export function mapProblem(map: Float32Array, size: number): string | undefined {
  const seen = checkedMaps.get(map);
  if (seen !== undefined && seen.size === size) return seen.problem;
  let problem: string | undefined;
  if (map.length !== 2 * size) problem = `The catalog's map has ${map.length} values; expected 2 × ${size} (x, y per feature).`;
  for (let i = 0; i < map.length && problem === undefined; i++) {
    const v = map[i] ?? NaN;
    if (!Number.isFinite(v) || v < 0 || v > 1) problem = `The catalog's map value ${i} is ${v}; coordinates must lie in [0, 1].`;
  }
  checkedMaps.set(map, { size, problem });
  return problem;
}

/**
 * A scatter of every feature at its catalog map position (`FeatureCatalog.map`), drawn on a
 * canvas. The features active at the newest token are drawn larger and in the highlight colour,
 * sized by their activation relative to their maximum so far; selected features get a ring.
 * Hovering a point shows its label; clicking selects it.
 *
 * A canvas is invisible to assistive technology, so the element also renders the list of active
 * features with their positions (a listbox in a `<details>`: arrow keys move, Enter or Space
 * selects), and the canvas carries a summary as its accessible name.
 *
 *
 * @tag loupe-feature-map
 * @fires loupe-select - `{ featureId, additive }`: a point or a list entry was selected.
 * @csspart canvas - The map canvas.
 * @csspart tooltip - The hover label.
 * @csspart fallback - The `<details>` holding the list of active features.
 * @csspart listbox - That list.
 * @csspart option - One active feature in it.
 * @cssprop --loupe-map-height - Height of the canvas (default 18rem).
 * @cssprop --loupe-map-point - Colour of inactive features.
 * @cssprop --loupe-highlight - Colour of active features.
 * @cssprop --loupe-accent - Ring around selected and hovered features.
 * @cssprop --loupe-tooltip-bg - Hover label background.
 * @cssprop --loupe-tooltip-fg - Hover label text colour.
 */
export class LoupeFeatureMap extends LitElement {
  static override properties: PropertyDeclarations = {
    session: { attribute: false },
    readouts: { attribute: false },
    catalog: { attribute: false },
    selected: { converter: featureIdsConverter },
    listOpen: { type: Boolean, attribute: 'list-open' },
  };

  static override styles = [
    themeStyles,
    css`
      :host {
        display: block;
        font-size: 0.9rem;
      }
      .wrap {
        position: relative;
      }
      canvas {
        display: block;
        width: 100%;
        height: var(--loupe-map-height, 18rem);
        border: 1px solid var(--_border);
        border-radius: 4px;
        box-sizing: border-box;
        cursor: crosshair;
      }
      .tip {
        position: absolute;
        z-index: 2;
        max-width: 20rem;
        padding: 0.3rem 0.5rem;
        border-radius: 4px;
        background: var(--loupe-tooltip-bg, #111827);
        color: var(--loupe-tooltip-fg, #f9fafb);
        font-size: 0.8rem;
        pointer-events: none;
        overflow-wrap: anywhere;
      }
      .tip[hidden] {
        display: none;
      }
      details {
        margin-top: 0.25rem;
      }
      [role='option'] {
        padding: 0.1rem 0.3rem;
        cursor: pointer;
        overflow-wrap: anywhere;
      }
      [role='option'][aria-selected='true'] {
        background: var(--loupe-selected-bg, color-mix(in srgb, var(--_h0) 22%, transparent));
      }
    `,
  ];

  /** Session providing readouts and catalog, unless those are set. */
  declare session: SessionLike | undefined;
  /** Readouts whose newest token lights the map, instead of the session's. */
  declare readouts: Readouts | undefined;
  /** Catalog with the map coordinates and labels, instead of the session's. */
  declare catalog: FeatureCatalog | undefined;
  /** Selected features, drawn with a ring (attribute: ids separated by spaces). */
  declare selected: readonly number[];
  /** Whether the list of active features starts open (attribute `list-open`). */
  declare listOpen: boolean;

  readonly #source = new SessionController(this, ['token', 'reset']);
  #hover: number | undefined;
  #activeOption = -1;
  #base: HTMLCanvasElement | undefined;
  #baseKey = '';
  #baseMap: Float32Array | undefined;
  #resize: ResizeObserver | undefined;

  constructor() {
    super();
    this.session = undefined;
    this.readouts = undefined;
    this.catalog = undefined;
    this.selected = [];
    this.listOpen = false;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.#resize ??= new ResizeObserver(() => this.requestUpdate());
    const canvas = this.#canvas();
    if (canvas !== null) this.#resize.observe(canvas);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#resize?.disconnect();
  }

  /** The features lit now: those of the newest token, strongest first. */
  activeFeatures(): ActiveFeature[] {
    const readouts = this.#source.readouts;
    const map = this.#map();
    const t = readouts?.tokens[readouts.tokens.length - 1];
    if (readouts === undefined || map === undefined || t === undefined || t.nonFinite) return [];
    const out: ActiveFeature[] = [];
    for (let j = 0; j < t.indices.length; j++) {
      const f = t.indices[j] ?? 0;
      const value = t.values[j] ?? 0;
      if (!(value > 0) || 2 * f + 1 >= map.length) continue;
      const max = readouts.stats(f).max;
      out.push({ featureId: f, value, level: max > 0 ? Math.min(1, value / max) : 1, x: map[2 * f] ?? 0, y: map[2 * f + 1] ?? 0 });
    }
    return out;
  }

  #map(): Float32Array | undefined {
    const c = this.#source.catalog;
    return c?.map !== undefined && mapProblem(c.map, c.size) === undefined ? c.map : undefined;
  }

  #canvas(): HTMLCanvasElement | null {
    return this.renderRoot.querySelector('canvas');
  }

  protected override render(): TemplateResult {
    const catalog = this.#source.catalog;
    if (catalog === undefined) return html`<p class="muted">No feature catalog: no map to show.</p>`;
    if (catalog.map === undefined) return html`<p class="muted">This catalog has no feature map.</p>`;
    const problem = mapProblem(catalog.map, catalog.size);
    if (problem !== undefined) return html`<p role="alert" class="error">${problem}</p>`;
    const active = this.activeFeatures();
    const t = this.#source.readouts?.tokens.at(-1);
    const summary =
      `Feature map of ${catalog.size} features. ` +
      (t === undefined
        ? 'No tokens yet.'
        : `${active.length} active at token ${t.position}${active.length > 0 ? `, strongest: ${active.slice(0, 3).map((a) => featureName(catalog, a.featureId)).join('; ')}` : ''}. The list below names them all.`);
    const hover = this.#hover;
    const tabStop = active.some((a) => a.featureId === this.#activeOption) ? this.#activeOption : (active[0]?.featureId ?? -1);
    return html`<div class="wrap">
        <canvas part="canvas" role="img" aria-label=${summary} @pointermove=${this.#onPointerMove} @pointerleave=${this.#onPointerLeave} @click=${this.#onCanvasClick}></canvas>
        <div id="maptip" class="tip" part="tooltip" role="tooltip" ?hidden=${hover === undefined}>
          ${hover !== undefined ? html`${featureName(catalog, hover)} <span class="muted">#${hover}</span>` : nothing}
        </div>
      </div>
      <details part="fallback" ?open=${this.listOpen} @toggle=${(e: Event) => (this.listOpen = (e.target as HTMLDetailsElement).open)}>
        <summary>Active features (${active.length})</summary>
        <div role="listbox" part="listbox" aria-label="Active features on the map" @keydown=${this.#onListKey} @click=${this.#onListClick}>
          ${active.map(
            (a) =>
              html`<div
                role="option"
                part="option"
                data-f=${a.featureId}
                tabindex=${a.featureId === tabStop ? '0' : '-1'}
                aria-selected=${this.selected.includes(a.featureId) ? 'true' : 'false'}
              >
                ${featureName(catalog, a.featureId)} — #${a.featureId} at (${a.x.toFixed(2)}, ${a.y.toFixed(2)}), activation ${formatValue(a.value)}
              </div>`,
          )}
        </div>
        ${active.length === 0 ? html`<p class="muted">No feature is active at the newest token.</p>` : nothing}
      </details>`;
  }

  protected override updated(): void {
    const canvas = this.#canvas();
    const map = this.#map();
    if (canvas === null || map === undefined) return;
    this.#resize?.observe(canvas);
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (w === 0 || h === 0) return;
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.round(w * dpr);
    const ph = Math.round(h * dpr);
    if (canvas.width !== pw || canvas.height !== ph) {
      canvas.width = pw;
      canvas.height = ph;
    }
    const ctx = canvas.getContext('2d');
    if (ctx === null) return;
    const style = getComputedStyle(this);
    const colour = (name: string, fallback: string): string => style.getPropertyValue(name).trim() || fallback;
    const pointColour = colour('--loupe-map-point', '#94a3b8');
    const base = this.#baseLayer(map, pw, ph, dpr, w, h, pointColour);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, pw, ph);
    ctx.drawImage(base, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // Weakest first, so the strongest features are drawn on top.
    const active = this.activeFeatures().sort((a, b) => a.level - b.level);
    ctx.fillStyle = colour('--_h0', '#f97316');
    for (const a of active) {
      const p = mapToCanvas(a.x, a.y, w, h);
      ctx.globalAlpha = 0.35 + 0.65 * a.level;
      ctx.beginPath();
      ctx.arc(p.x, p.y, 2.5 + 5.5 * a.level, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = colour('--_accent', '#2563eb');
    ctx.lineWidth = 2;
    const rings = this.#hover !== undefined ? [...this.selected, this.#hover] : this.selected;
    for (const f of rings) {
      if (2 * f + 1 >= map.length) continue;
      const p = mapToCanvas(map[2 * f] ?? 0, map[2 * f + 1] ?? 0, w, h);
      ctx.beginPath();
      ctx.arc(p.x, p.y, 9, 0, 2 * Math.PI);
      ctx.stroke();
    }
    this.#positionTip(map, w, h);
  }

  /** Every feature as a dot, drawn once per size, map and colour and reused for every token. */
  #baseLayer(map: Float32Array, pw: number, ph: number, dpr: number, w: number, h: number, colour: string): HTMLCanvasElement {
    const key = `${pw}x${ph}@${dpr}:${colour}`;
    if (this.#base !== undefined && this.#baseKey === key && this.#baseMap === map) return this.#base;
    const base = this.#base ?? document.createElement('canvas');
    base.width = pw;
    base.height = ph;
    const ctx = base.getContext('2d');
    if (ctx !== null) {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      ctx.fillStyle = colour;
      ctx.globalAlpha = 0.55;
      for (let f = 0; 2 * f + 1 < map.length; f++) {
        const p = mapToCanvas(map[2 * f] ?? 0, map[2 * f + 1] ?? 0, w, h);
        ctx.fillRect(p.x - 1, p.y - 1, 2, 2);
      }
    }
    this.#base = base;
    this.#baseKey = key;
    this.#baseMap = map;
    return base;
  }

  #positionTip(map: Float32Array, w: number, h: number): void {
    const tip = this.renderRoot.querySelector<HTMLElement>('#maptip');
    const f = this.#hover;
    if (tip === null || f === undefined) return;
    const p = mapToCanvas(map[2 * f] ?? 0, map[2 * f + 1] ?? 0, w, h);
    tip.style.left = `${Math.max(0, Math.min(p.x + 12, w - tip.offsetWidth))}px`;
    tip.style.top = `${p.y + 12 + tip.offsetHeight > h ? p.y - 12 - tip.offsetHeight : p.y + 12}px`;
  }

  /** The feature drawn nearest (x, y) CSS px in the canvas, within the pick radius. */
  #pick(x: number, y: number): number | undefined {
    const canvas = this.#canvas();
    const map = this.#map();
    if (canvas === null || map === undefined) return undefined;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    // Active features are larger and on top: they win within their drawn radius.
    for (const a of this.activeFeatures()) {
      const p = mapToCanvas(a.x, a.y, w, h);
      if (Math.hypot(p.x - x, p.y - y) <= 2.5 + 5.5 * a.level) return a.featureId;
    }
    let best: number | undefined;
    let bestD = PICK_RADIUS;
    for (let f = 0; 2 * f + 1 < map.length; f++) {
      const p = mapToCanvas(map[2 * f] ?? 0, map[2 * f + 1] ?? 0, w, h);
      const d = Math.hypot(p.x - x, p.y - y);
      if (d <= bestD) {
        bestD = d;
        best = f;
      }
    }
    return best;
  }

  readonly #onPointerMove = (e: PointerEvent): void => {
    const f = this.#pick(e.offsetX, e.offsetY);
    if (f !== this.#hover) {
      this.#hover = f;
      this.requestUpdate();
    }
  };

  readonly #onPointerLeave = (): void => {
    if (this.#hover === undefined) return;
    this.#hover = undefined;
    this.requestUpdate();
  };

  readonly #onCanvasClick = (e: MouseEvent): void => {
    const f = this.#pick(e.offsetX, e.offsetY);
    if (f !== undefined) emit(this, 'loupe-select', { featureId: f, additive: isAdditive(e) });
  };

  #optionOf(e: Event): HTMLElement | undefined {
    for (const node of e.composedPath()) {
      if (node === this) break;
      if (node instanceof HTMLElement && node.dataset['f'] !== undefined) return node;
    }
    return undefined;
  }

  readonly #onListClick = (e: MouseEvent): void => {
    const o = this.#optionOf(e);
    if (o !== undefined) emit(this, 'loupe-select', { featureId: Number(o.dataset['f']), additive: isAdditive(e) });
  };

  readonly #onListKey = (e: KeyboardEvent): void => {
    const options = [...this.renderRoot.querySelectorAll<HTMLElement>('[role="option"]')];
    const r = listboxKey(e, options, this.#optionOf(e));
    if (r?.kind === 'activate') emit(this, 'loupe-select', { featureId: Number(r.option.dataset['f']), additive: isAdditive(e) });
    else if (r?.kind === 'moved') this.#activeOption = Number(r.option.dataset['f']);
  };
}

declare global {
  interface HTMLElementTagNameMap {
    'loupe-feature-map': LoupeFeatureMap;
  }
}
