/**
 * Goodfire's Llama SAEs (`Goodfire/Llama-3.1-8B-Instruct-SAE-l19`, `Llama-3.3-70B-Instruct-SAE-l50`):
 * a `.pth` state dict of their SparseAutoEncoder module, `encoder_linear.weight` [dSae, dIn],
 * `encoder_linear.bias`, `decoder_linear.weight` [dIn, dSae], `decoder_linear.bias`, with no
 * config file. f = relu(encoder_linear(x)) — no b_dec subtraction, no input scaling —
 * x̂ = decoder_linear(f) (../shared/reference/sae-formats.md).
 */
import { linearReluAdapter } from './encoder-decoder.js';
import type { SaeFormatAdapter } from './plan.js';

export const goodfireLlama: SaeFormatAdapter = linearReluAdapter(
  'goodfire-llama',
  'Goodfire Llama',
  { encoderWeight: 'encoder_linear.weight', encoderBias: 'encoder_linear.bias', decoderWeight: 'decoder_linear.weight', decoderBias: 'decoder_linear.bias' },
  (headers) => headers['encoder_linear.weight'] !== undefined && headers['decoder_linear.weight'] !== undefined,
);
