/**
 * The feature catalog's contract: what components and the Session know about a feature beyond
 * its activations — a label, max-activating examples, a place on the feature map. Every source
 * (Goodfire autointerp CSV / SQLite, Neuronpedia exports, Goodfire-schema DuckDB example files,
 * Tiny-R1's database) is read into this one shape.
 */

/** One feature's label, as Goodfire's `autointerp` table gives it. */
export interface FeatureLabel {
  readonly featureId: number;
  /** Free text from an untrusted file: render as text, never as HTML. */
  readonly label: string;
  /** Autointerp quality score in [0, 1] where the file has one. */
  readonly quality?: number;
  readonly interestingness?: number;
  /** Goodfire marks unused features with the label "dead feature". */
  readonly dead: boolean;
}

/** One token of an example's context window. */
export interface ExampleToken {
  readonly tokenIdx: number;
  readonly tokenId: number;
  /** Decoded text of the token (untrusted; render as text). */
  readonly text: string;
  /** This feature's activation at the token (0 where the file stores none). */
  readonly activation: number;
}

/** A max-activating example: the hit token and its context (|token_idx − hit| ≤ window). */
export interface FeatureExample {
  readonly featureId: number;
  readonly sequenceId: number;
  /** token_idx of the hit within its sequence. */
  readonly tokenIdx: number;
  /** Activation at the hit. */
  readonly strength: number;
  readonly tokens: readonly ExampleToken[];
}

export interface ExampleQuery {
  /** Examples to return, strongest first (default 10). */
  readonly limit?: number;
  /** Context tokens each side of the hit (default 5, Goodfire's window). */
  readonly window?: number;
  readonly signal?: AbortSignal;
}

/** Labels, examples and map coordinates for one SAE; any part may be missing. */
export interface FeatureCatalog {
  /** Number of features the catalog describes (the SAE's dSae when known). */
  readonly size: number;
  label(featureId: number): FeatureLabel | undefined;
  /** Case-insensitive label search, best matches first. */
  search(query: string, limit?: number): FeatureLabel[];
  /** Max-activating examples (empty when the catalog has no example database). */
  examples(featureId: number, query?: ExampleQuery): Promise<FeatureExample[]>;
  /** 2-D feature-map coordinates, [x0, y0, x1, y1, …] in [0, 1], or undefined. */
  readonly map?: Float32Array;
  /** Frees the example database (DuckDB-WASM worker), if any. */
  close?(): Promise<void>;
}
