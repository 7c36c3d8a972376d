/**
 * The Session's contract with components: per-token readouts, running statistics and status.
 * Components read only these types (no GPU, no fetching); the Session fills them.
 */
import type { Phase } from '../sources/frames.js';
import type { FeatureCatalog } from '../features/types.js';
import type { SteeringPlan } from '../steer/plan.js';

export type { Phase };

/** One token of a generation (prompt tokens included) and its SAE features. */
export interface TokenReadout {
  /** Position in the whole sequence (prompt tokens first). */
  readonly position: number;
  readonly tokenId: number;
  /** Decoded text piece (untrusted: render as text). */
  readonly text: string;
  readonly phase: Phase;
  /** Steering was applied at this position. */
  readonly steered: boolean;
  /** Active features, strongest first (the SAE's codes for this token). */
  readonly indices: Uint32Array;
  readonly values: Float32Array;
  /** The activation held NaN/±Inf: no features (shown as such, never dropped). */
  readonly nonFinite: boolean;
}

/** Running statistics of one feature over the tokens seen so far. */
export interface FeatureStats {
  readonly featureId: number;
  /** Tokens where the feature was active. */
  readonly count: number;
  /** Sum and maximum of its activation over those tokens. */
  readonly sum: number;
  readonly max: number;
  /** Position of the maximum (-1 if never active). */
  readonly maxPosition: number;
  /** The same per phase. */
  readonly byPhase: Readonly<Record<Phase, { readonly count: number; readonly sum: number; readonly max: number }>>;
}

/** Read side of the readout store: what every component gets. */
export interface Readouts {
  /** dSae of the SAE producing the codes. */
  readonly dSae: number;
  /** Tokens so far, in position order. */
  readonly tokens: readonly TokenReadout[];
  /** Activation of `featureId` at token index `i` of `tokens` (0 when inactive). */
  activation(i: number, featureId: number): number;
  /** Statistics of one feature (all zero when never active). */
  stats(featureId: number): FeatureStats;
  /** The `n` features with the highest mean activation over the last `window` tokens (default 1: "now"). */
  topRecent(n: number, window?: number): FeatureStats[];
  /** The `n` features with the highest summed activation over the run (optionally one phase). */
  topOverall(n: number, phase?: Phase): FeatureStats[];
  /** Activation of `featureId` over the last `length` tokens, oldest first (for sparklines). */
  series(featureId: number, length: number): Float32Array;
}

export type SessionStatus =
  /** Nothing loaded yet. */
  | 'idle'
  /** Loading the source or the SAE (see `SessionProgress`). */
  | 'loading'
  | 'ready'
  | 'generating'
  | 'done'
  | 'cancelled'
  | 'error'
  /** The SAE cannot run here (e.g. no WebGPU and too large for the CPU fallback); `message` says why. */
  | 'unsupported';

export interface SessionProgress {
  /** What is loading: a file name or a step ("tokenizer", "SAE weights"). */
  readonly item: string;
  readonly loaded: number;
  readonly total: number | undefined;
}

/** What a run asks for. */
export interface RunRequest {
  readonly messages: ReadonlyArray<{ readonly role: 'system' | 'user' | 'assistant'; readonly content: string }>;
  readonly maxNewTokens: number;
  /** Steering for this run (default: the session's current plan). `null` runs unsteered. */
  readonly steering?: SteeringPlan | null;
  readonly signal?: AbortSignal;
}

export interface RunSummary {
  readonly status: 'done' | 'cancelled' | 'error';
  readonly promptTokens: number;
  readonly generatedTokens: number;
  /** Generated text (thinking and answer). */
  readonly text: string;
  readonly error?: Error;
}

/**
 * Events a Session dispatches (it is an EventTarget; `detail` of a CustomEvent):
 * - `token`    detail: TokenReadout — one per token, in position order
 * - `status`   detail: { status: SessionStatus, message?: string }
 * - `progress` detail: SessionProgress
 * - `reset`    detail: undefined — a new run cleared the readouts
 * - `steering` detail: SteeringPlan | undefined — the plan changed
 * - `baseline-token` detail: TokenReadout — one per token of a side-by-side run's unsteered
 *   baseline (kept in `baseline`, not `readouts`); position 0 starts a new baseline
 */
export interface SessionEventMap {
  token: CustomEvent<TokenReadout>;
  'baseline-token': CustomEvent<TokenReadout>;
  status: CustomEvent<{ status: SessionStatus; message?: string }>;
  progress: CustomEvent<SessionProgress>;
  reset: CustomEvent<undefined>;
  steering: CustomEvent<SteeringPlan | undefined>;
}

/** What components need from a Session (the Session class implements it). */
export interface SessionLike extends EventTarget {
  readonly status: SessionStatus;
  /** Why the status is 'error' or 'unsupported'. */
  readonly message: string | undefined;
  readonly readouts: Readouts;
  readonly catalog: FeatureCatalog | undefined;
  readonly steering: SteeringPlan | undefined;
  setSteering(plan: SteeringPlan | undefined): void;
  run(request: RunRequest): Promise<RunSummary>;
  cancel(): void;
}

/** A steered run and an unsteered one on the same prompt, for `<loupe-steer-panel>`. */
export interface SideBySide {
  readonly steered: RunSummary;
  readonly baseline: RunSummary;
}

/** Sessions that can also run the unsteered baseline next to the steered run. */
export interface ComparingSession extends SessionLike {
  /** The baseline run's readouts (undefined before the first side-by-side run). */
  readonly baseline: Readouts | undefined;
  /** Runs `request` steered (the current plan) and unsteered, one after the other. */
  sideBySide(request: Omit<RunRequest, 'steering'>): Promise<SideBySide>;
}
