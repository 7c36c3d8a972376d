/**
 * `loadSae` from the files a project publishes, unchanged: Goodfire R1 (`config.json` + `.pt`),
 * SAELens (`cfg.json` + `sae_weights.safetensors`), sparsify (`<hookpoint>/cfg.json` +
 * `sae.safetensors`). The format is recognised from the file names.
 *
 *   const sae = await loadSae({ files: { 'cfg.json': ..., 'sae_weights.safetensors': ... } });
 */
import { SaeConfigError } from '../errors.js';
import { readSafetensors } from '../formats/safetensors.js';
import { readTorchCheckpoint } from '../formats/torch.js';
import { goodfireSae, type GoodfireConfigFile } from '../sae/loaders/goodfire.js';
import { saeLensSae } from '../sae/loaders/saelens.js';
import { sparsifySae } from '../sae/loaders/sparsify.js';
import { Sae, type SaeOptions } from './sae.js';

/** Files by path relative to the SAE's root (e.g. 'layers.3/cfg.json'). */
export type SaeFiles = Record<string, ArrayBuffer | Uint8Array | Blob>;

export interface LoadSaeOptions extends SaeOptions {
  /** Folder inside the files holding the SAE (a sparsify hookpoint such as 'layers.3', or Goodfire's 'math'). */
  readonly subfolder?: string;
}

async function bytesOf(f: ArrayBuffer | Uint8Array | Blob): Promise<Uint8Array> {
  if (f instanceof Uint8Array) return f;
  if (f instanceof ArrayBuffer) return new Uint8Array(f);
  return new Uint8Array(await f.arrayBuffer());
}

async function json(f: ArrayBuffer | Uint8Array | Blob, name: string): Promise<Record<string, unknown>> {
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(await bytesOf(f)));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (cause) {
    throw new SaeConfigError(`${name} is not a JSON object (${String(cause)}).`, { cause });
  }
}

export async function loadSae(source: { files: SaeFiles }, options: LoadSaeOptions = {}): Promise<Sae> {
  const prefix = options.subfolder !== undefined && options.subfolder !== '' ? `${options.subfolder.replace(/\/+$/, '')}/` : '';
  const files = new Map(Object.entries(source.files).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
  const dirs = (leaf: string): string[] => [...files.keys()].filter((k) => k === leaf || k.endsWith(`/${leaf}`)).map((k) => k.slice(0, k.length - leaf.length));
  const pick = (candidates: string[], what: string): string | undefined => {
    if (candidates.length > 1) {
      throw new SaeConfigError(`Found ${candidates.length} ${what} SAEs (${candidates.map((c) => c || '.').join(', ')}); pass { subfolder } to choose one.`);
    }
    return candidates[0];
  };
  const saelens = pick(dirs('sae_weights.safetensors').filter((d) => files.has(`${d}cfg.json`)), 'SAELens');
  const sparsify = pick(dirs('sae.safetensors').filter((d) => files.has(`${d}cfg.json`)), 'sparsify');
  const goodfirePt = [...files.keys()].filter((k) => k.endsWith('.pt') && files.has(`${k.slice(0, k.lastIndexOf('/') + 1)}config.json`));
  const goodfire = pick(goodfirePt, 'Goodfire');
  let loaded;
  if (saelens !== undefined) {
    const tensors = readSafetensors(await bytesOf(files.get(`${saelens}sae_weights.safetensors`) ?? new Uint8Array(0))).tensors;
    loaded = saeLensSae(await json(files.get(`${saelens}cfg.json`) ?? new Uint8Array(0), 'cfg.json'), tensors);
  } else if (sparsify !== undefined) {
    const tensors = readSafetensors(await bytesOf(files.get(`${sparsify}sae.safetensors`) ?? new Uint8Array(0))).tensors;
    const hookpoint = sparsify.replace(/\/$/, '') || options.subfolder;
    loaded = sparsifySae(await json(files.get(`${sparsify}cfg.json`) ?? new Uint8Array(0), 'cfg.json'), tensors, hookpoint);
  } else if (goodfire !== undefined) {
    const dir = goodfire.slice(0, goodfire.lastIndexOf('/') + 1);
    const tensors = await readTorchCheckpoint(await bytesOf(files.get(goodfire) ?? new Uint8Array(0)));
    const cfg = await json(files.get(`${dir}config.json`) ?? new Uint8Array(0), 'config.json');
    loaded = goodfireSae(cfg as unknown as GoodfireConfigFile, tensors);
  } else {
    throw new SaeConfigError(
      `No SAE recognised among: ${[...files.keys()].join(', ') || 'no files'}. Expected SAELens (cfg.json + sae_weights.safetensors), sparsify (<hookpoint>/cfg.json + sae.safetensors) or Goodfire (config.json + *.pt).`,
    );
  }
  return Sae.create(loaded, options);
}
