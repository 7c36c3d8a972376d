/**
 * Plain ReLU SAEs stored as two torch `nn.Linear` layers: `encoder.weight` [dSae, dIn],
 * `encoder.bias` [dSae], `decoder.weight` [dIn, dSae], `decoder.bias` [dIn] — e.g.
 * `qresearch/DeepSeek-R1-Distill-Llama-8B-SAE-l19` (bf16 `.pt`), which SAELens' `deepseek_r1`
 * loader reads as a standard SAE with apply_b_dec_to_input False and no input normalisation:
 * f = relu(x · encoder.weightᵀ + encoder.bias), x̂ = f · decoder.weightᵀ + decoder.bias.
 *
 * The same names plus `log_jumprelu_threshold` (or an lm-saes config) are Llama-Scope, and
 * `encoder.weight` + `W_dec` is sparsify; `matches` rules both out so detection does not
 * depend on the adapter order. `linearReluAdapter` is shared with Goodfire's Llama SAEs, which
 * differ only in the tensor names.
 */
import { SaeConfigError } from '../../errors.js';
import { dims2, header, matrix, vectorHeader, vectorOf, type ConfigJson, type SaeFormatAdapter, type SaeFormatName, type TensorHeaders } from './plan.js';

export interface LinearPairNames {
  readonly encoderWeight: string;
  readonly encoderBias: string;
  readonly decoderWeight: string;
  readonly decoderBias: string;
}

/** A config's number under the first of `keys` present, or undefined when none is. */
function firstNumber(cfg: ConfigJson, keys: readonly string[], file: string): { key: string; value: number } | undefined {
  for (const key of keys) {
    const v = cfg?.[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new SaeConfigError(`${file} has a non-numeric "${key}": ${JSON.stringify(v)}.`);
    return { key, value: v };
  }
  return undefined;
}

function firstString(...values: unknown[]): string | undefined {
  return values.find((v): v is string => typeof v === 'string' && v !== '');
}

/**
 * These formats publish no config, but a user may put one next to the weights (or a mirror may
 * carry a SAELens-style cfg.json): when it gives widths they must agree with the tensors, and
 * its hookpoint and model are kept.
 */
function optionalConfig(cfg: ConfigJson, dIn: number, dSae: number, what: string, file: string): { hookpoint?: string; model?: string } {
  if (cfg === undefined) return {};
  const din = firstNumber(cfg, ['d_in', 'd_model'], file);
  if (din !== undefined && din.value !== dIn) {
    throw new SaeConfigError(`${file} says ${din.key} ${din.value}, but ${what} has ${dIn} inputs ([${dSae}, ${dIn}]).`);
  }
  const dsae = firstNumber(cfg, ['d_sae', 'num_latents', 'dict_size'], file);
  if (dsae !== undefined && dsae.value !== dSae) {
    throw new SaeConfigError(`${file} says ${dsae.key} ${dsae.value}, but ${what} has ${dSae} features ([${dSae}, ${dIn}]).`);
  }
  const meta = cfg['metadata'] as { hook_name?: unknown; model_name?: unknown } | undefined;
  const hookpoint = firstString(meta?.hook_name, cfg['hook_name'], cfg['hook_point'], cfg['hookpoint']);
  const model = firstString(meta?.model_name, cfg['model_name'], cfg['model']);
  return { ...(hookpoint !== undefined ? { hookpoint } : {}), ...(model !== undefined ? { model } : {}) };
}

/** An adapter for a ReLU SAE made of an encoder and a decoder `nn.Linear` (no b_dec subtraction). */
export function linearReluAdapter(format: SaeFormatName, label: string, names: LinearPairNames, matches: (headers: TensorHeaders, cfg: ConfigJson) => boolean): SaeFormatAdapter {
  const { encoderWeight, encoderBias, decoderWeight, decoderBias } = names;
  return {
    format,
    matches,
    plan(headers, cfg) {
      const [dSae, dIn] = dims2(header(headers, encoderWeight, label), encoderWeight, '[d_sae, d_in]');
      const described = optionalConfig(cfg, dIn, dSae, encoderWeight, `The ${label} config file`);
      return {
        format,
        dIn,
        dSae,
        // nn.Linear keeps [out, in]: the encoder is feature-major, the decoder input-major.
        W_enc: matrix(headers, encoderWeight, 'feature-major', dSae, dIn, label),
        W_dec: matrix(headers, decoderWeight, 'input-major', dSae, dIn, label),
        vectors: [vectorHeader(headers, encoderBias, dSae, 'd_sae', label), vectorHeader(headers, decoderBias, dIn, 'd_in', label)],
        finish: (v) => ({
          config: { format, architecture: 'relu', dIn, dSae, applyBDecToInput: false, ...described },
          b_enc: vectorOf(v, encoderBias, dSae, 'd_sae'),
          b_dec: vectorOf(v, decoderBias, dIn, 'd_in'),
        }),
      };
    },
  };
}

export const encoderDecoder: SaeFormatAdapter = linearReluAdapter(
  'encoder-decoder',
  'encoder/decoder',
  { encoderWeight: 'encoder.weight', encoderBias: 'encoder.bias', decoderWeight: 'decoder.weight', decoderBias: 'decoder.bias' },
  (headers, cfg) =>
    headers['encoder.weight'] !== undefined &&
    headers['decoder.weight'] !== undefined &&
    headers['W_dec'] === undefined &&
    headers['log_jumprelu_threshold'] === undefined &&
    cfg?.['hook_point_in'] === undefined,
);
