/**
 * The remote stream as a `TokenSource`: one `RemoteSource` per run, its request built from the
 * run (messages, maxNewTokens → max_tokens, the steering plan → raw vectors via wireSteering),
 * text pieces decoded as one UTF-8 stream (a piece may end inside a character: the character
 * goes to the token that completes it), and activations handed on for the Session's SAE —
 * widened to f32 on the CPU, or, when the SAE runs on WebGPU, left in the GPU ring the stream
 * writes into so they never cross back to the CPU.
 */
import { SessionError } from '../errors.js';
import { activationToF32, type StreamHeader, type WireDtype } from '../sources/frames.js';
import { RemoteSource, type GenerateRequest, type RemoteSourceOptions, type SourceEvent } from '../sources/remote.js';
import { wireSteering, type SteeringPlan } from '../steer/plan.js';
import type { SourceInfo, SourceRun, SourceToken, TokenSource } from './source.js';

export interface RemoteTokenSourceOptions extends Omit<RemoteSourceOptions, 'request'> {
  /** Which activation the server streams (the SAE's hookpoint). */
  readonly hook: GenerateRequest['hook'];
  /** Wire dtype (default: the server's choice, f32 in the reference server). */
  readonly dtype?: WireDtype;
  /** 0 (greedy) by default on the server. */
  readonly temperature?: number;
  readonly topP?: number;
  readonly seed?: number;
  /**
   * With an SAE on WebGPU, write activations into a GPU ring on the SAE's device and encode
   * them from there (default true). Ignored when `device` is given: then the SAE must be on it.
   */
  readonly gpuRing?: boolean;
  /** Called when the stream dropped and is being resumed (every token received is kept). */
  readonly onReconnect?: (event: Extract<SourceEvent, { kind: 'reconnecting' }>) => void;
}

function hasSteering(plan: SteeringPlan | undefined): plan is SteeringPlan {
  return plan !== undefined && ((plan.push?.length ?? 0) > 0 || (plan.clamp?.length ?? 0) > 0);
}

/** Aborts when any of `signals` does. */
function linked(signals: ReadonlyArray<AbortSignal | undefined>): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const undo: Array<() => void> = [];
  for (const s of signals) {
    if (s === undefined) continue;
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    const on = (): void => controller.abort(s.reason);
    s.addEventListener('abort', on, { once: true });
    undo.push(() => s.removeEventListener('abort', on));
  }
  return { signal: controller.signal, dispose: () => undo.forEach((u) => u()) };
}

export class RemoteTokenSource implements TokenSource {
  readonly kind = 'remote';
  readonly needsSae = true;
  /** The server clamps by projection on the feature's decoder direction (docs/protocol.md). */
  readonly canClamp = true;
  readonly #options: RemoteTokenSourceOptions;
  #info: SourceInfo | undefined;
  #source: RemoteSource | undefined;
  #end: Extract<SourceEvent, { kind: 'end' }> | undefined;

  constructor(options: RemoteTokenSourceOptions) {
    this.#options = options;
  }

  get device(): GPUDevice | undefined {
    return this.#options.device;
  }

  get info(): SourceInfo | undefined {
    return this.#info;
  }

  /** The stream of the current or last run (its header and every token received). */
  get source(): RemoteSource | undefined {
    return this.#source;
  }

  /** The END frame of the last run that completed. */
  get end(): Extract<SourceEvent, { kind: 'end' }> | undefined {
    return this.#end;
  }

  /** The request a run sends (steering as raw vectors: the server never sees feature ids). */
  async request(run: Pick<SourceRun, 'messages' | 'maxNewTokens' | 'steering' | 'sae'>): Promise<GenerateRequest> {
    const o = this.#options;
    const steering = hasSteering(run.steering) ? run.steering : undefined;
    if (steering !== undefined && run.sae === undefined) throw new SessionError('Steering a remote run needs the SAE (its decoder rows are the steering vectors); load one first.');
    return {
      messages: run.messages,
      max_tokens: run.maxNewTokens,
      hook: o.hook,
      ...(o.dtype !== undefined ? { dtype: o.dtype } : {}),
      ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
      ...(o.topP !== undefined ? { top_p: o.topP } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(steering !== undefined && run.sae !== undefined ? { steering: await wireSteering(run.sae, steering) } : {}),
    };
  }

  #checkHeader(h: StreamHeader, run: SourceRun): void {
    const dIn = run.sae?.config.dIn;
    if (dIn !== undefined && h.d_in !== dIn) {
      throw new SessionError(`The server streams layer ${h.layer} ${h.site} of ${h.model} with d_in ${h.d_in}, but the SAE reads dIn ${dIn}: pick the SAE for this model and layer, or the hook the SAE was trained on.`);
    }
    this.#info = { model: h.model, hookpoint: `layer ${h.layer} ${h.site}`, dIn: h.d_in };
  }

  async *generate(run: SourceRun): AsyncGenerator<SourceToken> {
    const { hook: _hook, dtype: _dtype, temperature: _t, topP: _p, seed: _s, gpuRing, onReconnect, signal: outer, device: given, ...rest } = this.#options;
    const sae = run.sae;
    let device = given;
    if (device !== undefined && sae !== undefined && sae.device !== device) {
      throw new SessionError('The remote source writes activations on the GPU device it was given, but the SAE is not on that device; load the SAE with { device } (the same one), or give the source no device.');
    }
    if (device === undefined && (gpuRing ?? true) && sae?.backend === 'webgpu') device = sae.device;
    const request = await this.request(run);
    // The previous run's ring is freed only now: its last slots may have been encoded after its stream ended.
    this.#source?.destroy();
    const link = linked([outer, run.signal]);
    const source = new RemoteSource({ ...rest, request, signal: link.signal, ...(device !== undefined ? { device } : {}) });
    this.#source = source;
    this.#end = undefined;
    const decoder = new TextDecoder('utf-8');
    try {
      for await (const ev of source.events()) {
        if (ev.kind === 'header') this.#checkHeader(ev.header, run);
        else if (ev.kind === 'reconnecting') onReconnect?.(ev);
        else if (ev.kind === 'end') this.#end = ev;
        else {
          const f = ev.frame;
          const text = decoder.decode(f.text, { stream: true });
          const ring = source.ring;
          const activation = f.gpu !== undefined && ring !== undefined ? { ring, slot: f.gpu.slot } : activationToF32(f.activation, f.dtype, f.dIn);
          yield { position: f.position, tokenId: f.tokenId, text, phase: f.phase, steered: f.steered, activation };
        }
      }
    } finally {
      link.dispose();
    }
  }

  destroy(): void {
    this.#source?.destroy();
    this.#source = undefined;
  }
}

/** A `TokenSource` over a Loupe stream server (docs/protocol.md). */
export function remoteTokenSource(options: RemoteTokenSourceOptions): RemoteTokenSource {
  return new RemoteTokenSource(options);
}
