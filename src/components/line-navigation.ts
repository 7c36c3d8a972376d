/**
 * ArrowUp / ArrowDown in wrapped text: the token on the visual line above or below, nearest the
 * same x. Lines are found from the tokens' boxes, so the answer follows the current width; pure
 * apart from the box lookup the element passes in.
 */

/** Tokens scanned looking for the neighbouring line (a line holds far fewer). */
const LINE_SCAN_LIMIT = 512;

/**
 * The index of the token on the next (`dir` 1) or previous (−1) line whose left edge is the last
 * one at or before token `i`'s left edge (the line's end when that line is shorter). `rectOf(j)`
 * gives token j's box, or undefined when it is not rendered; then, and at the first or last
 * line, the neighbour in the sequence (i ± 1, clamped to [0, n)) is returned.
 */
export function lineNeighbour(i: number, dir: 1 | -1, n: number, rectOf: (j: number) => DOMRectReadOnly | undefined): number {
  const step = Math.min(n - 1, Math.max(0, i + dir));
  const here = rectOf(i);
  if (here === undefined) return step;
  const half = here.height / 2;
  const x = here.left;
  let lineTop: number | undefined;
  let best = -1;
  for (let j = i + dir, scanned = 0; j >= 0 && j < n && scanned < LINE_SCAN_LIMIT; j += dir, scanned++) {
    const r = rectOf(j);
    if (r === undefined || r.height === 0) break;
    if (lineTop === undefined) {
      // Still on token i's line: keep going until a token sits half a line lower (higher).
      if (dir > 0 ? r.top <= here.top + half : r.top >= here.top - half) continue;
      lineTop = r.top;
    } else if (Math.abs(r.top - lineTop) > half) break;
    if (dir > 0) {
      // Walking right along the next line: the last token starting at or before x.
      if (r.left > x + 1 && best >= 0) break;
      best = j;
      if (r.left > x + 1) break;
    } else {
      // Walking left along the previous line: the first token starting at or before x.
      best = j;
      if (r.left <= x + 1) break;
    }
  }
  return best >= 0 ? best : step;
}
