/**
 * loadSae on the layouts the source projects publish (tools/golden/make_format_fixtures.py
 * re-packs golden SAEs into them): each loads, encodes the golden input and must reproduce the
 * golden outputs of the case it came from — so a transposition, a missing b_dec subtraction or
 * a wrong top-k order in an adapter fails here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { SaeConfigError, SaeSourceError, ShapeMismatchError } from '../../src/errors.js';
import { readSafetensors } from '../../src/formats/safetensors.js';
import { tensorRefsOf } from '../../src/formats/torch.js';
import { readZipDirectory, readZipEntry } from '../../src/formats/zip.js';
import { loadSae, type SaeFiles } from '../../src/runtime/load.js';
import { adapterFor, FORMAT_ADAPTERS } from '../../src/sae/loaders/index.js';
import type { ConfigJson, SaeFormatName, TensorHeaders, TensorInfo } from '../../src/sae/loaders/plan.js';
import { compareCodes, worstRatio } from '../helpers/compare.js';
import { expectGoldenOutputs } from '../helpers/format-cases.js';
import { goldenTolerance, loadGolden, rms } from '../helpers/golden.js';

const root = fileURLToPath(new URL('../fixtures/formats/', import.meta.url));

function filesOf(dir: string, prefix = ''): SaeFiles {
  const out: SaeFiles = {};
  for (const name of readdirSync(dir)) {
    const p = `${dir}/${name}`;
    if (statSync(p).isDirectory()) Object.assign(out, filesOf(p, `${prefix}${name}/`));
    else out[`${prefix}${name}`] = new Uint8Array(readFileSync(p));
  }
  return out;
}

const cases = readdirSync(root).map((dir) => ({ dir, golden: readFileSync(`${root}${dir}/golden.txt`, 'utf8').trim() }));

describe('loadSae from published layouts reproduces the golden outputs', () => {
  test.for(cases)('$dir', async ({ dir, golden }) => {
    const g = loadGolden(`${golden}.safetensors`);
    const sae = await loadSae({ files: filesOf(`${root}${dir}`) }, { backend: 'cpu' });
    expect(sae.config).toMatchObject({
      architecture: g.config.architecture,
      dIn: g.config.dIn,
      dSae: g.config.dSae,
      tied: g.config.tied,
      weightDtype: g.config.weightDtype,
      applyBDecToInput: g.config.applyBDecToInput,
      inputNorm: g.config.inputNorm,
    });
    const tol = goldenTolerance(g);
    const codes = await sae.encode(g.x, { tokens: g.tokens });
    expect(compareCodes(codes, g.featureActs, g.preActs, g.config.dSae, tol, rms(g.preActs))).toEqual([]);
    const xHat = await sae.decode(codes);
    expect(worstRatio(xHat, g.xHat, tol, rms(g.xHat)).ratio).toBeLessThanOrEqual(1);
    sae.destroy();
  });

  test('sparsify hookpoint folders: the hookpoint becomes the config, subfolder selects', async () => {
    const files = filesOf(`${root}sparsify`);
    const sae = await loadSae({ files }, { backend: 'cpu' });
    expect(sae.config.hookpoint).toBe('layers.3');
    const two: SaeFiles = { ...files };
    for (const [k, v] of Object.entries(files)) two[k.replace('layers.3', 'layers.4')] = v;
    await expect(loadSae({ files: two }, { backend: 'cpu' })).rejects.toThrow(/pass \{ subfolder \}/);
    const chosen = await loadSae({ files: two }, { backend: 'cpu', subfolder: 'layers.4' });
    expect(chosen.config.dSae).toBe(sae.config.dSae);
  });

  test('unrecognised or inconsistent files get named errors', async () => {
    await expect(loadSae({ files: { 'readme.md': new Uint8Array(3) } }, { backend: 'cpu' })).rejects.toThrow(SaeSourceError);
    const gf = filesOf(`${root}goodfire`);
    const badCfg = new TextEncoder().encode(JSON.stringify({ d_in: 95, expansion_factor: 4, k: 5 }));
    await expect(loadSae({ files: { ...gf, 'config.json': badCfg } }, { backend: 'cpu' })).rejects.toThrow(/d_in 95, but W has 96 rows/);
    const sl = filesOf(`${root}saelens-standard`);
    const cfg = JSON.parse(new TextDecoder().decode(sl['cfg.json'] as Uint8Array)) as Record<string, unknown>;
    const scaled = new TextEncoder().encode(JSON.stringify({ ...cfg, normalize_activations: 'expected_average_only_in' }));
    await expect(loadSae({ files: { ...sl, 'cfg.json': scaled } }, { backend: 'cpu' })).rejects.toThrow(/scaling factor/);
  });
});

// ---- goodfire-llama, encoder-decoder, llama-scope ----

/** A safetensors file from raw tensors (u64 header length, JSON padded to 8, data). */
interface RawTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

function safetensorsBytes(tensors: Record<string, RawTensor>): Uint8Array {
  let off = 0;
  const head: Record<string, unknown> = {};
  const blobs: Uint8Array[] = [];
  for (const [k, t] of Object.entries(tensors)) {
    head[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.byteLength] };
    blobs.push(t.bytes);
    off += t.bytes.byteLength;
  }
  let json = JSON.stringify(head);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
  return new Uint8Array(Buffer.concat([len, Buffer.from(json), ...blobs]));
}

function rawTensors(bytes: Uint8Array): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  for (const [k, t] of Object.entries(readSafetensors(bytes).tensors)) {
    out[k] = { dtype: t.dtype, shape: t.shape, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  }
  return out;
}

const f32Scalar = (v: number): RawTensor => ({ dtype: 'F32', shape: [], bytes: new Uint8Array(new Float32Array([v]).buffer) });
const jsonBytes = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

describe('goodfire-llama, encoder-decoder, llama-scope: detection and forcing', () => {
  const expected: Array<[string, SaeFormatName]> = [
    ['goodfire-llama', 'goodfire-llama'],
    ['encoder-decoder', 'encoder-decoder'],
    ['llama-scope', 'llama-scope'],
    ['sparsify', 'sparsify'],
  ];
  test.for(expected)('%s is detected as %s', async ([dir, format]) => {
    const sae = await loadSae({ files: filesOf(`${root}${dir}`) }, { backend: 'cpu' });
    expect(sae.config.format).toBe(format);
    sae.destroy();
  });

  test('tensor names pick exactly one adapter, whatever the order', () => {
    const m: TensorInfo = { dtype: 'F32', shape: [8, 4] };
    const v: TensorInfo = { dtype: 'F32', shape: [8] };
    const linear = { 'encoder.weight': m, 'encoder.bias': v, 'decoder.weight': { dtype: 'F32', shape: [4, 8] }, 'decoder.bias': { dtype: 'F32', shape: [4] } } as const;
    const sets: Array<[TensorHeaders, ConfigJson, SaeFormatName]> = [
      [linear, undefined, 'encoder-decoder'],
      [{ ...linear, log_jumprelu_threshold: v }, undefined, 'llama-scope'],
      [linear, { hook_point_in: 'blocks.3.hook_resid_post', d_model: 4 }, 'llama-scope'],
      [{ 'encoder.weight': m, 'encoder.bias': v, W_dec: m, b_dec: { dtype: 'F32', shape: [4] } }, { k: 2 }, 'sparsify'],
      [{ 'encoder_linear.weight': m, 'encoder_linear.bias': v, 'decoder_linear.weight': { dtype: 'F32', shape: [4, 8] }, 'decoder_linear.bias': v }, undefined, 'goodfire-llama'],
    ];
    for (const [headers, cfg, format] of sets) {
      expect(FORMAT_ADAPTERS.filter((a) => a.matches(headers, cfg)).map((a) => a.format)).toEqual([format]);
      expect(adapterFor(headers, cfg).format).toBe(format);
    }
  });

  test('{ format } forces an adapter; a forced format that does not fit names the missing tensor', async () => {
    const ls = filesOf(`${root}llama-scope`);
    // Forced, the lm-saes files load as a plain ReLU pair: detection is skipped entirely.
    const relu = await loadSae({ files: ls }, { backend: 'cpu', format: 'encoder-decoder' });
    expect(relu.config).toMatchObject({ format: 'encoder-decoder', architecture: 'relu' });
    relu.destroy();
    const ed = filesOf(`${root}encoder-decoder`);
    const forced = await loadSae({ files: ed }, { backend: 'cpu', format: 'encoder-decoder' });
    await expectGoldenOutputs(forced, 'encoder-decoder-relu-bf16-t7');
    forced.destroy();
    await expect(loadSae({ files: ed }, { backend: 'cpu', format: 'llama-scope' })).rejects.toThrow(/Llama-Scope SAE needs the tensor "log_jumprelu_threshold"; the file has: encoder\.weight/);
    await expect(loadSae({ files: filesOf(`${root}goodfire-llama`) }, { backend: 'cpu', format: 'encoder-decoder' })).rejects.toThrow(
      /needs the tensor "encoder\.weight"; the file has: encoder_linear\.weight/,
    );
  });

  test('the non-contiguous decoder_linear.weight is really stored transposed (strides (1, dIn))', async () => {
    // Its numerics are covered by golden parity: 'goodfire-llama' in the first describe block
    // reproduces PyTorch's outputs only if the strided view is read as torch reads it.
    const pth = filesOf(`${root}goodfire-llama`)['Llama-3.1-8B-Instruct-SAE-l19.pth'] as Uint8Array;
    const entries = readZipDirectory(pth);
    const pkl = [...entries.values()].find((e) => e.name.endsWith('/data.pkl'));
    if (pkl === undefined) throw new Error('no data.pkl');
    const refs = tensorRefsOf(await readZipEntry(pth, pkl));
    expect(refs.get('decoder_linear.weight')).toMatchObject({ shape: [96, 333], stride: [1, 96] });
    expect(refs.get('encoder_linear.weight')).toMatchObject({ shape: [333, 96], stride: [96, 1] });
  });
});

describe('goodfire-llama, encoder-decoder, llama-scope: config and tensors must agree', () => {
  test('goodfire-llama: a config file next to the .pth is checked against the tensors', async () => {
    const gl = filesOf(`${root}goodfire-llama`);
    await expect(loadSae({ files: { ...gl, 'config.json': jsonBytes({ d_in: 95 }) } }, { backend: 'cpu' })).rejects.toThrow(
      /Goodfire Llama config file says d_in 95, but encoder_linear\.weight has 96 inputs \(\[333, 96\]\)/,
    );
    await expect(loadSae({ files: { ...gl, 'config.json': jsonBytes({ d_sae: 334 }) } }, { backend: 'cpu' })).rejects.toThrow(
      /says d_sae 334, but encoder_linear\.weight has 333 features/,
    );
    const named = await loadSae({ files: { ...gl, 'config.json': jsonBytes({ d_in: 96, hook_name: 'blocks.19.hook_resid_post', model_name: 'meta-llama/Llama-3.1-8B-Instruct' }) } }, { backend: 'cpu' });
    expect(named.config).toMatchObject({ hookpoint: 'blocks.19.hook_resid_post', model: 'meta-llama/Llama-3.1-8B-Instruct', applyBDecToInput: false });
    named.destroy();
  });

  test('encoder-decoder: config widths checked, hookpoint kept', async () => {
    const ed = filesOf(`${root}encoder-decoder`);
    await expect(loadSae({ files: { ...ed, 'cfg.json': jsonBytes({ d_sae: 401 }) } }, { backend: 'cpu' })).rejects.toThrow(
      /encoder\/decoder config file says d_sae 401, but encoder\.weight has 400 features \(\[400, 96\]\)/,
    );
    const sae = await loadSae({ files: { ...ed, 'cfg.json': jsonBytes({ d_in: 96, d_sae: 400, hook_name: 'blocks.19.hook_resid_post' }) } }, { backend: 'cpu' });
    expect(sae.config.hookpoint).toBe('blocks.19.hook_resid_post');
    sae.destroy();
  });

  const lsFiles = (): SaeFiles => filesOf(`${root}llama-scope`);
  const lsCfg = (): Record<string, unknown> => JSON.parse(new TextDecoder().decode(lsFiles()['L3R/config.json'] as Uint8Array)) as Record<string, unknown>;
  const lsTensors = (): Record<string, RawTensor> => rawTensors(lsFiles()['L3R/sae_weights.safetensors'] as Uint8Array);
  const NORM = 'dataset_average_activation_norm.blocks.3.hook_resid_post';
  const withLs = (cfg: Record<string, unknown>, tensors: Record<string, RawTensor> = lsTensors()): SaeFiles => ({
    ...lsFiles(),
    'L3R/config.json': jsonBytes(cfg),
    'L3R/sae_weights.safetensors': safetensorsBytes(tensors),
  });

  test('llama-scope: d_model, expansion_factor, tensor shapes and missing tensors are named errors', async () => {
    await expect(loadSae({ files: withLs({ ...lsCfg(), d_model: 95 }) }, { backend: 'cpu' })).rejects.toThrow(
      /config\.json says d_model 95, but encoder\.weight is \[480, 96\] \(d_in 96\)/,
    );
    await expect(loadSae({ files: withLs({ ...lsCfg(), expansion_factor: 4 }) }, { backend: 'cpu' })).rejects.toThrow(
      /says expansion_factor 4 \(d_sae 384\), but encoder\.weight is \[480, 96\] \(d_sae 480\)/,
    );
    const { log_jumprelu_threshold: _drop, ...noThreshold } = lsTensors();
    await expect(loadSae({ files: withLs(lsCfg(), noThreshold) }, { backend: 'cpu' })).rejects.toThrow(/needs the tensor "log_jumprelu_threshold"/);
    const shortBias = { ...lsTensors(), 'decoder.bias': { dtype: 'F32', shape: [95], bytes: new Uint8Array(95 * 4) } };
    await expect(loadSae({ files: withLs(lsCfg(), shortBias) }, { backend: 'cpu' })).rejects.toThrow(ShapeMismatchError);
    await expect(loadSae({ files: withLs(lsCfg(), shortBias) }, { backend: 'cpu' })).rejects.toThrow(/"decoder\.bias" has shape \[95\], but d_model is 96/);
    const t = lsTensors();
    const dec = t['decoder.weight'];
    if (dec === undefined) throw new Error('fixture lacks decoder.weight');
    const wrongDec = { ...t, 'decoder.weight': { ...dec, shape: [480, 96] } };
    await expect(loadSae({ files: withLs(lsCfg(), wrongDec) }, { backend: 'cpu' })).rejects.toThrow(
      /"decoder\.weight" has shape \[480, 96\], but the Llama-Scope config \(dIn 96, dSae 480\) needs \[96, 480\]/,
    );
    await expect(loadSae({ files: withLs({ ...lsCfg(), act_fn: 'topk' }) }, { backend: 'cpu' })).rejects.toThrow(/act_fn "topk" is not supported/);
    await expect(loadSae({ files: withLs({ ...lsCfg(), hook_point_out: 'blocks.3.hook_mlp_out' }) }, { backend: 'cpu' })).rejects.toThrow(/a transcoder/);
  });

  test('llama-scope: the fixture reads its hookpoint and sqrt(d_model) / the stored dataset norm as inputScale', async () => {
    const g = loadGolden('llama-scope-jumprelu-f32-t7.safetensors');
    const sae = await loadSae({ files: lsFiles() }, { backend: 'cpu' });
    expect(sae.config.hookpoint).toBe('blocks.3.hook_resid_post');
    expect(sae.config.applyBDecToInput).toBe(false);
    // The golden's inputScale is the f32 factor PyTorch used; Loupe's is the f64 quotient.
    expect(Math.abs(sae.config.inputScale / g.config.inputScale - 1)).toBeLessThan(1e-6);
    sae.destroy();
  });

  test('llama-scope: scale sources in order (config factor, weight tensors, config norm) all reproduce PyTorch', async () => {
    const g = loadGolden('llama-scope-jumprelu-f32-t7.safetensors');
    const s = g.config.inputScale;
    const { [NORM]: normT, ...noNorm } = lsTensors();
    if (normT === undefined) throw new Error('fixture lacks the dataset norm tensor');
    const norm = new Float32Array(normT.bytes.slice().buffer)[0] ?? Number.NaN;
    const variants: Array<[string, SaeFiles]> = [
      ['dataset_average_activation_norm {in, out} in config.json', withLs({ ...lsCfg(), dataset_average_activation_norm: { in: norm, out: norm } }, noNorm)],
      ['dataset_average_activation_norm keyed by hook point', withLs({ ...lsCfg(), dataset_average_activation_norm: { 'blocks.3.hook_resid_post': norm } }, noNorm)],
      ['a norm_scaling_factor scalar tensor', withLs(lsCfg(), { ...noNorm, norm_scaling_factor: f32Scalar(s) })],
      ['norm_scaling_factor in config.json', withLs({ ...lsCfg(), norm_scaling_factor: s }, noNorm)],
      // The weights' tensor beats a (wrong) config norm.
      ['the tensor over a config norm', withLs({ ...lsCfg(), dataset_average_activation_norm: { in: 2 * norm, out: 2 * norm } })],
    ];
    for (const [what, files] of variants) {
      const sae = await loadSae({ files }, { backend: 'cpu' });
      expect(Math.abs(sae.config.inputScale / s - 1), what).toBeLessThan(1e-6);
      await expectGoldenOutputs(sae, 'llama-scope-jumprelu-f32-t7');
      sae.destroy();
    }
    // A config norm_scaling_factor beats the tensor in the weights.
    const explicit = await loadSae({ files: withLs({ ...lsCfg(), norm_scaling_factor: 2 * s }) }, { backend: 'cpu' });
    expect(explicit.config.inputScale).toBe(2 * s);
    explicit.destroy();
  });

  test('llama-scope: no scaling without dataset-wise normalisation; contradictions are named', async () => {
    const { norm_activation: _n, ...noMode } = lsCfg();
    for (const cfg of [noMode, { ...lsCfg(), norm_activation: 'none' }, { ...lsCfg(), norm_activation: 'inference' }]) {
      const sae = await loadSae({ files: withLs(cfg) }, { backend: 'cpu' });
      expect(sae.config.inputScale).toBe(1);
      sae.destroy();
    }
    await expect(loadSae({ files: withLs({ ...lsCfg(), norm_activation: 'inference', norm_scaling_factor: 3 }) }, { backend: 'cpu' })).rejects.toThrow(
      /norm_activation "inference" \(no input scaling\) but also norm_scaling_factor 3/,
    );
    const { [NORM]: _drop, ...noNorm } = lsTensors();
    await expect(loadSae({ files: withLs(lsCfg(), noNorm) }, { backend: 'cpu' })).rejects.toThrow(SaeConfigError);
    await expect(loadSae({ files: withLs(lsCfg(), noNorm) }, { backend: 'cpu' })).rejects.toThrow(/give the dataset norm/);
    await expect(loadSae({ files: withLs({ ...lsCfg(), dataset_average_activation_norm: { in: 10, out: 12 } }, noNorm) }, { backend: 'cpu' })).rejects.toThrow(
      /has in 10 but out 12/,
    );
    await expect(loadSae({ files: withLs({ ...lsCfg(), norm_activation: 'token-wise' }) }, { backend: 'cpu' })).rejects.toThrow(/norm_activation "token-wise" is not supported/);
  });
});
