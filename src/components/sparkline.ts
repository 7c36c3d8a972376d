/**
 * Sparkline geometry: an activation series as the `points` of an SVG polyline. Pure, so the
 * element's SVG is a text binding of numbers (nothing from a file reaches the markup).
 */

/**
 * Points "x,y x,y …" for `series` in a `width` × `height` box, y = 0 at the top. Values are
 * scaled by `max` (default: the series' own maximum); an all-zero series lies on the bottom edge.
 */
export function sparklinePoints(series: ArrayLike<number>, width: number, height: number, max?: number): string {
  const n = series.length;
  if (n === 0) return '';
  let top = max ?? 0;
  if (max === undefined) for (let i = 0; i < n; i++) top = Math.max(top, series[i] ?? 0);
  const dx = n > 1 ? width / (n - 1) : 0;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const v = series[i] ?? 0;
    const level = top > 0 && Number.isFinite(v) ? Math.min(1, Math.max(0, v / top)) : 0;
    out.push(`${(i * dx).toFixed(1)},${(height - level * height).toFixed(1)}`);
  }
  return out.join(' ');
}
