/** Styles of `<loupe-steer-panel>` (custom properties documented on the class). */
import { css } from 'lit';

export const steerPanelStyles = css`
  :host {
    display: block;
    font-size: 0.9rem;
  }
  .panel > * + * {
    margin-top: 0.6rem;
  }
  h3 {
    margin: 0;
    font-size: 1rem;
  }
  ul {
    list-style: none;
    margin: 0;
    padding: 0;
  }
  .results button {
    display: block;
    width: 100%;
    text-align: left;
    background: transparent;
    color: inherit;
    border: none;
    border-bottom: 1px solid var(--_border);
    padding: 0.2rem 0.3rem;
    cursor: pointer;
    overflow-wrap: anywhere;
  }
  .entry {
    display: grid;
    grid-template-columns: minmax(0, 1fr) auto;
    gap: 0.25rem 0.5rem;
    align-items: center;
    padding: 0.3rem 0;
    border-bottom: 1px solid var(--_border);
  }
  .entry .name {
    overflow-wrap: anywhere;
  }
  .entry .controls {
    grid-column: 1 / -1;
    display: flex;
    gap: 0.5rem;
    align-items: center;
  }
  .entry input[type='range'] {
    flex: 1;
  }
  output {
    min-width: 3.5em;
    text-align: right;
    font-variant-numeric: tabular-nums;
  }
  fieldset {
    border: 1px solid var(--_border);
    border-radius: 4px;
    margin: 0;
  }
  fieldset label {
    display: block;
  }
  input[type='number'] {
    width: 6em;
  }
  .actions {
    display: flex;
    flex-wrap: wrap;
    gap: 0.5rem;
  }
  .actions button.primary {
    background: var(--_accent);
    border: 1px solid var(--_accent);
    color: white;
    border-radius: 3px;
    padding: 0.25rem 0.75rem;
  }
  button:disabled {
    opacity: 0.55;
    cursor: not-allowed;
  }
  .comparison {
    display: grid;
    grid-template-columns: 1fr 1fr;
    gap: 0.75rem;
  }
  .comparison h4 {
    margin: 0 0 0.25rem;
  }
  .gen {
    white-space: pre-wrap;
    overflow-wrap: anywhere;
    border: 1px solid var(--_border);
    border-radius: 4px;
    padding: 0.4rem;
    max-height: 20rem;
    overflow: auto;
    font-family: var(--loupe-stream-font, ui-monospace, monospace);
    font-size: 0.85rem;
  }
`;
