/**
 * Styles every element shares: the theme's custom properties with their defaults, focus rings,
 * and a visually-hidden class for text meant only for screen readers. System colours
 * (Canvas/CanvasText) keep the defaults readable in light and dark colour schemes.
 */
import { css } from 'lit';

export const themeStyles = css`
  :host {
    font-family: var(--loupe-font, system-ui, sans-serif);
    color: var(--loupe-fg, CanvasText);
    --_bg: var(--loupe-bg, Canvas);
    --_muted: var(--loupe-muted, color-mix(in srgb, CanvasText 60%, transparent));
    --_border: var(--loupe-border, color-mix(in srgb, CanvasText 20%, transparent));
    --_accent: var(--loupe-accent, #2563eb);
    --_h0: var(--loupe-highlight, #f97316);
    --_h1: var(--loupe-highlight-2, #0ea5e9);
    --_h2: var(--loupe-highlight-3, #22c55e);
    --_error: var(--loupe-error, #b91c1c);
  }
  :host([hidden]) {
    display: none;
  }
  :focus-visible {
    outline: 2px solid var(--_accent);
    outline-offset: 1px;
  }
  .sr-only {
    position: absolute;
    width: 1px;
    height: 1px;
    padding: 0;
    margin: -1px;
    overflow: hidden;
    clip-path: inset(50%);
    white-space: nowrap;
    border: 0;
  }
  .muted {
    color: var(--_muted);
  }
  .error {
    color: var(--_error);
  }
  button,
  input,
  select,
  textarea {
    font: inherit;
  }
`;
