/** Every SAE file format Loupe reads, in detection order (most specific tensor names first). */
import { SaeConfigError } from '../../errors.js';
import { encoderDecoder } from './encoder-decoder.js';
import { goodfireLlama } from './goodfire-llama.js';
import { goodfireR1 } from './goodfire.js';
import { llamaScope } from './llama-scope.js';
import { SAE_FORMATS, type ConfigJson, type SaeFormatAdapter, type SaeFormatName, type TensorHeaders } from './plan.js';
import { saeLens } from './saelens.js';
import { sparsify } from './sparsify.js';

/**
 * Detection order, most specific first. The torch-Linear formats share names: sparsify is
 * `encoder.weight` + `W_dec`, Llama-Scope `encoder.weight` + `decoder.weight` +
 * `log_jumprelu_threshold` (or an lm-saes config), and encoder-decoder is that pair with
 * neither; each `matches` excludes the others, so the order is a tie-breaker only.
 */
export const FORMAT_ADAPTERS: readonly SaeFormatAdapter[] = [goodfireR1, saeLens, goodfireLlama, sparsify, llamaScope, encoderDecoder];

/** The adapter for `forced`, or the first whose tensor names (and config) match. */
export function adapterFor(headers: TensorHeaders, cfg: ConfigJson, forced?: SaeFormatName): SaeFormatAdapter {
  if (forced !== undefined) {
    const a = FORMAT_ADAPTERS.find((f) => f.format === forced);
    if (a === undefined) throw new SaeConfigError(`Unknown SAE format "${String(forced)}". Should be one of: ${SAE_FORMATS.join(', ')}.`);
    return a;
  }
  const a = FORMAT_ADAPTERS.find((f) => f.matches(headers, cfg));
  if (a === undefined) {
    throw new SaeConfigError(
      `No known SAE format has the tensors ${Object.keys(headers).join(', ') || '(none)'}${cfg === undefined ? ' (and no config file was found)' : ''}. Known formats: ${SAE_FORMATS.join(', ')}; pass { format } to force one.`,
    );
  }
  return a;
}
