/** Styles of `<loupe-token-stream>` (custom properties documented on the class). */
import { css } from 'lit';

export const tokenStreamStyles = css`
  :host {
    display: block;
    position: relative;
    height: var(--loupe-stream-height, 24rem);
  }
  .scroller {
    box-sizing: border-box;
    height: 100%;
    overflow: auto;
    border: 1px solid var(--_border);
    border-radius: 4px;
    background: var(--_bg);
  }
  [role='listbox'] {
    padding: 0.25rem 0.5rem;
    font-family: var(--loupe-stream-font, ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace);
    font-size: 0.9em;
    line-height: 1.6;
  }
  .spacer {
    display: block;
  }
  .chunk {
    white-space: pre-wrap;
    overflow-wrap: anywhere;
    padding-left: 0.5rem;
    border-left: 3px solid transparent;
  }
  .chunk.prompt {
    border-left-color: var(--loupe-prompt-color, #94a3b8);
    color: var(--_muted);
  }
  .chunk.thinking {
    border-left-color: var(--loupe-thinking-color, #a78bfa);
  }
  .chunk.answer {
    border-left-color: var(--loupe-answer-color, #16a34a);
    font-weight: 600;
  }
  .phase-label {
    display: inline-block;
    margin-right: 0.5rem;
    font: 600 0.7rem/1.2 var(--loupe-font, system-ui, sans-serif);
    letter-spacing: 0.04em;
    text-transform: uppercase;
    color: var(--_muted);
  }
  .tok {
    border-radius: 2px;
    cursor: pointer;
  }
  .tok:empty {
    display: inline-block;
    min-width: 0.3em;
  }
  /* Shade = activation / the feature's max so far; both are custom properties, so a new
     maximum re-shades every token by changing one property on the list, without a render. */
  .tok.s {
    --_c0: color-mix(in srgb, var(--_h0) calc(var(--loupe-a0, 0) / var(--loupe-m0, 1) * 100%), transparent);
    --_c1: color-mix(in srgb, var(--_h1) calc(var(--loupe-a1, 0) / var(--loupe-m1, 1) * 100%), transparent);
    --_c2: color-mix(in srgb, var(--_h2) calc(var(--loupe-a2, 0) / var(--loupe-m2, 1) * 100%), transparent);
    background-color: var(--_c0);
    background-image: linear-gradient(var(--_c1), var(--_c1)), linear-gradient(var(--_c2), var(--_c2));
  }
  .tok.nl::before {
    content: '↵';
    opacity: 0.35;
  }
  .tok.steered {
    text-decoration: underline wavy var(--loupe-steered, #db2777);
  }
  .tok.nonfinite {
    outline: 1px dashed var(--_error);
  }
  .tok[aria-selected='true'] {
    outline: 1px solid var(--_accent);
  }
  .tok:focus-visible {
    outline: 2px solid var(--_accent);
  }
  .tip {
    position: absolute;
    z-index: 2;
    top: 0;
    left: 0;
    box-sizing: border-box;
    max-width: min(28rem, 95%);
    padding: 0.4rem 0.6rem;
    border-radius: 4px;
    background: var(--loupe-tooltip-bg, #111827);
    color: var(--loupe-tooltip-fg, #f9fafb);
    font: 0.8rem/1.35 var(--loupe-font, system-ui, sans-serif);
    box-shadow: 0 2px 8px rgb(0 0 0 / 0.25);
    pointer-events: none;
  }
  .tip[hidden] {
    display: none;
  }
  .tip ol {
    margin: 0.25rem 0 0;
    padding-left: 1.25rem;
  }
  .tip-token {
    font-family: var(--loupe-stream-font, ui-monospace, monospace);
    white-space: pre;
  }
  .tip-val,
  .tip-id {
    opacity: 0.75;
    font-variant-numeric: tabular-nums;
  }
  .follow {
    position: absolute;
    right: 1.25rem;
    bottom: 0.75rem;
  }
  .empty {
    padding: 0.5rem;
  }
`;
