/**
 * Where steering should start in an R1 generation. R1 opens over 95 % of its English traces
 * with "Okay, so the user …" and treats that sentence like part of the prompt (attention sinks
 * sit at its end), so steering from the first response token does little; Goodfire steered
 * once this prefix was complete. The rule matches the server's (docs/protocol.md,
 * start: "after-prefix"): the first generated position after the text matches
 * `^\s*(<think>\s*)?Okay, so [^.!?\n]*[.!?\n]`, or the 48th generated token if it has not.
 */

export const RESPONSE_PREFIX = /^\s*(<think>\s*)?Okay, so [^.!?\n]*[.!?\n]/;
export const PREFIX_FALLBACK_TOKENS = 48;

export class ResponsePrefixDetector {
  #text = '';
  #count = 0;
  #start: number | undefined;
  readonly #decoder = new TextDecoder();

  constructor(
    readonly pattern: RegExp = RESPONSE_PREFIX,
    readonly fallbackTokens: number = PREFIX_FALLBACK_TOKENS,
  ) {}

  /**
   * Feeds one generated token (its position and UTF-8 piece). Returns the position steering
   * starts at once it is known (the next position after the prefix), else undefined.
   */
  push(position: number, piece: Uint8Array | string): number | undefined {
    if (this.#start !== undefined) return this.#start;
    this.#text += typeof piece === 'string' ? piece : this.#decoder.decode(piece, { stream: true });
    this.#count++;
    if (this.pattern.test(this.#text) || this.#count >= this.fallbackTokens) this.#start = position + 1;
    return this.#start;
  }

  get start(): number | undefined {
    return this.#start;
  }
}
