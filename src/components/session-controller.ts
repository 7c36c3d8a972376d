/**
 * A reactive controller that keeps a host subscribed to its Session's events: the host asks for
 * an update on every event it names, re-subscribes when its `session` property changes, and lets
 * go on disconnect (no listener outlives the element).
 */
import type { ReactiveController, ReactiveControllerHost } from 'lit';
import type { Readouts, SessionEventMap, SessionLike } from '../session/types.js';
import type { FeatureCatalog } from '../features/types.js';

export type SessionEventName = keyof SessionEventMap;

/** What a host exposes: a session, or readouts and a catalog set directly. */
export interface SessionSourced {
  session: SessionLike | undefined;
  readouts?: Readouts | undefined;
  catalog?: FeatureCatalog | undefined;
}

export class SessionController implements ReactiveController {
  readonly #host: ReactiveControllerHost & SessionSourced;
  readonly #events: readonly SessionEventName[];
  readonly #onEvent: ((e: Event) => boolean | void) | undefined;
  #subscribed: SessionLike | undefined;
  #connected = false;

  /** `onEvent` sees each event first; returning false skips the update it would cause. */
  constructor(host: ReactiveControllerHost & SessionSourced, events: readonly SessionEventName[], onEvent?: (e: Event) => boolean | void) {
    this.#host = host;
    this.#events = events;
    this.#onEvent = onEvent;
    host.addController(this);
  }

  /** The readouts to show: the explicit property wins over the session's. */
  get readouts(): Readouts | undefined {
    return this.#host.readouts ?? this.#host.session?.readouts;
  }

  /** The catalog to use: the explicit property wins over the session's. */
  get catalog(): FeatureCatalog | undefined {
    return this.#host.catalog ?? this.#host.session?.catalog;
  }

  hostConnected(): void {
    this.#connected = true;
    this.#sync();
  }

  hostUpdate(): void {
    this.#sync();
  }

  hostDisconnected(): void {
    this.#connected = false;
    this.#sync();
  }

  readonly #handle = (e: Event): void => {
    if (this.#onEvent?.(e) !== false) this.#host.requestUpdate();
  };

  #sync(): void {
    const wanted = this.#connected ? this.#host.session : undefined;
    if (wanted === this.#subscribed) return;
    for (const name of this.#events) this.#subscribed?.removeEventListener(name, this.#handle);
    this.#subscribed = wanted;
    for (const name of this.#events) wanted?.addEventListener(name, this.#handle);
  }
}
