/**
 * Virtualisation of a token stream that wraps like text. Tokens are grouped into chunks of whole
 * lines (a chunk closes after a newline once it holds `minTokens`, at a phase change, or at
 * `maxTokens` whatever the text); each chunk is one block in the page, so chunks stack
 * vertically and only those near the viewport need to be in the DOM. Chunk heights are measured
 * once rendered and estimated (px per token so far) until then. Everything here is pure: the
 * element feeds tokens and measurements in and reads ranges out.
 */
import type { Phase, TokenReadout } from '../session/types.js';

export interface TokenChunk {
  /** Index of the chunk in the stream. */
  readonly index: number;
  /** First token (index into `Readouts.tokens`). */
  readonly start: number;
  /** One past the last token; grows while the chunk is the open tail. */
  end: number;
  readonly phase: Phase;
}

/** The chunks to render and the space the others take above and below them. */
export interface ChunkRange {
  /** First and last rendered chunk (inclusive); first > last when there is nothing. */
  readonly first: number;
  readonly last: number;
  /** Height of the chunks above `first` and below `last`, px. */
  readonly above: number;
  readonly below: number;
}

export const EMPTY_RANGE: ChunkRange = { first: 0, last: -1, above: 0, below: 0 };

/** Same chunks, and spacers within half a pixel (sums of heights differ in the last bits by order). */
export function sameRange(a: ChunkRange, b: ChunkRange): boolean {
  return a.first === b.first && a.last === b.last && Math.abs(a.above - b.above) < 0.5 && Math.abs(a.below - b.below) < 0.5;
}

export class TokenChunks {
  readonly minTokens: number;
  readonly maxTokens: number;
  readonly chunks: TokenChunk[] = [];
  /** Measured chunk heights (px), NaN until measured. */
  readonly heights: number[] = [];
  #indexed = 0;
  #first: TokenReadout | undefined;
  #endsLine = false;
  #measuredPx = 0;
  #measuredTokens = 0;
  /** Token count of each chunk when it was measured (the open tail grows after). */
  readonly #measuredTokensOf = new Map<number, number>();

  constructor(minTokens = 32, maxTokens = 128) {
    this.minTokens = minTokens;
    this.maxTokens = maxTokens;
  }

  /** Tokens indexed so far. */
  get length(): number {
    return this.#indexed;
  }

  /**
   * Brings the index up to date with `tokens`; starts over when the stream was reset (fewer
   * tokens, or a different first token). Returns whether anything changed. Appending n tokens
   * costs O(n).
   */
  sync(tokens: readonly TokenReadout[]): boolean {
    let changed = false;
    if (tokens.length < this.#indexed || (this.#indexed > 0 && tokens[0] !== this.#first)) {
      this.clear();
      changed = true;
    }
    if (tokens.length === this.#indexed) return changed;
    this.#first = tokens[0];
    for (let i = this.#indexed; i < tokens.length; i++) {
      const t = tokens[i];
      if (t === undefined) continue;
      const tail = this.chunks[this.chunks.length - 1];
      const size = tail === undefined ? 0 : tail.end - tail.start;
      const close = tail === undefined || tail.phase !== t.phase || size >= this.maxTokens || (size >= this.minTokens && this.#endsLine);
      if (close) {
        this.chunks.push({ index: this.chunks.length, start: i, end: i + 1, phase: t.phase });
        this.heights.push(NaN);
      } else {
        tail.end = i + 1;
      }
      this.#endsLine = t.text.endsWith('\n');
    }
    this.#indexed = tokens.length;
    return true;
  }

  clear(): void {
    this.chunks.length = 0;
    this.heights.length = 0;
    this.#indexed = 0;
    this.#first = undefined;
    this.#endsLine = false;
    this.#measuredPx = 0;
    this.#measuredTokens = 0;
    this.#measuredTokensOf.clear();
  }

  /** Forgets measured heights (the width changed, so every chunk wraps differently). */
  forgetHeights(): void {
    this.heights.fill(NaN);
    this.#measuredPx = 0;
    this.#measuredTokens = 0;
    this.#measuredTokensOf.clear();
  }

  /** Records a rendered chunk's height; returns whether it changed. */
  measure(index: number, px: number): boolean {
    const c = this.chunks[index];
    const old = this.heights[index];
    if (c === undefined || old === px) return false;
    const tokens = c.end - c.start;
    if (old !== undefined && !Number.isNaN(old)) {
      this.#measuredPx -= old;
      this.#measuredTokens -= this.#measuredTokensOf.get(index) ?? tokens;
    }
    this.heights[index] = px;
    this.#measuredTokensOf.set(index, tokens);
    this.#measuredPx += px;
    this.#measuredTokens += tokens;
    return true;
  }

  /** Average px per token over the measured chunks (a line of ~12 tokens at 24 px until then). */
  get pxPerToken(): number {
    return this.#measuredTokens > 0 ? this.#measuredPx / this.#measuredTokens : 2;
  }

  /** A chunk's height: measured, or estimated from its token count. */
  height(index: number): number {
    const h = this.heights[index];
    if (h !== undefined && !Number.isNaN(h)) return h;
    const c = this.chunks[index];
    return c === undefined ? 0 : (c.end - c.start) * this.pxPerToken;
  }

  /** Top of a chunk, px from the top of the stream. O(chunks). */
  top(index: number): number {
    let y = 0;
    for (let c = 0; c < index && c < this.chunks.length; c++) y += this.height(c);
    return y;
  }

  /** The chunk holding token `i` (binary search), or -1. */
  chunkOf(i: number): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const c = this.chunks[mid];
      if (c === undefined) break;
      if (i < c.start) hi = mid - 1;
      else if (i >= c.end) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /**
   * Chunks covering [scrollTop − overscan, scrollTop + viewport + overscan]; with `atBottom`, the
   * last chunks filling viewport + overscan (the view follows the newest token).
   */
  range(scrollTop: number, viewport: number, overscan: number, atBottom: boolean): ChunkRange {
    const n = this.chunks.length;
    if (n === 0) return EMPTY_RANGE;
    let total = 0;
    for (let c = 0; c < n; c++) total += this.height(c);
    if (atBottom) {
      let first = n - 1;
      let filled = this.height(first);
      while (first > 0 && filled < viewport + overscan) filled += this.height(--first);
      return { first, last: n - 1, above: total - filled, below: 0 };
    }
    const from = Math.max(0, scrollTop - overscan);
    const to = scrollTop + viewport + overscan;
    let y = 0;
    let first = -1;
    let above = 0;
    let last = n - 1;
    let through = total;
    for (let c = 0; c < n; c++) {
      const h = this.height(c);
      if (first < 0 && (y + h > from || c === n - 1)) {
        first = c;
        above = y;
      }
      y += h;
      if (first >= 0 && y >= to) {
        last = c;
        through = y;
        break;
      }
    }
    return { first, last, above, below: Math.max(0, total - through) };
  }
}
