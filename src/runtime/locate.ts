/**
 * From what a user names — 'Goodfire/DeepSeek-R1-SAE-l37', a folder or file URL, a `file:`
 * URL in Node, or files in memory — to the SAE's weight files and config. Sources that can be
 * listed (memory, local folders, the Hub's tree API) are searched by file name; a plain HTTP
 * folder cannot be listed, so the names each format publishes are probed, guided by the config.
 */
import { SaeConfigError, SaeSourceError } from '../errors.js';
import { hubFolder, httpFolder, memoryFolder, nodeFolder, type SaeFiles, type SaeFolder } from '../io/folder.js';
import type { ConfigJson } from '../sae/loaders/plan.js';

export type SaeSource = string | URL;

export interface SourceOptions {
  readonly subfolder?: string;
  readonly revision?: string;
  readonly endpoint?: string;
  readonly weights?: string;
  readonly fetch?: typeof fetch;
  readonly signal?: AbortSignal;
  readonly cache?: boolean;
}

export interface OpenedSource {
  readonly folder: SaeFolder;
  /** A weights or config file the source named directly (a URL ending in .pt, .safetensors, .json). */
  readonly file?: string;
  /** Names a Goodfire `<repo>.pt` may have: the repo's, then the URL's last folders. */
  readonly repoNames?: readonly string[];
}

export interface FoundSae {
  /** Weight files (several for a sharded checkpoint), relative to the folder. */
  readonly weights: readonly string[];
  readonly config: ConfigJson;
  /** The SAE's folder inside the source ('' at the root): a sparsify hookpoint, Goodfire's 'math'. */
  readonly folder: string | undefined;
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const WEIGHTS = /\.(safetensors|pt|pth)$/;
/** File names the formats publish, most specific first. */
const KNOWN_WEIGHTS = ['sae_weights.safetensors', 'sae.safetensors'];

function parentAndName(path: string): [string, string] {
  const i = path.lastIndexOf('/');
  return [path.slice(0, i + 1), path.slice(i + 1)];
}

export async function openSource(source: SaeSource | { files: SaeFiles }, options: SourceOptions): Promise<OpenedSource> {
  if (typeof source === 'object' && !(source instanceof URL)) {
    if (typeof source.files !== 'object' || source.files === null) throw new SaeSourceError('A { files } source needs a record of path → ArrayBuffer | Uint8Array | Blob.');
    return { folder: memoryFolder(source.files) };
  }
  const text = String(source);
  const http = { fetch: options.fetch, signal: options.signal, cache: options.cache };
  if (!(source instanceof URL) && HUB_ID.test(text) && !text.startsWith('.')) {
    const repoNames = [text.slice(text.indexOf('/') + 1)];
    return { folder: hubFolder(text, { ...http, endpoint: options.endpoint, revision: options.revision }), repoNames };
  }
  let url: URL;
  try {
    const base = (globalThis as { location?: { href: string } }).location?.href;
    url = new URL(text, base);
  } catch (cause) {
    throw new SaeSourceError(`"${text}" is neither a URL nor a Hugging Face repo id ('org/name'). Relative URLs need a page to resolve against; start them with './' or '/'.`, { cause });
  }
  let file: string | undefined;
  if (WEIGHTS.test(url.pathname) || url.pathname.endsWith('.json')) {
    const [dir, name] = parentAndName(url.pathname);
    file = decodeURIComponent(name);
    url = new URL(dir, url);
  } else if (!url.pathname.endsWith('/')) url = new URL(`${url.pathname}/${url.search}`, url);
  // '/{org}/{repo}/resolve/{rev}/' (a Hub-style server) names the repo; else the last folders
  // may (a mirror of Goodfire's repo keeps DeepSeek-R1-SAE-l37.pt inside .../DeepSeek-R1-SAE-l37/math/).
  const segs = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
  const r = segs.indexOf('resolve');
  const repoNames = [...new Set([...(r >= 1 ? [segs[r - 1] ?? ''] : []), ...segs.slice(-3).reverse()])].filter((n) => n !== '');
  if (url.protocol === 'file:') {
    const folder = await nodeFolder(decodeURIComponent(url.pathname));
    return { folder, ...(file !== undefined ? { file } : {}), repoNames };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new SaeSourceError(`Unsupported URL scheme ${url.protocol}; use https:, http: or (in Node) file:.`);
  return { folder: httpFolder(url, http), ...(file !== undefined ? { file } : {}), repoNames };
}

async function jsonOf(folder: SaeFolder, path: string): Promise<Record<string, unknown> | undefined> {
  const bytes = await folder.readSmall(path);
  if (bytes === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (cause) {
    throw new SaeConfigError(`${path} is not a JSON object (${String(cause)}).`, { cause });
  }
}

/** The shard files of `<name>.safetensors.index.json` ({ weight_map: { tensor: file } }). */
async function shardsOf(folder: SaeFolder, indexPath: string): Promise<string[]> {
  const index = await jsonOf(folder, indexPath);
  const map = index?.['weight_map'];
  if (typeof map !== 'object' || map === null) throw new SaeConfigError(`${indexPath} has no weight_map.`);
  const [dir] = parentAndName(indexPath);
  const files = [...new Set(Object.values(map as Record<string, unknown>))];
  if (files.length === 0 || !files.every((f): f is string => typeof f === 'string' && f.endsWith('.safetensors') && !f.includes('..'))) {
    throw new SaeConfigError(`${indexPath}: weight_map must map tensors to .safetensors files in the same folder.`);
  }
  return files.sort().map((f) => dir + f);
}

async function configNear(folder: SaeFolder, dir: string, listed: ReadonlySet<string> | undefined): Promise<ConfigJson> {
  for (const name of ['cfg.json', 'config.json']) {
    if (listed !== undefined && !listed.has(dir + name)) continue;
    const cfg = await jsonOf(folder, dir + name);
    if (cfg !== undefined) return cfg;
  }
  return undefined;
}

function prefixOf(subfolder: string | undefined): string {
  const s = (subfolder ?? '').replace(/^\/+|\/+$/g, '');
  return s === '' ? '' : `${s}/`;
}

export async function locateSae(src: OpenedSource, options: SourceOptions): Promise<FoundSae> {
  const { folder } = src;
  const prefix = prefixOf(options.subfolder);
  const named = options.weights ?? src.file;
  if (named !== undefined && !named.endsWith('.json')) {
    const path = prefix + named;
    const [dir] = parentAndName(path);
    return { weights: [path], config: await configNear(folder, dir, undefined), folder: folderName(dir, options) };
  }
  const all = await folder.list();
  if (all !== undefined) return fromListing(folder, all, prefix, options);
  return probe(src, prefix, named, options);
}

function folderName(dir: string, options: SourceOptions): string | undefined {
  const d = dir.replace(/\/$/, '');
  if (d !== '') return d;
  return options.subfolder !== undefined && options.subfolder !== '' ? options.subfolder.replace(/\/+$/, '') : undefined;
}

async function fromListing(folder: SaeFolder, all: readonly string[], prefix: string, options: SourceOptions): Promise<FoundSae> {
  const files = all.filter((p) => p.startsWith(prefix));
  const listed = new Set(files);
  // One SAE per folder: its weights are an index's shards, a known name, or the folder's only weights file.
  const byDir = new Map<string, string[]>();
  for (const f of files) {
    const [dir, name] = parentAndName(f);
    if (!WEIGHTS.test(name) && !name.endsWith('.safetensors.index.json')) continue;
    byDir.set(dir, [...(byDir.get(dir) ?? []), name]);
  }
  const candidates = [...byDir.entries()].filter(([dir, names]) => {
    // A bare shard next to its index is not an SAE of its own; nor is a root without config
    // when hookpoint folders exist (sparsify's repo root holds only a training config).
    return names.length > 0 && (dir === prefix || !names.every((n) => /-\d+-of-\d+\.safetensors$/.test(n)));
  });
  if (candidates.length === 0) {
    throw new SaeSourceError(`No SAE weights (*.safetensors, *.pt, *.pth) in ${folder.where}${prefix !== '' ? ` under ${prefix}` : ''}; found: ${files.slice(0, 20).join(', ') || 'nothing'}.`);
  }
  if (candidates.length > 1) {
    throw new SaeConfigError(
      `Found ${candidates.length} SAEs (${candidates.map(([d]) => d.replace(/\/$/, '') || '.').join(', ')}) in ${folder.where}; pass { subfolder } to choose one.`,
    );
  }
  const [dir, names] = candidates[0] ?? ['', []];
  if (dir.endsWith('checkpoints/') && listed.has(`${dir.slice(0, -'checkpoints/'.length)}hyperparams.json`)) {
    // Would otherwise pass for a plain encoder/decoder ReLU SAE and give wrong features.
    throw new SaeConfigError('This is the original Llama Scope layout (hyperparams.json + checkpoints/), which Loupe does not read yet; the R1-Distill release (config.json + sae_weights.safetensors) is supported.');
  }
  const index = names.find((n) => n.endsWith('.safetensors.index.json'));
  let weights: string[];
  if (index !== undefined) weights = await shardsOf(folder, dir + index);
  else {
    const known = KNOWN_WEIGHTS.find((k) => names.includes(k));
    const only = names.filter((n) => WEIGHTS.test(n));
    if (known === undefined && only.length > 1) {
      throw new SaeConfigError(`The folder ${dir || '.'} holds several weight files (${only.join(', ')}); pass { weights: '<file name>' } to choose one.`);
    }
    weights = [dir + (known ?? only[0] ?? '')];
  }
  return { weights, config: await configNear(folder, dir, listed), folder: folderName(dir, options) };
}

async function probe(src: OpenedSource, prefix: string, named: string | undefined, options: SourceOptions): Promise<FoundSae> {
  const { folder } = src;
  const [cfgDir] = named !== undefined ? parentAndName(prefix + named) : [prefix];
  const config = await configNear(folder, cfgDir, undefined);
  // The config says which format this is, and so which weight names to try first.
  const goodfire = config?.['expansion_factor'] !== undefined && config['k'] !== undefined && config['d_in'] !== undefined;
  const repoPt = (src.repoNames ?? []).flatMap((n) => [`${n}.pt`, `${n}.pth`]);
  const order = goodfire ? [...repoPt, ...KNOWN_WEIGHTS] : config?.['d_sae'] === undefined && config?.['k'] !== undefined ? ['sae.safetensors', 'sae_weights.safetensors', ...repoPt] : [...KNOWN_WEIGHTS, ...repoPt];
  const tried: string[] = [];
  for (const name of order) {
    tried.push(name);
    if (await folder.exists(cfgDir + name)) return { weights: [cfgDir + name], config, folder: folderName(cfgDir, options) };
    if (name.endsWith('.safetensors')) {
      const index = `${name}.index.json`;
      tried.push(index);
      if (await folder.exists(cfgDir + index)) return { weights: await shardsOf(folder, cfgDir + index), config, folder: folderName(cfgDir, options) };
    }
  }
  throw new SaeSourceError(
    `Found no SAE weights in ${folder.where}${cfgDir !== '' ? cfgDir : ''} (tried ${tried.join(', ')}; the server cannot list the folder). Pass { weights: '<file name>' } or the URL of the weights file.`,
  );
}
