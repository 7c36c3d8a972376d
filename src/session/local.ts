/**
 * The in-page model as a `TokenSource`: `LocalModelSource` computes each token's codes itself,
 * on the model's own GPU buffer, with the SAE attached here for the run; steering is the
 * additive vector of the plan's pushes (steer/plan.ts pushVector), fed to the model from the
 * plan's start. The model stays the caller's: the Session never disposes it. Clamps need the feature's current activation inside the graph, which the
 * tapped graph does not compute: they are refused with `UnsupportedError`.
 */
import { UnsupportedError } from '../errors.js';
import type { LocalModelSource } from '../sources/local.js';
import { pushVector } from '../steer/plan.js';
import type { SourceInfo, SourceRun, SourceToken, TokenSource } from './source.js';

export interface LocalTokenSourceOptions {
  /** Sample instead of greedy decoding (default false). */
  readonly doSample?: boolean;
  /** Model name for trace headers (default 'local model'). */
  readonly model?: string;
}

const NO_CODES = { indices: new Uint32Array(0), values: new Float32Array(0), nonFinite: false } as const;

export class LocalTokenSource implements TokenSource {
  readonly kind = 'local';
  readonly needsSae = true;
  readonly canClamp = false;
  readonly #source: LocalModelSource;
  readonly #options: LocalTokenSourceOptions;

  constructor(source: LocalModelSource, options: LocalTokenSourceOptions = {}) {
    this.#source = source;
    this.#options = options;
  }

  /** The SAE must share the model's GPU device to bind its hook buffer (undefined on the wasm backend). */
  get device(): GPUDevice | undefined {
    return this.#source.gpuDevice;
  }

  get info(): SourceInfo {
    return { model: this.#options.model ?? 'local model', hookpoint: this.#source.tap.name, dIn: this.#source.tap.dIn };
  }

  async *generate(run: SourceRun): AsyncGenerator<SourceToken> {
    const plan = run.steering;
    if ((plan?.clamp?.length ?? 0) > 0) {
      throw new UnsupportedError('Clamping features is not supported on the local model: its graph adds a fixed steering vector and cannot read a feature\'s current activation. Use push (additive) steering here, or a remote source, which clamps by projection.');
    }
    const source = this.#source;
    source.attach(run.sae);
    const pushes = plan?.push ?? [];
    if (pushes.length > 0 && run.sae !== undefined) {
      source.setSteering({ vector: await pushVector(run.sae, pushes), ...(plan?.start !== undefined ? { start: plan.start } : {}) });
    } else {
      source.setSteering(undefined);
    }
    const frames = source.generate(run.messages, { maxNewTokens: run.maxNewTokens, signal: run.signal, ...(this.#options.doSample !== undefined ? { doSample: this.#options.doSample } : {}) });
    for await (const f of frames) {
      const c = f.codes;
      // A final end-of-sequence token is never fed to the model, so it has no codes.
      const codes = c === undefined ? NO_CODES : { indices: c.indices.subarray(c.offsets[0] ?? 0, c.offsets[1] ?? 0), values: c.values.subarray(c.offsets[0] ?? 0, c.offsets[1] ?? 0), nonFinite: c.nonFiniteTokens.includes(0) };
      yield { position: f.position, tokenId: f.tokenId, text: f.text, phase: f.phase, steered: f.steered, codes };
    }
  }
}

/** A `TokenSource` over the in-page ONNX model. */
export function localTokenSource(source: LocalModelSource, options: LocalTokenSourceOptions = {}): LocalTokenSource {
  return new LocalTokenSource(source, options);
}
