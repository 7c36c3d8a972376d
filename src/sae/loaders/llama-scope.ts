/**
 * Llama-Scope-R1-Distill (`fnlp` / `OpenMOSS-Team/Llama-Scope-R1-Distill`, folders such as
 * `400M-Slimpajama-400M-OpenR1-Math-220k/L15R/`): JumpReLU SAEs written by OpenMOSS' lm-saes.
 * `config.json` holds lm-saes keys (d_model, expansion_factor, hook_point_in/out, act_fn,
 * norm_activation, apply_decoder_bias_to_pre_encoder, ...) and `sae_weights.safetensors` holds
 * `encoder.weight` [dSae, dIn], `encoder.bias`, `decoder.weight` [dIn, dSae], `decoder.bias`,
 * `log_jumprelu_threshold` [dSae] and, from lm-saes' `_get_full_state_dict`, one scalar
 * `dataset_average_activation_norm.<hook_point>` per hook point.
 *
 * Formula (lm-saes `SparseAutoEncoder.encode/decode/compute_norm_factor`, the same as SAELens'
 * `llama_scope_r1_distill` loader with its norm_scaling_factor folded in):
 *   s   = sqrt(d_model) / dataset_average_activation_norm[hook_point_in]      ("dataset-wise")
 *   pre = (s·x − b_dec·apply_decoder_bias_to_pre_encoder) · encoder.weightᵀ + encoder.bias
 *   f   = pre · (pre > exp(log_jumprelu_threshold))       (thresholds are > 0, so ReLU is implied)
 *   x̂   = (f · decoder.weightᵀ + decoder.bias) / s
 * which is Loupe's jumprelu with `inputScale = s`.
 *
 * Not modelled: lm-saes compares `pre · ‖decoder column‖` (sparsity_include_decoder_norm) with
 * the threshold. SAELens ignores that factor too; it is exact when the decoder columns have unit
 * norm, and the adapter cannot check it because it never sees the decoder's values.
 */
import { SaeConfigError } from '../../errors.js';
import { dims2, header, matrix, vectorHeader, vectorOf, type ConfigJson, type SaeFormatAdapter, type TensorHeaders, type VectorValues } from './plan.js';

const LABEL = 'Llama-Scope';
const FILE = 'Llama-Scope config.json';
const THRESHOLD = 'log_jumprelu_threshold';
const NORM_PREFIX = 'dataset_average_activation_norm.';

/** Where the input scale comes from; the tensor kinds are resolved in `finish`. */
type ScaleSource =
  | { readonly kind: 'fixed'; readonly value: number }
  | { readonly kind: 'factor-tensor'; readonly tensor: string }
  | { readonly kind: 'norm-tensor'; readonly tensor: string };

function positive(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new SaeConfigError(`${what} must be a positive number, got ${JSON.stringify(v)}.`);
  return v;
}

/** The config's dataset norms: a number, {in, out}, or a map keyed by hook point (lm-saes). */
function configNorm(cfg: ConfigJson, hook: string | undefined): number | undefined {
  const v = cfg?.['dataset_average_activation_norm'];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return positive(v, `${FILE} dataset_average_activation_norm`);
  if (typeof v !== 'object' || Array.isArray(v)) throw new SaeConfigError(`${FILE} dataset_average_activation_norm must be a number or an object, got ${JSON.stringify(v)}.`);
  const map = v as Record<string, unknown>;
  const key = hook !== undefined && map[hook] !== undefined ? hook : 'in';
  const inNorm = positive(map[key], `${FILE} dataset_average_activation_norm["${key}"]`);
  // One inputScale both scales the input and unscales the output, so the two norms must agree.
  const outNorm = map['out'];
  if (key === 'in' && outNorm !== undefined && outNorm !== inNorm) {
    throw new SaeConfigError(`${FILE} dataset_average_activation_norm has in ${inNorm} but out ${JSON.stringify(outNorm)}; Loupe reconstructs the input site only, so they must be equal.`);
  }
  return inNorm;
}

/**
 * The input scale, in the order: an explicit `norm_scaling_factor` in config.json (SAELens'
 * pretrained_saes.yaml name for it); a scalar tensor `norm_scaling_factor`, or lm-saes' scalar
 * `dataset_average_activation_norm.<hook_point_in>`, in the weights; the config's
 * `dataset_average_activation_norm`. lm-saes' `compute_norm_factor` ("dataset-wise") turns a norm
 * into sqrt(d_model) / norm; SAELens' per-SAE norm_scaling_factor values for this release are
 * exactly 64 / (an f32 norm) for d_model 4096. Undefined: no scaling.
 */
function scaleSource(headers: TensorHeaders, cfg: ConfigJson, hook: string | undefined, dIn: number): ScaleSource | undefined {
  const mode = cfg?.['norm_activation'];
  const explicit = cfg?.['norm_scaling_factor'];
  if (mode === undefined || mode === null || mode === 'none' || mode === 'inference') {
    if (explicit === undefined || explicit === null) return undefined;
    // "inference" means lm-saes already folded the norm into the weights: a factor on top contradicts it.
    if (mode !== undefined && mode !== null) {
      throw new SaeConfigError(`${FILE} says norm_activation "${String(mode)}" (no input scaling) but also norm_scaling_factor ${JSON.stringify(explicit)}; remove one.`);
    }
    return { kind: 'fixed', value: positive(explicit, `${FILE} norm_scaling_factor`) };
  }
  if (mode !== 'dataset-wise') {
    throw new SaeConfigError(`Llama-Scope norm_activation ${JSON.stringify(mode)} is not supported. Should be one of: dataset-wise, inference, none.`);
  }
  if (explicit !== undefined && explicit !== null) return { kind: 'fixed', value: positive(explicit, `${FILE} norm_scaling_factor`) };
  if (headers['norm_scaling_factor'] !== undefined) return { kind: 'factor-tensor', tensor: 'norm_scaling_factor' };
  const norms = Object.keys(headers).filter((n) => n.startsWith(NORM_PREFIX));
  const named = hook !== undefined ? norms.find((n) => n === NORM_PREFIX + hook) : norms.length === 1 ? norms[0] : undefined;
  if (named !== undefined) return { kind: 'norm-tensor', tensor: named };
  const norm = configNorm(cfg, hook);
  if (norm !== undefined) return { kind: 'fixed', value: Math.sqrt(dIn) / norm };
  throw new SaeConfigError(
    `${FILE} says norm_activation "dataset-wise", but neither it (norm_scaling_factor, dataset_average_activation_norm) nor the weights (norm_scaling_factor, ${NORM_PREFIX}${hook ?? '<hook_point_in>'}) give the dataset norm.`,
  );
}

function scalar(values: VectorValues, name: string): number {
  const v = vectorOf(values, name, 1, 'a scalar');
  return v[0] ?? Number.NaN;
}

function resolveScale(src: ScaleSource | undefined, values: VectorValues, dIn: number): number {
  if (src === undefined) return 1;
  if (src.kind === 'fixed') return src.value;
  if (src.kind === 'factor-tensor') return positive(scalar(values, src.tensor), `Tensor "${src.tensor}"`);
  return Math.sqrt(dIn) / positive(scalar(values, src.tensor), `Tensor "${src.tensor}"`);
}

/** Checks d_model and d_sae (or expansion_factor × d_model) against encoder.weight [dSae, dIn]. */
function checkWidths(cfg: ConfigJson, dIn: number, dSae: number): void {
  const dModel = cfg?.['d_model'];
  if (dModel !== undefined && dModel !== dIn) {
    throw new SaeConfigError(`${FILE} says d_model ${JSON.stringify(dModel)}, but encoder.weight is [${dSae}, ${dIn}] (d_in ${dIn}).`);
  }
  const dSaeCfg = cfg?.['d_sae'];
  if (typeof dSaeCfg === 'number') {
    if (dSaeCfg !== dSae) throw new SaeConfigError(`${FILE} says d_sae ${dSaeCfg}, but encoder.weight is [${dSae}, ${dIn}] (d_sae ${dSae}).`);
    return;
  }
  const expansion = cfg?.['expansion_factor'];
  if (typeof expansion === 'number' && Math.round(expansion * dIn) !== dSae) {
    throw new SaeConfigError(`${FILE} says expansion_factor ${expansion} (d_sae ${expansion * dIn}), but encoder.weight is [${dSae}, ${dIn}] (d_sae ${dSae}).`);
  }
}

export const llamaScope: SaeFormatAdapter = {
  format: 'llama-scope',
  // log_jumprelu_threshold, or an lm-saes config, is what tells it from a plain encoder/decoder pair.
  matches: (headers, cfg) =>
    headers['encoder.weight'] !== undefined && headers['decoder.weight'] !== undefined && (headers[THRESHOLD] !== undefined || cfg?.['hook_point_in'] !== undefined),
  plan(headers, cfg) {
    const [dSae, dIn] = dims2(header(headers, 'encoder.weight', LABEL), 'encoder.weight', '[d_sae, d_model]');
    checkWidths(cfg, dIn, dSae);
    const act = cfg?.['act_fn'];
    // top_k may be present too: lm-saes keeps it as training metadata; act_fn is what runs.
    if (act !== undefined && (typeof act !== 'string' || act.toLowerCase() !== 'jumprelu')) {
      throw new SaeConfigError(`Llama-Scope act_fn ${JSON.stringify(act)} is not supported. Should be: jumprelu.`);
    }
    const hookIn = typeof cfg?.['hook_point_in'] === 'string' ? cfg['hook_point_in'] : undefined;
    const hookOut = cfg?.['hook_point_out'];
    if (hookIn !== undefined && typeof hookOut === 'string' && hookOut !== hookIn) {
      throw new SaeConfigError(`${FILE} reads ${hookIn} but reconstructs ${hookOut} (a transcoder); Loupe supports SAEs that reconstruct their input only.`);
    }
    const scale = scaleSource(headers, cfg, hookIn, dIn);
    // use_decoder_bias false: lm-saes has no decoder.bias, i.e. b_dec = 0.
    const noBias = headers['decoder.bias'] === undefined && cfg?.['use_decoder_bias'] === false;
    const model = cfg?.['model_name'] ?? cfg?.['model'];
    return {
      format: 'llama-scope',
      dIn,
      dSae,
      W_enc: matrix(headers, 'encoder.weight', 'feature-major', dSae, dIn, LABEL),
      W_dec: matrix(headers, 'decoder.weight', 'input-major', dSae, dIn, LABEL),
      vectors: [
        vectorHeader(headers, 'encoder.bias', dSae, 'd_sae', LABEL),
        ...(noBias ? [] : [vectorHeader(headers, 'decoder.bias', dIn, 'd_model', LABEL)]),
        vectorHeader(headers, THRESHOLD, dSae, 'd_sae', LABEL),
        ...(scale !== undefined && scale.kind !== 'fixed' ? [vectorHeader(headers, scale.tensor, 1, 'a scalar', LABEL)] : []),
      ],
      finish: (v) => ({
        config: {
          format: 'llama-scope',
          architecture: 'jumprelu',
          dIn,
          dSae,
          applyBDecToInput: cfg?.['apply_decoder_bias_to_pre_encoder'] === true,
          inputScale: resolveScale(scale, v, dIn),
          ...(hookIn !== undefined ? { hookpoint: hookIn } : {}),
          ...(typeof model === 'string' ? { model } : {}),
        },
        b_enc: vectorOf(v, 'encoder.bias', dSae, 'd_sae'),
        b_dec: noBias ? new Float32Array(dIn) : vectorOf(v, 'decoder.bias', dIn, 'd_model'),
        threshold: Float32Array.from(vectorOf(v, THRESHOLD, dSae, 'd_sae'), Math.exp),
      }),
    };
  },
};
