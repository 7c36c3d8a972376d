/**
 * From source tokens to readouts: tokens that carry codes pass through; tokens that carry an
 * activation are encoded with the Session's SAE. The source is read ahead while an encode is in
 * flight, and what arrived meanwhile is encoded as one batch — so a prompt that arrives in one
 * burst costs a few encodes, not one per token, while a streamed generation (one token at a
 * time, slower than the encode) is still encoded token by token as it arrives. GPU ring slots
 * are batched as a run of consecutive slots widened in one pass (ActivationRing.widen).
 */
import { SessionError, ShapeMismatchError } from '../errors.js';
import type { Sae } from '../runtime/sae.js';
import { tokenCodes, type SparseCodes } from '../sae/codes.js';
import type { RingSlot, SourceToken, TokenCodes } from './source.js';
import type { TokenReadout } from './types.js';

/** Tokens encoded together at most: bounds the host memory of one batch and the ring slots it pins. */
export const DEFAULT_MAX_BATCH = 256;

export interface ReadoutPipelineOptions {
  readonly sae: Sae | undefined;
  readonly signal: AbortSignal;
  /** Tokens per encode at most (default 256; at most half the ring's slots for ring activations). */
  readonly maxBatch?: number;
}

type Pulled = { readonly kind: 'token'; readonly token: SourceToken } | { readonly kind: 'done' } | { readonly kind: 'failed'; readonly error: unknown };
type Encoded = { readonly kind: 'encoded'; readonly readouts: TokenReadout[] } | { readonly kind: 'encode-failed'; readonly error: unknown };

function isRingSlot(a: Float32Array | RingSlot): a is RingSlot {
  return !(a instanceof Float32Array);
}

export function readoutOf(t: SourceToken, codes: TokenCodes): TokenReadout {
  return { position: t.position, tokenId: t.tokenId, text: t.text, phase: t.phase, steered: t.steered, indices: codes.indices, values: codes.values, nonFinite: codes.nonFinite };
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new DOMException('The run was cancelled.', 'AbortError');
}

/** Whether token b's activation can join token a's in one encode. */
function joins(a: SourceToken, b: SourceToken, runLength: number): boolean {
  const x = a.activation;
  const y = b.activation;
  if (x === undefined || y === undefined) return false;
  if (!isRingSlot(x) || !isRingSlot(y)) return !isRingSlot(x) && !isRingSlot(y);
  return x.ring === y.ring && y.slot === (x.slot + 1) % x.ring.slots && runLength < x.ring.slots;
}

async function encodeRun(sae: Sae | undefined, run: readonly SourceToken[]): Promise<SparseCodes> {
  if (sae === undefined) throw new SessionError('This source streams raw activations; the Session needs an SAE to encode them. Load one first (session.loadSae or Session.open).');
  const first = run[0]?.activation;
  if (first === undefined) throw new SessionError('internal: an empty encode batch');
  const { dIn } = sae.config;
  if (isRingSlot(first)) {
    if (sae.backend !== 'webgpu') throw new SessionError("The activations sit in a GPU ring, but the SAE runs on the CPU; load the SAE on the stream's device (or give the source no device).");
    return sae.encode(first.ring.widen(first.slot, run.length), { tokens: run.length });
  }
  const x = new Float32Array(run.length * dIn);
  run.forEach((t, i) => {
    const a = t.activation;
    if (a === undefined || isRingSlot(a)) throw new SessionError('internal: mixed activation kinds in one batch');
    if (a.length !== dIn) throw new ShapeMismatchError(`The activation at position ${t.position} has ${a.length} values, but the SAE reads dIn = ${dIn}: the SAE belongs to another model or layer.`);
    x.set(a, i * dIn);
  });
  return sae.encode(x, { tokens: run.length });
}

/** Readouts of `items`, in order; activations are encoded in runs of compatible tokens. */
async function encodeBatch(sae: Sae | undefined, items: readonly SourceToken[]): Promise<TokenReadout[]> {
  const out: TokenReadout[] = [];
  let i = 0;
  while (i < items.length) {
    const item = items[i];
    if (item === undefined) break;
    if (item.codes !== undefined) {
      out.push(readoutOf(item, item.codes));
      i++;
      continue;
    }
    let j = i + 1;
    while (j < items.length && joins(items[j - 1] as SourceToken, items[j] as SourceToken, j - i)) j++;
    const run = items.slice(i, j);
    const codes = await encodeRun(sae, run);
    const nonFinite = new Set(codes.nonFiniteTokens);
    run.forEach((t, k) => out.push(readoutOf(t, { ...tokenCodes(codes, k), nonFinite: nonFinite.has(k) })));
    i = j;
  }
  return out;
}

/**
 * Readouts of a source's tokens, in order. A source that fails has every token it delivered
 * encoded and yielded before its error is rethrown; an abort stops at once.
 */
export async function* readoutsOf(tokens: AsyncIterable<SourceToken>, options: ReadoutPipelineOptions): AsyncGenerator<TokenReadout> {
  const { sae, signal } = options;
  const it = tokens[Symbol.asyncIterator]();
  const pending: SourceToken[] = [];
  let maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_BATCH);
  let pull: Promise<Pulled> | undefined;
  let encoding: Promise<Encoded> | undefined;
  let ended = false;
  let failure: { error: unknown } | undefined;
  try {
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      if (encoding === undefined && pending.length > 0) {
        encoding = encodeBatch(sae, pending.splice(0)).then(
          (readouts): Encoded => ({ kind: 'encoded', readouts }),
          (error: unknown): Encoded => ({ kind: 'encode-failed', error }),
        );
      }
      if (!ended && pull === undefined && pending.length < maxBatch) {
        pull = it.next().then(
          (r): Pulled => (r.done === true ? { kind: 'done' } : { kind: 'token', token: r.value }),
          (error: unknown): Pulled => ({ kind: 'failed', error }),
        );
      }
      if (encoding === undefined && pull === undefined) break;
      const next: Encoded | Pulled = await Promise.race([encoding, pull].filter((p): p is Promise<Encoded> | Promise<Pulled> => p !== undefined));
      switch (next.kind) {
        case 'encoded':
          encoding = undefined;
          for (const r of next.readouts) {
            if (signal.aborted) throw abortError(signal);
            yield r;
          }
          break;
        case 'encode-failed':
          encoding = undefined;
          throw next.error;
        case 'token': {
          pull = undefined;
          const a = next.token.activation;
          // The ring overwrites a slot `slots` tokens later: never hold more than half of them unencoded.
          if (a !== undefined && isRingSlot(a)) maxBatch = Math.min(maxBatch, Math.max(1, a.ring.slots >> 1));
          pending.push(next.token);
          break;
        }
        case 'done':
          pull = undefined;
          ended = true;
          break;
        case 'failed':
          pull = undefined;
          ended = true;
          failure = { error: next.error };
          break;
      }
    }
    if (failure !== undefined) throw failure.error;
  } finally {
    if (!ended) {
      // Stop the source. A pull still in flight settles once the source sees the abort; do not wait for it here.
      const stop = it.return?.(undefined);
      if (pull === undefined) await stop?.catch(() => undefined);
      else void stop?.catch(() => undefined);
    }
  }
}
