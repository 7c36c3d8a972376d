/**
 * `TokenSource`: what a Session reads tokens from — the remote stream, the local ONNX model or
 * a recorded trace — as one stream of tokens that carry either their SAE codes already (local
 * model, trace) or the raw activation for the Session to encode (remote stream: f32 on the
 * CPU, or a slot of the GPU ring the stream writes into).
 */
import type { Sae } from '../runtime/sae.js';
import type { ActivationRing } from '../sources/activation-ring.js';
import type { SteeringPlan } from '../steer/plan.js';
import type { Phase, RunRequest } from './types.js';

/** One token's sparse codes (strongest first, as `SparseCodes` orders them). */
export interface TokenCodes {
  readonly indices: Uint32Array;
  readonly values: Float32Array;
  /** The activation held NaN/±Inf: no features. */
  readonly nonFinite: boolean;
}

/** An activation the stream wrote into a GPU ring (wire dtype), still to be widened and encoded. */
export interface RingSlot {
  readonly ring: ActivationRing;
  readonly slot: number;
}

interface TokenMeta {
  readonly position: number;
  readonly tokenId: number;
  /** Decoded text (pieces that end inside a character are already joined by the source). */
  readonly text: string;
  readonly phase: Phase;
  readonly steered: boolean;
}

/** A token with its codes, or with the activation the Session's SAE will encode. */
export type SourceToken = TokenMeta & ({ readonly codes: TokenCodes; readonly activation?: undefined } | { readonly activation: Float32Array | RingSlot; readonly codes?: undefined });

/** What the stream describes about itself (known after the first run started, or from a trace header). */
export interface SourceInfo {
  readonly model: string;
  /** The model site the activations come from ("layer 37 resid_post", "model.layers.2"). */
  readonly hookpoint: string;
  readonly dIn: number;
  /** Width of the codes a source brings itself (a trace); undefined when the Session's SAE encodes. */
  readonly dSae?: number;
}

/** One run as a source sees it. */
export interface SourceRun {
  readonly messages: RunRequest['messages'];
  readonly maxNewTokens: number;
  /** The steering plan to apply (undefined: none). */
  readonly steering: SteeringPlan | undefined;
  /** The Session's SAE (for steering vectors, and for sources that encode themselves). */
  readonly sae: Sae | undefined;
  /** Aborted on cancel: the source stops producing and releases what it holds. */
  readonly signal: AbortSignal;
}

export interface TokenSource {
  /** 'remote', 'local', 'trace', or a custom source's name (for messages and trace headers). */
  readonly kind: string;
  /** Whether the source needs the Session's SAE (false for a trace, which carries its codes). */
  readonly needsSae: boolean;
  /** Whether `clamp` entries of a steering plan can be honoured. */
  readonly canClamp: boolean;
  /** The GPU device the SAE must live on to take this source's activations without a copy. */
  readonly device?: GPUDevice | undefined;
  /** What the stream is, once known. */
  readonly info: SourceInfo | undefined;
  /** Tokens of one run, in position order (prompt first). Throws a named error when the source fails. */
  generate(run: SourceRun): AsyncIterable<SourceToken>;
  /** Frees what the source holds (GPU ring, model). */
  destroy?(): void | Promise<void>;
}
