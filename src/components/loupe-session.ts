/**
 * `<loupe-session>`: the common case in one tag — prompt box, status line, token stream, feature
 * list, feature card, feature map and steer panel wired to one session and one selection.
 */
import { LitElement, css, html, nothing, type PropertyDeclarations, type TemplateResult } from 'lit';
import type { SessionLike, SessionProgress } from '../session/types.js';
import { emit, type LoupeSelectDetail } from './events.js';
import { featureIdsConverter, isFeatureId, nextSelection } from './selection.js';
import { SessionController } from './session-controller.js';
import { themeStyles } from './theme.js';

export type SessionLayout = 'columns' | 'stacked';

const CHILDREN = 'loupe-token-stream, loupe-feature-list, loupe-feature-card, loupe-feature-map, loupe-steer-panel';

/** Whether this browser exposes WebGPU at all. */
function hasWebGpu(): boolean {
  return typeof navigator !== 'undefined' && (navigator as Navigator & { gpu?: unknown }).gpu !== undefined;
}

/** The status line's text for a session (pure: status, message, progress and token count in, text out). */
export function statusText(session: SessionLike | undefined, progress: SessionProgress | undefined, webGpu: boolean): string {
  if (session === undefined) return 'No session: set the element\'s "session" property.';
  const n = session.readouts.tokens.length;
  const tokens = `${n} token${n === 1 ? '' : 's'}`;
  let text: string;
  switch (session.status) {
    case 'idle':
      text = 'Idle: nothing loaded yet.';
      break;
    case 'loading':
      text =
        progress === undefined
          ? 'Loading…'
          : `Loading ${progress.item}: ${
              progress.total !== undefined && progress.total > 0
                ? `${Math.floor((100 * progress.loaded) / progress.total)} %`
                : `${(progress.loaded / 1048576).toFixed(1)} MiB`
            }`;
      break;
    case 'ready':
      text = 'Ready.';
      break;
    case 'generating':
      text = `Generating… ${tokens}.`;
      break;
    case 'done':
      text = `Done: ${tokens}.`;
      break;
    case 'cancelled':
      text = `Cancelled after ${tokens}.`;
      break;
    case 'error':
      text = `Error: ${session.message ?? 'the session failed without a message.'}`;
      break;
    case 'unsupported':
      text = `Not supported in this browser: ${session.message ?? 'the SAE cannot run here.'}`;
      break;
  }
  if (!webGpu) {
    text +=
      session.status === 'unsupported'
        ? ' WebGPU is not available in this browser (navigator.gpu is missing): use a recent Chrome or Edge, or enable WebGPU in Firefox or Safari.'
        : ' WebGPU is not available in this browser (navigator.gpu is missing).';
  }
  return text;
}

/**
 * Everything for one session in one tag: a prompt box with Generate and Cancel
 * (`session.run` / `session.cancel`), a status line (status, message, loading progress, and a
 * note when the browser has no WebGPU), the token stream, the feature list, the card of the
 * selected feature, the feature map and the steer panel.
 *
 * One selection is shared: selecting a feature in the list, the map or the stream (Enter on a
 * token) shades the stream, fills the card and offers it to the steer panel. Shift, Ctrl or ⌘
 * adds to the selection (up to three features are shaded at once).
 *
 *
 * @tag loupe-session
 * @fires loupe-selection - `{ selected }`: the shared selection changed.
 * @fires loupe-select - Bubbles out from the inner elements (they are composed).
 * @fires loupe-steer - Bubbles out from the steer panel.
 * @csspart prompt-form - The prompt form.
 * @csspart prompt - The prompt textarea.
 * @csspart generate-button - "Generate".
 * @csspart cancel-button - "Cancel".
 * @csspart status - The status line (also carries the status name as a part, e.g. `unsupported`).
 * @csspart stream - The `<loupe-token-stream>`.
 * @csspart list - The `<loupe-feature-list>`.
 * @csspart card - The `<loupe-feature-card>`.
 * @csspart map - The `<loupe-feature-map>`.
 * @csspart steer - The `<loupe-steer-panel>`.
 * @cssprop --loupe-gap - Space between the panels (default 0.75rem).
 * @cssprop --loupe-side-width - Minimum width of the side column (default 16rem).
 * @cssprop --loupe-accent - Buttons and focus rings (inherited by every inner element, as are all --loupe-* properties).
 */
export class LoupeSession extends LitElement {
  static override properties: PropertyDeclarations = {
    session: { attribute: false },
    selected: { converter: featureIdsConverter },
    layout: { reflect: true },
    prompt: {},
    maxNewTokens: { type: Number, attribute: 'max-new-tokens' },
    noMap: { type: Boolean, attribute: 'no-map' },
    noSteer: { type: Boolean, attribute: 'no-steer' },
  };

  static override styles = [
    themeStyles,
    css`
      :host {
        display: block;
      }
      .root {
        display: grid;
        gap: var(--loupe-gap, 0.75rem);
      }
      form {
        display: grid;
        grid-template-columns: minmax(0, 1fr) auto;
        gap: 0.5rem;
        align-items: end;
      }
      form label {
        grid-column: 1 / -1;
        font-weight: 600;
      }
      textarea {
        min-height: 3.5rem;
        resize: vertical;
        box-sizing: border-box;
        width: 100%;
      }
      .buttons {
        display: flex;
        gap: 0.5rem;
      }
      button[type='submit'] {
        background: var(--_accent);
        border: 1px solid var(--_accent);
        color: white;
        border-radius: 3px;
        padding: 0.3rem 0.9rem;
      }
      button:disabled {
        opacity: 0.55;
      }
      .status {
        margin: 0;
        color: var(--_muted);
      }
      .status.error,
      .status.unsupported {
        color: var(--_error);
      }
      .main,
      .lower {
        display: grid;
        grid-template-columns: minmax(0, 3fr) minmax(var(--loupe-side-width, 16rem), 2fr);
        gap: var(--loupe-gap, 0.75rem);
        align-items: start;
      }
      .lower {
        grid-template-columns: minmax(0, 1fr) minmax(0, 1fr);
      }
      :host([layout='stacked']) .main,
      :host([layout='stacked']) .lower {
        grid-template-columns: minmax(0, 1fr);
      }
      .side {
        display: grid;
        gap: var(--loupe-gap, 0.75rem);
      }
    `,
  ];

  /** The session shown and driven (see SessionLike). */
  declare session: SessionLike | undefined;
  /** The shared selection (attribute: ids separated by spaces); the last one fills the card. */
  declare selected: readonly number[];
  /** `columns` (default: stream beside list and card) or `stacked` (one column, for narrow places). */
  declare layout: SessionLayout;
  /** Text of the prompt box. */
  declare prompt: string;
  /** New tokens per run (attribute `max-new-tokens`, default 256). */
  declare maxNewTokens: number;
  /** Leave out the feature map (attribute `no-map`). */
  declare noMap: boolean;
  /** Leave out the steer panel (attribute `no-steer`). */
  declare noSteer: boolean;

  #progress: SessionProgress | undefined;
  #runError: string | undefined;

  constructor() {
    super();
    this.session = undefined;
    this.selected = [];
    this.layout = 'columns';
    this.prompt = '';
    this.maxNewTokens = 256;
    this.noMap = false;
    this.noSteer = false;
    // Status, progress and token count live in the status line: re-render on those events.
    new SessionController(this, ['status', 'progress', 'reset', 'token', 'steering'], (e) => {
      if (e.type === 'progress') this.#progress = (e as CustomEvent<SessionProgress>).detail;
      else if (e.type === 'status' || e.type === 'reset') this.#progress = undefined;
    });
  }

  /** Resolves once this element and every inner element have rendered. */
  protected override async getUpdateComplete(): Promise<boolean> {
    let done = await super.getUpdateComplete();
    for (const child of this.renderRoot.querySelectorAll<LitElement>(CHILDREN)) {
      done = (await child.updateComplete) && done;
    }
    return done;
  }

  #maxNewTokens(): number {
    return Number.isInteger(this.maxNewTokens) && this.maxNewTokens > 0 ? this.maxNewTokens : 256;
  }

  #busy(): boolean {
    const st = this.session?.status;
    return st === 'loading' || st === 'generating' || st === 'unsupported';
  }

  readonly #generate = async (e?: Event): Promise<void> => {
    e?.preventDefault();
    const s = this.session;
    const content = this.prompt.trim();
    if (s === undefined || content === '' || this.#busy()) return;
    this.#runError = undefined;
    this.requestUpdate();
    try {
      const summary = await s.run({ messages: [{ role: 'user', content }], maxNewTokens: this.#maxNewTokens() });
      if (summary.status === 'error') this.#runError = summary.error?.message ?? 'The run failed.';
    } catch (err) {
      this.#runError = err instanceof Error ? err.message : String(err);
    }
    this.requestUpdate();
  };

  readonly #cancel = (): void => {
    this.session?.cancel();
  };

  readonly #onSelect = (e: CustomEvent<LoupeSelectDetail>): void => {
    const f = e.detail.featureId;
    if (!isFeatureId(f)) return;
    this.selected = nextSelection(this.selected, f, e.detail.additive);
    emit(this, 'loupe-selection', { selected: this.selected });
  };

  protected override render(): TemplateResult {
    const s = this.session;
    const status = s?.status ?? 'idle';
    const text = statusText(s, this.#progress, hasWebGpu());
    const focus = this.selected.at(-1);
    return html`<div class="root" @loupe-select=${this.#onSelect}>
      <form part="prompt-form" @submit=${this.#generate}>
        <label for="prompt">Prompt</label>
        <textarea
          id="prompt"
          part="prompt"
          .value=${this.prompt}
          @input=${(e: Event) => (this.prompt = (e.target as HTMLTextAreaElement).value)}
          @keydown=${(e: KeyboardEvent) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) void this.#generate(e);
          }}
        ></textarea>
        <span class="buttons">
          <button type="submit" part="generate-button" ?disabled=${s === undefined || this.#busy() || this.prompt.trim() === ''}>Generate</button>
          <button type="button" part="cancel-button" ?disabled=${status !== 'generating'} @click=${this.#cancel}>Cancel</button>
        </span>
      </form>
      <p class="status ${status}" part="status ${status}" role="status">
        ${text}${this.#runError !== undefined && status !== 'error' ? ` ${this.#runError}` : ''}
      </p>
      <div class="main">
        <loupe-token-stream part="stream" .session=${s} .selected=${this.selected}></loupe-token-stream>
        <div class="side">
          <loupe-feature-list part="list" .session=${s} .selected=${this.selected}></loupe-feature-list>
          <loupe-feature-card part="card" .session=${s} .featureId=${focus}></loupe-feature-card>
        </div>
      </div>
      ${this.noMap && this.noSteer
        ? nothing
        : html`<div class="lower">
            ${this.noMap ? nothing : html`<loupe-feature-map part="map" .session=${s} .selected=${this.selected}></loupe-feature-map>`}
            ${this.noSteer
              ? nothing
              : html`<loupe-steer-panel part="steer" .session=${s} .selected=${this.selected} .prompt=${this.prompt} .maxNewTokens=${this.#maxNewTokens()}></loupe-steer-panel>`}
          </div>`}
    </div>`;
  }
}

declare global {
  interface HTMLElementTagNameMap {
    'loupe-session': LoupeSession;
  }
}

/** The `<loupe-session>` element's type under the name the demo uses. */
export type LoupeSessionElement = LoupeSession;
