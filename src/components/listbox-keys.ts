/**
 * Keyboard model shared by the feature listboxes (feature list, the map's accessible list): one
 * roving tab stop; ↑/↓ move, Home/End jump, Enter or Space select. Pure apart from focus.
 */

export type ListboxKey =
  /** Focus moved to this option (the caller records it as the new tab stop). */
  | { readonly kind: 'moved'; readonly option: HTMLElement }
  /** Enter or Space on `option`. */
  | { readonly kind: 'activate'; readonly option: HTMLElement }
  | undefined;

/**
 * Handles `e` for `options` (in order) with `current` the option the event came from; moves the
 * roving tabindex and focus, and calls preventDefault for the keys it uses.
 */
export function listboxKey(e: KeyboardEvent, options: readonly HTMLElement[], current: HTMLElement | undefined): ListboxKey {
  if (options.length === 0) return undefined;
  const i = current === undefined ? 0 : Math.max(0, options.indexOf(current));
  let next: number;
  switch (e.key) {
    case 'ArrowDown':
      next = Math.min(options.length - 1, i + 1);
      break;
    case 'ArrowUp':
      next = Math.max(0, i - 1);
      break;
    case 'Home':
      next = 0;
      break;
    case 'End':
      next = options.length - 1;
      break;
    case 'Enter':
    case ' ':
      e.preventDefault();
      return current !== undefined ? { kind: 'activate', option: current } : undefined;
    default:
      return undefined;
  }
  e.preventDefault();
  const target = options[next];
  if (target === undefined) return undefined;
  for (const o of options) o.tabIndex = o === target ? 0 : -1;
  target.focus();
  return { kind: 'moved', option: target };
}
