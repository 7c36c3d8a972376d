/**
 * The benchmark's baseline: the token stream as one would first write it in Lit — every token a
 * span in one template, re-rendered on each append, nothing virtualised. Same spans, classes,
 * shading custom properties and CSS as `<loupe-token-stream>` (minus focus and tooltip), so the
 * difference measured is the virtualisation and the chunked, guarded rendering.
 */
import { LitElement, css, html, type PropertyDeclarations, type TemplateResult } from 'lit';
import type { Readouts, SessionLike } from '../../src/session/types.js';

export class NaiveTokenStream extends LitElement {
  static override properties: PropertyDeclarations = { session: { attribute: false }, selected: { attribute: false } };

  static override styles = css`
    :host {
      display: block;
      height: var(--loupe-stream-height, 24rem);
    }
    .scroller {
      box-sizing: border-box;
      height: 100%;
      overflow: auto;
      border: 1px solid #ccc;
    }
    .text {
      padding: 0.25rem 0.5rem;
      white-space: pre-wrap;
      overflow-wrap: anywhere;
      font-family: ui-monospace, monospace;
      font-size: 0.9em;
      line-height: 1.6;
    }
    .tok.s {
      --_c0: color-mix(in srgb, #f97316 calc(var(--loupe-a0, 0) / var(--loupe-m0, 1) * 100%), transparent);
      background-color: var(--_c0);
    }
  `;

  declare session: SessionLike | undefined;
  declare selected: readonly number[];
  readonly #onToken = (): void => this.requestUpdate();
  #subscribed: SessionLike | undefined;

  constructor() {
    super();
    this.session = undefined;
    this.selected = [];
  }

  protected override willUpdate(): void {
    if (this.session !== this.#subscribed) {
      this.#subscribed?.removeEventListener('token', this.#onToken);
      this.session?.addEventListener('token', this.#onToken);
      this.#subscribed = this.session;
    }
  }

  protected override render(): TemplateResult {
    const r: Readouts | undefined = this.session?.readouts;
    const f = this.selected[0];
    const max = f === undefined || r === undefined ? 1 : r.stats(f).max || 1;
    return html`<div class="scroller"><div class="text" style=${`--loupe-m0:${max}`}>${(r?.tokens ?? []).map((t, i) => {
      const a = f === undefined || r === undefined ? 0 : r.activation(i, f);
      return html`<span class=${a !== 0 ? 'tok s' : 'tok'} data-i=${i} style=${a !== 0 ? `--loupe-a0:${a}` : ''}>${t.text}</span>`;
    })}</div></div>`;
  }

  protected override updated(): void {
    const s = this.renderRoot.querySelector<HTMLElement>('.scroller');
    if (s !== null) s.scrollTop = s.scrollHeight;
  }
}

if (customElements.get('naive-token-stream') === undefined) customElements.define('naive-token-stream', NaiveTokenStream);

declare global {
  interface HTMLElementTagNameMap {
    'naive-token-stream': NaiveTokenStream;
  }
}
