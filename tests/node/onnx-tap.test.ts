/**
 * ONNX graph taps: findSite and tapAndSteer on small Optimum-style and ORT-GenAI-style graphs,
 * run with onnxruntime-web's wasm EP in Node, against an independent float64 interpreter of
 * the same graphs (the "hand-computed" reference) and against the unedited graph.
 *
 * Graphs are described once as a `Spec` and encoded either by bench/ort/onnx-builder.ts (Optimum,
 * fp16) or by a local encoder for what that builder cannot express (node domains, float
 * attributes, external data).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import fc from 'fast-check';
import * as ort from 'onnxruntime-web';
import { beforeAll, describe, expect, test } from 'vitest';
import { encodeModel, type OnnxDataType, type OnnxModel } from '../../bench/ort/onnx-builder.js';
import { OnnxGraphError } from '../../src/errors.js';
import { indexOnnxModel, type OnnxModelIndex } from '../../src/formats/onnx/model.js';
import { ProtoReader, ProtoWriter, varintSize, writeVarint } from '../../src/formats/onnx/protobuf.js';
import { findSite, tapAndSteer, tapAndSteerInPlace, TAP_SPARE_BYTES, type OnnxSite, type TapResult } from '../../src/formats/onnx/tap.js';
import { f16ToF32, f32ToF16 } from '../../src/sae/dtype.js';
import { gaussian } from '../helpers/random.js';

// ---------------------------------------------------------------------------------------------
// Graph specs

type ElemType = 1 | 7 | 10;
const FLOAT = 1;
const INT64 = 7;
const FLOAT16 = 10;

interface SpecNode {
  readonly name: string;
  readonly op: string;
  readonly domain?: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly ints?: Readonly<Record<string, number>>;
  readonly floats?: Readonly<Record<string, number>>;
}
interface SpecInit {
  readonly name: string;
  readonly type: ElemType;
  readonly dims: readonly number[];
  /** Values as numbers (converted to the element type). */
  readonly values: readonly number[] | Float32Array;
  /** Store the payload in an external file at this offset instead of raw_data. */
  readonly external?: { readonly location: string; readonly offset: number };
}
interface SpecValue {
  readonly name: string;
  readonly type: ElemType;
  readonly shape: readonly (number | string)[];
}
interface Spec {
  readonly nodes: readonly SpecNode[];
  readonly inits: readonly SpecInit[];
  readonly inputs: readonly SpecValue[];
  readonly outputs: readonly SpecValue[];
  readonly valueInfo?: readonly SpecValue[];
  readonly opset: number;
}

function initBytes(t: SpecInit): Uint8Array {
  const v = Array.from(t.values);
  const arr = t.type === FLOAT ? Float32Array.from(v) : t.type === FLOAT16 ? Uint16Array.from(v, f32ToF16) : BigInt64Array.from(v, (x) => BigInt(x));
  return new Uint8Array(arr.buffer);
}

/** bench/ort/onnx-builder.ts encoding (default domain, INT attributes, inline raw_data only). */
function encodeWithBench(spec: Spec): Uint8Array {
  const model: OnnxModel = {
    opsetVersion: spec.opset,
    producerName: 'loupe-test',
    graph: {
      name: 'g',
      nodes: spec.nodes.map((n) => {
        if (n.domain !== undefined || n.floats !== undefined) throw new Error('bench builder: default domain, INT attributes only');
        return {
          name: n.name,
          opType: n.op,
          inputs: n.inputs,
          outputs: n.outputs,
          attributes: Object.entries(n.ints ?? {}).map(([name, int]) => ({ name, int })),
        };
      }),
      initializers: spec.inits.map((t) => {
        if (t.external !== undefined) throw new Error('bench builder: no external data');
        return { name: t.name, dataType: t.type as OnnxDataType, dims: t.dims, raw: initBytes(t) };
      }),
      inputs: spec.inputs.map((v) => ({ name: v.name, elemType: v.type as OnnxDataType, shape: v.shape })),
      outputs: spec.outputs.map((v) => ({ name: v.name, elemType: v.type as OnnxDataType, shape: v.shape })),
    },
  };
  if (spec.valueInfo !== undefined) throw new Error('bench builder: no value_info');
  return encodeModel(model);
}

function writeValueInfo(w: ProtoWriter, field: number, v: SpecValue): void {
  w.messageField(field, (vi) =>
    vi.stringField(1, v.name).messageField(2, (ty) =>
      ty.messageField(1, (tt) => {
        tt.uintField(1, v.type).messageField(2, (sh) => {
          for (const d of v.shape) sh.messageField(1, (dm) => (typeof d === 'number' ? dm.uintField(1, d) : dm.stringField(2, d)));
        });
      }),
    ),
  );
}

/** Local encoder: node domains, FLOAT attributes, external data, value_info, com.microsoft opset. */
function encodeLocal(spec: Spec): { model: Uint8Array; external: Map<string, Uint8Array> } {
  const files = new Map<string, Uint8Array[]>();
  const m = new ProtoWriter();
  m.uintField(1, 8).stringField(2, 'loupe-test');
  m.messageField(7, (g) => {
    for (const n of spec.nodes) {
      g.messageField(1, (w) => {
        for (const i of n.inputs) w.stringField(1, i);
        for (const o of n.outputs) w.stringField(2, o);
        w.stringField(3, n.name).stringField(4, n.op);
        for (const [name, i] of Object.entries(n.ints ?? {})) w.messageField(5, (a) => a.stringField(1, name).uintField(3, i).uintField(20, 2));
        for (const [name, f] of Object.entries(n.floats ?? {})) {
          w.messageField(5, (a) => a.stringField(1, name).tag(2, 5).raw(new Uint8Array(new Float32Array([f]).buffer)).uintField(20, 1));
        }
        if (n.domain !== undefined) w.stringField(7, n.domain);
      });
    }
    g.stringField(2, 'g');
    for (const t of spec.inits) {
      g.messageField(5, (w) => {
        for (const d of t.dims) w.uintField(1, d);
        w.uintField(2, t.type).stringField(8, t.name);
        const data = initBytes(t);
        if (t.external === undefined) {
          w.bytesField(9, data);
        } else {
          const parts = files.get(t.external.location) ?? [];
          files.set(t.external.location, parts);
          const kv = (k: string, v: string): void => void w.messageField(13, (e) => e.stringField(1, k).stringField(2, v));
          kv('location', t.external.location);
          kv('offset', String(t.external.offset));
          kv('length', String(data.length));
          w.uintField(14, 1);
          parts.push(data);
        }
      });
    }
    for (const v of spec.inputs) writeValueInfo(g, 11, v);
    for (const v of spec.outputs) writeValueInfo(g, 12, v);
    for (const v of spec.valueInfo ?? []) writeValueInfo(g, 13, v);
  });
  m.messageField(8, (o) => o.stringField(1, '').uintField(2, spec.opset));
  m.messageField(8, (o) => o.stringField(1, 'com.microsoft').uintField(2, 1));
  const external = new Map<string, Uint8Array>();
  for (const [loc, parts] of files) {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    external.set(loc, all);
  }
  return { model: m.finish().slice(), external };
}

// ---------------------------------------------------------------------------------------------
// Model families

const D = 8;
const FF = 12;
const VOCAB = 11;
const LAYERS = 2;

function weights(dims: readonly number[], seed: number, scale: number): Float32Array {
  return gaussian(dims.reduce((a, b) => a * b, 1), seed, scale);
}

/** Decomposed RMSNorm as torch exports it: Pow, ReduceMean, Add eps, Sqrt, Div, Mul gamma. */
function rmsNorm(scope: string, x: string, gamma: string, ew: ElemType): { nodes: SpecNode[]; out: string } {
  const o = (n: string): string => `${scope}${n}_output_0`;
  const nodes: SpecNode[] = [
    { name: `${scope}Pow`, op: 'Pow', inputs: [x, `two_${ew}`], outputs: [o('Pow')] },
    { name: `${scope}ReduceMean`, op: 'ReduceMean', inputs: [o('Pow'), 'axes_last'], outputs: [o('ReduceMean')] },
    { name: `${scope}Add`, op: 'Add', inputs: [o('ReduceMean'), `eps_${ew}`], outputs: [o('Add')] },
    { name: `${scope}Sqrt`, op: 'Sqrt', inputs: [o('Add')], outputs: [o('Sqrt')] },
    { name: `${scope}Div`, op: 'Div', inputs: [x, o('Sqrt')], outputs: [o('Div')] },
    { name: `${scope}Mul`, op: 'Mul', inputs: [o('Div'), gamma], outputs: [o('Mul')] },
  ];
  return { nodes, out: o('Mul') };
}

/**
 * An Optimum/torch-style decoder: embedding Gather, per layer a decomposed RMSNorm, a one-matmul
 * "attention" with a bias Add inside its sub-scope, residual `/model/layers.{i}/Add`, RMSNorm,
 * SiLU-gated MLP ending in `mlp/down_proj/MatMul`, residual `Add_1`, plus a distracting direct
 * Add that is not residual; final norm and lm_head. `fp16` runs the blocks in float16 between
 * two Casts and declares no intermediate types, so the tap must infer float16.
 */
function optimumSpec(opts: { fp16?: boolean; breakLayer?: number } = {}): Spec {
  const ew: ElemType = opts.fp16 === true ? FLOAT16 : FLOAT;
  const nodes: SpecNode[] = [];
  const inits: SpecInit[] = [
    { name: 'model.embed_tokens.weight', type: FLOAT, dims: [VOCAB, D], values: weights([VOCAB, D], 1, 1) },
    { name: `two_${ew}`, type: ew, dims: [], values: [2] },
    { name: `eps_${ew}`, type: ew, dims: [], values: [1e-5] },
    { name: `zero_${ew}`, type: ew, dims: [], values: [0] },
    { name: 'axes_last', type: INT64, dims: [1], values: [-1] },
    { name: 'lm_head.weight', type: FLOAT, dims: [D, VOCAB], values: weights([D, VOCAB], 2, 0.5) },
    { name: 'model.norm.weight', type: FLOAT, dims: [D], values: weights([D], 3, 0.2).map((x) => 1 + x) },
  ];
  nodes.push({ name: '/model/embed_tokens/Gather', op: 'Gather', inputs: ['model.embed_tokens.weight', 'input_ids'], outputs: ['/model/embed_tokens/Gather_output_0'] });
  let h = '/model/embed_tokens/Gather_output_0';
  if (ew === FLOAT16) {
    nodes.push({ name: '/model/embed_tokens/Cast', op: 'Cast', inputs: [h], outputs: ['/model/embed_tokens/Cast_output_0'], ints: { to: FLOAT16 } });
    h = '/model/embed_tokens/Cast_output_0';
  }
  for (let i = 0; i < LAYERS; i++) {
    const s = `/model/layers.${i}/`;
    const w = (name: string, dims: number[], seed: number, scale: number, offset = 0): string => {
      inits.push({ name: `model.layers.${i}.${name}`, type: ew, dims, values: weights(dims, 100 * i + seed, scale).map((x) => x + offset) });
      return `model.layers.${i}.${name}`;
    };
    const ln1 = rmsNorm(`${s}input_layernorm/`, h, w('input_layernorm.weight', [D], 1, 0.2, 1), ew);
    nodes.push(...ln1.nodes);
    nodes.push(
      { name: `${s}self_attn/o_proj/MatMul`, op: 'MatMul', inputs: [ln1.out, w('self_attn.o_proj.weight', [D, D], 2, 0.4)], outputs: [`${s}self_attn/o_proj/MatMul_output_0`] },
      { name: `${s}self_attn/o_proj/Add`, op: 'Add', inputs: [`${s}self_attn/o_proj/MatMul_output_0`, w('self_attn.o_proj.bias', [D], 3, 0.1)], outputs: [`${s}self_attn/o_proj/Add_output_0`] },
      { name: `${s}Add`, op: 'Add', inputs: [h, `${s}self_attn/o_proj/Add_output_0`], outputs: [`${s}Add_output_0`] },
      { name: `${s}Add_2`, op: 'Add', inputs: [`${s}Add_output_0`, `zero_${ew}`], outputs: [`${s}Add_2_output_0`] },
    );
    const ln2 = rmsNorm(`${s}post_attention_layernorm/`, `${s}Add_output_0`, w('post_attention_layernorm.weight', [D], 4, 0.2, 1), ew);
    nodes.push(...ln2.nodes);
    const m = `${s}mlp/`;
    nodes.push(
      { name: `${m}gate_proj/MatMul`, op: 'MatMul', inputs: [ln2.out, w('mlp.gate_proj.weight', [D, FF], 5, 0.4)], outputs: [`${m}gate_proj/MatMul_output_0`] },
      { name: `${m}act_fn/Sigmoid`, op: 'Sigmoid', inputs: [`${m}gate_proj/MatMul_output_0`], outputs: [`${m}act_fn/Sigmoid_output_0`] },
      { name: `${m}act_fn/Mul`, op: 'Mul', inputs: [`${m}gate_proj/MatMul_output_0`, `${m}act_fn/Sigmoid_output_0`], outputs: [`${m}act_fn/Mul_output_0`] },
      { name: `${m}up_proj/MatMul`, op: 'MatMul', inputs: [ln2.out, w('mlp.up_proj.weight', [D, FF], 6, 0.4)], outputs: [`${m}up_proj/MatMul_output_0`] },
      { name: `${m}Mul`, op: 'Mul', inputs: [`${m}act_fn/Mul_output_0`, `${m}up_proj/MatMul_output_0`], outputs: [`${m}Mul_output_0`] },
      { name: `${m}down_proj/MatMul`, op: 'MatMul', inputs: [`${m}Mul_output_0`, w('mlp.down_proj.weight', [FF, D], 7, 0.4)], outputs: [`${m}down_proj/MatMul_output_0`] },
      {
        name: `${s}Add_1`,
        op: opts.breakLayer === i ? 'Sub' : 'Add',
        inputs: [`${s}Add_output_0`, `${m}down_proj/MatMul_output_0`],
        outputs: [`${s}Add_1_output_0`],
      },
    );
    h = `${s}Add_1_output_0`;
  }
  if (ew === FLOAT16) {
    nodes.push({ name: '/model/Cast', op: 'Cast', inputs: [h], outputs: ['/model/Cast_output_0'], ints: { to: FLOAT } });
    h = '/model/Cast_output_0';
  }
  const fn = rmsNorm('/model/norm/', h, 'model.norm.weight', FLOAT);
  nodes.push(...fn.nodes);
  nodes.push({ name: '/lm_head/MatMul', op: 'MatMul', inputs: [fn.out, 'lm_head.weight'], outputs: ['logits'] });
  if (ew === FLOAT16) inits.push({ name: 'two_1', type: FLOAT, dims: [], values: [2] }, { name: 'eps_1', type: FLOAT, dims: [], values: [1e-5] });
  return {
    nodes,
    inits,
    inputs: [{ name: 'input_ids', type: INT64, shape: ['batch_size', 'sequence_length'] }],
    outputs: [{ name: 'logits', type: FLOAT, shape: ['batch_size', 'sequence_length', VOCAB] }],
    opset: 18,
  };
}

/**
 * An ORT-GenAI-model-builder-style decoder: residual adds fused into com.microsoft
 * SkipSimplifiedLayerNormalization chained through output 3, layer 0's input norm a plain
 * SimplifiedLayerNormalization, the final norm in `/model/layers.{L}/final_norm_layernorm/`
 * WITHOUT output 3 (as the builder leaves it when nothing reads it).
 */
function genaiSpec(opts: { externalEmbedding?: boolean } = {}): Spec {
  const nodes: SpecNode[] = [];
  const inits: SpecInit[] = [
    {
      name: 'model.embed_tokens.weight',
      type: FLOAT,
      dims: [VOCAB, D],
      values: weights([VOCAB, D], 11, 1),
      ...(opts.externalEmbedding === true ? { external: { location: 'model.onnx_data', offset: 0 } } : {}),
    },
    { name: 'lm_head.MatMul.weight', type: FLOAT, dims: [D, VOCAB], values: weights([D, VOCAB], 12, 0.5) },
  ];
  const eps = { epsilon: 1e-6 };
  const w = (name: string, dims: number[], seed: number, scale: number, offset = 0): string => {
    inits.push({ name, type: FLOAT, dims, values: weights(dims, seed, scale).map((x) => x + offset) });
    return name;
  };
  nodes.push({ name: '/model/embed_tokens/Gather', op: 'Gather', inputs: ['model.embed_tokens.weight', 'input_ids'], outputs: ['/model/embed_tokens/Gather/output_0'] });
  let branch = '';
  let stream = '/model/embed_tokens/Gather/output_0';
  for (let i = 0; i < LAYERS; i++) {
    const s = `/model/layers.${i}/`;
    const g1 = w(`model.layers.${i}.input_layernorm.weight`, [D], 20 + i, 0.2, 1);
    if (i === 0) {
      nodes.push({ name: `${s}input_layernorm/LayerNorm`, op: 'SimplifiedLayerNormalization', inputs: [stream, g1], outputs: [`${s}input_layernorm/output_0`], floats: eps });
    } else {
      nodes.push({
        name: `${s}input_layernorm/SkipLayerNorm`,
        op: 'SkipSimplifiedLayerNormalization',
        domain: 'com.microsoft',
        inputs: [branch, stream, g1],
        outputs: [`${s}input_layernorm/output_0`, '', '', `${s}input_layernorm/output_3`],
        floats: eps,
      });
      stream = `${s}input_layernorm/output_3`;
    }
    nodes.push({
      name: `${s}attn/o_proj/MatMul`,
      op: 'MatMul',
      inputs: [`${s}input_layernorm/output_0`, w(`model.layers.${i}.attn.o_proj.MatMul.weight`, [D, D], 30 + i, 0.4)],
      outputs: [`${s}attn/o_proj/MatMul/output_0`],
    });
    nodes.push({
      name: `${s}post_attention_layernorm/SkipLayerNorm`,
      op: 'SkipSimplifiedLayerNormalization',
      domain: 'com.microsoft',
      inputs: [`${s}attn/o_proj/MatMul/output_0`, stream, w(`model.layers.${i}.post_attention_layernorm.weight`, [D], 40 + i, 0.2, 1)],
      outputs: [`${s}post_attention_layernorm/output_0`, '', '', `${s}post_attention_layernorm/output_3`],
      floats: eps,
    });
    stream = `${s}post_attention_layernorm/output_3`;
    const m = `${s}mlp/`;
    nodes.push(
      { name: `${m}gate_proj/MatMul`, op: 'MatMul', inputs: [`${s}post_attention_layernorm/output_0`, w(`model.layers.${i}.mlp.gate_proj.MatMul.weight`, [D, FF], 50 + i, 0.4)], outputs: [`${m}gate_proj/MatMul/output_0`] },
      { name: `${m}act_fn/Sigmoid`, op: 'Sigmoid', inputs: [`${m}gate_proj/MatMul/output_0`], outputs: [`${m}act_fn/Sigmoid/output_0`] },
      { name: `${m}act_fn/Mul`, op: 'Mul', inputs: [`${m}gate_proj/MatMul/output_0`, `${m}act_fn/Sigmoid/output_0`], outputs: [`${m}act_fn/Mul/output_0`] },
      { name: `${m}up_proj/MatMul`, op: 'MatMul', inputs: [`${s}post_attention_layernorm/output_0`, w(`model.layers.${i}.mlp.up_proj.MatMul.weight`, [D, FF], 60 + i, 0.4)], outputs: [`${m}up_proj/MatMul/output_0`] },
      { name: `${m}Mul`, op: 'Mul', inputs: [`${m}act_fn/Mul/output_0`, `${m}up_proj/MatMul/output_0`], outputs: [`${m}Mul/output_0`] },
      { name: `${m}down_proj/MatMul`, op: 'MatMul', inputs: [`${m}Mul/output_0`, w(`model.layers.${i}.mlp.down_proj.MatMul.weight`, [FF, D], 70 + i, 0.4)], outputs: [`${m}down_proj/MatMul/output_0`] },
    );
    branch = `${m}down_proj/MatMul/output_0`;
  }
  const f = `/model/layers.${LAYERS}/final_norm_layernorm/`;
  nodes.push({
    name: `${f}SkipLayerNorm`,
    op: 'SkipSimplifiedLayerNormalization',
    domain: 'com.microsoft',
    inputs: [branch, stream, w('model.norm.weight', [D], 80, 0.2, 1)],
    outputs: [`${f}output_0`],
    floats: eps,
  });
  nodes.push({ name: '/lm_head/MatMul', op: 'MatMul', inputs: [`${f}output_0`, 'lm_head.MatMul.weight'], outputs: ['logits'] });
  return {
    nodes,
    inits,
    inputs: [{ name: 'input_ids', type: INT64, shape: ['batch_size', 'sequence_length'] }],
    outputs: [{ name: 'logits', type: FLOAT, shape: ['batch_size', 'sequence_length', VOCAB] }],
    valueInfo: [{ name: '/model/layers.0/post_attention_layernorm/output_3', type: FLOAT, shape: ['batch_size', 'sequence_length', D] }],
    opset: 18,
  };
}

// ---------------------------------------------------------------------------------------------
// Float64 reference interpreter of a Spec, with an optional steering vector added to one
// tensor (or to a fused node's residual sum) right where it is produced.

interface RefTensor {
  readonly dims: readonly number[];
  readonly data: Float64Array;
}
interface RefSteer {
  /** A tensor name, or `sum:<node name>` for a fused Skip*LayerNormalization's residual sum. */
  readonly at: string;
  readonly v: Float64Array;
}

function broadcast(a: RefTensor, b: RefTensor, f: (x: number, y: number) => number): RefTensor {
  const rank = Math.max(a.dims.length, b.dims.length);
  const pad = (d: readonly number[]): number[] => [...Array<number>(rank - d.length).fill(1), ...d];
  const ad = pad(a.dims);
  const bd = pad(b.dims);
  const dims = ad.map((x, i) => Math.max(x, bd[i] ?? 1));
  const n = dims.reduce((p, q) => p * q, 1);
  const strides = (d: number[]): number[] => {
    const s = Array<number>(rank).fill(0);
    let acc = 1;
    for (let i = rank - 1; i >= 0; i--) {
      s[i] = d[i] === 1 ? 0 : acc;
      acc *= d[i] ?? 1;
    }
    return s;
  };
  const as = strides(ad);
  const bs = strides(bd);
  const out = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    let rem = k;
    let ai = 0;
    let bi = 0;
    for (let i = rank - 1; i >= 0; i--) {
      const di = dims[i] ?? 1;
      const c = rem % di;
      rem = (rem - c) / di;
      ai += c * (as[i] ?? 0);
      bi += c * (bs[i] ?? 0);
    }
    out[k] = f(a.data[ai] ?? NaN, b.data[bi] ?? NaN);
  }
  return { dims, data: out };
}

function lastAxis(x: RefTensor, f: (row: Float64Array) => Float64Array): RefTensor {
  const d = x.dims[x.dims.length - 1] ?? 1;
  const rows = x.data.length / d;
  const outs: Float64Array[] = [];
  for (let r = 0; r < rows; r++) outs.push(f(x.data.subarray(r * d, r * d + d)));
  const w = outs[0]?.length ?? 0;
  const data = new Float64Array(rows * w);
  outs.forEach((o, r) => data.set(o, r * w));
  return { dims: [...x.dims.slice(0, -1), w], data };
}

function rmsRows(x: RefTensor, gamma: RefTensor, eps: number): RefTensor {
  return lastAxis(x, (row) => {
    const ms = row.reduce((s, v) => s + v * v, 0) / row.length;
    const inv = 1 / Math.sqrt(ms + eps);
    return row.map((v, j) => v * inv * (gamma.data[j] ?? NaN));
  });
}

function interpret(spec: Spec, feeds: Record<string, RefTensor>, steer?: RefSteer): Map<string, RefTensor> {
  const env = new Map<string, RefTensor>(Object.entries(feeds));
  for (const t of spec.inits) env.set(t.name, { dims: t.dims, data: Float64Array.from(Array.from(t.values), (x) => (t.type === FLOAT16 ? f16ToF32(f32ToF16(x)) : x)) });
  const get = (name: string | undefined): RefTensor => {
    const t = env.get(name ?? '');
    if (t === undefined) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
  const steered = (name: string, t: RefTensor): RefTensor =>
    steer !== undefined && steer.at === name ? broadcast(t, { dims: [steer.v.length], data: steer.v }, (x, y) => x + y) : t;
  const bin: Record<string, (x: number, y: number) => number> = {
    Add: (x, y) => x + y,
    Sub: (x, y) => x - y,
    Mul: (x, y) => x * y,
    Div: (x, y) => x / y,
    Pow: (x, y) => x ** y,
  };
  for (const n of spec.nodes) {
    const [a, b] = [n.inputs[0], n.inputs[1]];
    let outs: RefTensor[];
    const binOp = bin[n.op];
    if (binOp !== undefined) {
      outs = [broadcast(get(a), get(b), binOp)];
    } else if (n.op === 'Gather') {
      const table = get(a);
      const ids = get(b);
      const w = table.dims[1] ?? 0;
      const data = new Float64Array(ids.data.length * w);
      ids.data.forEach((id, k) => data.set(table.data.subarray(id * w, id * w + w), k * w));
      outs = [{ dims: [...ids.dims, w], data }];
    } else if (n.op === 'MatMul') {
      const x = get(a);
      const m = get(b);
      const [k, cols] = [m.dims[0] ?? 0, m.dims[1] ?? 0];
      outs = [lastAxis(x, (row) => Float64Array.from({ length: cols }, (_, j) => row.reduce((s, v, i) => s + v * (m.data[i * cols + j] ?? NaN), 0)))];
      if (x.dims[x.dims.length - 1] !== k) throw new Error('reference: MatMul shape');
    } else if (n.op === 'ReduceMean') {
      outs = [lastAxis(get(a), (row) => Float64Array.of(row.reduce((s, v) => s + v, 0) / row.length))];
    } else if (n.op === 'Sqrt' || n.op === 'Sigmoid' || n.op === 'Cast' || n.op === 'Identity') {
      const f = n.op === 'Sqrt' ? Math.sqrt : n.op === 'Sigmoid' ? (v: number) => 1 / (1 + Math.exp(-v)) : (v: number) => v;
      const x = get(a);
      outs = [{ dims: x.dims, data: x.data.map(f) }];
    } else if (n.op === 'SimplifiedLayerNormalization') {
      outs = [rmsRows(get(a), get(b), n.floats?.['epsilon'] ?? 1e-5)];
    } else if (n.op === 'SkipSimplifiedLayerNormalization') {
      const sum = steered(`sum:${n.name}`, broadcast(get(a), get(b), (x, y) => x + y));
      outs = [rmsRows(sum, get(n.inputs[2]), n.floats?.['epsilon'] ?? 1e-12), sum, sum, sum];
      env.set(`sum:${n.name}`, sum);
    } else {
      throw new Error(`reference: no op ${n.op}`);
    }
    n.outputs.forEach((o, i) => {
      const t = outs[i];
      if (o !== '' && t !== undefined) env.set(o, n.op === 'SkipSimplifiedLayerNormalization' ? t : steered(o, t));
    });
  }
  return env;
}

// ---------------------------------------------------------------------------------------------
// onnxruntime-web (wasm EP), Node build, wasm from node_modules, one thread (see bench/ort/session.ts).

beforeAll(() => {
  const require = createRequire(import.meta.url);
  ort.env.wasm.wasmPaths = pathToFileURL(path.dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm')) + path.sep).href;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
});

type Outputs = Record<string, ort.Tensor>;

async function runOrt(model: Uint8Array, feeds: Record<string, ort.Tensor>, external?: Map<string, Uint8Array>): Promise<Outputs> {
  const externalData = external === undefined ? undefined : [...external].map(([p, data]) => ({ path: p, data }));
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['wasm'],
    ...(externalData === undefined ? {} : { externalData }),
  });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

const BATCH = 2;
const SEQ = 5;
const IDS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];

function idsTensor(): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(IDS, (x) => BigInt(x)), [BATCH, SEQ]);
}
const idsRef: RefTensor = { dims: [BATCH, SEQ], data: Float64Array.from(IDS) };

function steerVector(seed: number): Float64Array {
  return Float64Array.from(gaussian(D, seed, 1.5));
}

function steerTensor(v: Float64Array | undefined, elemType: number): ort.Tensor {
  const data = v ?? new Float64Array(D);
  return elemType === FLOAT16
    ? new ort.Tensor('float16', Uint16Array.from(data, f32ToF16), [1, 1, D])
    : new ort.Tensor('float32', Float32Array.from(data), [1, 1, D]);
}

function floats(t: ort.Tensor | undefined): Float64Array {
  if (t === undefined) throw new Error('missing output');
  if (t.type === 'float16') {
    const d = t.data;
    const bits = d instanceof Uint16Array ? d : new Uint16Array((d as Uint8Array).buffer, (d as Uint8Array).byteOffset, t.size);
    return Float64Array.from(bits, f16ToF32);
  }
  return Float64Array.from(t.data as Float32Array);
}

function rawBytes(t: ort.Tensor | undefined): Uint8Array {
  if (t === undefined) throw new Error('missing output');
  const d = t.data as ArrayBufferView;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice();
}

function maxRelErr(got: Float64Array, want: Float64Array): number {
  expect(got.length).toBe(want.length);
  let worst = 0;
  const scale = Math.max(1, ...Array.from(want, Math.abs));
  got.forEach((g, i) => {
    worst = Math.max(worst, Math.abs(g - (want[i] ?? NaN)) / scale);
  });
  return worst;
}

/** The same spec with `tensor` declared as an extra graph output: ORT's own value, unedited graph. */
function exposed(spec: Spec, tensor: string, type: ElemType): Spec {
  return { ...spec, outputs: [...spec.outputs, { name: tensor, type, shape: ['batch_size', 'sequence_length', D] }] };
}

const SITES: readonly OnnxSite[] = ['resid_pre', 'resid_post', 'mlp_out'];

/** Where the Optimum-style graph's sites are, by name (what an Optimum export calls them). */
const OPTIMUM_SITES: Record<OnnxSite, readonly string[]> = {
  resid_pre: ['/model/embed_tokens/Gather_output_0', '/model/layers.0/Add_1_output_0'],
  resid_post: ['/model/layers.0/Add_1_output_0', '/model/layers.1/Add_1_output_0'],
  mlp_out: ['/model/layers.0/mlp/down_proj/MatMul_output_0', '/model/layers.1/mlp/down_proj/MatMul_output_0'],
};

/** Runs the tapped model with zeros and with a steering vector and checks both against references. */
async function checkNumerics(opts: {
  spec: Spec;
  original: Uint8Array;
  tapped: TapResult;
  steerAt: string;
  hookRef: string;
  tol: number;
  external?: Map<string, Uint8Array>;
}): Promise<void> {
  const { spec, original, tapped, tol } = opts;
  const elemType = tapped.hook.elemType;
  const base = await runOrt(original, { input_ids: idsTensor() }, opts.external);
  const zero = await runOrt(tapped.model, { input_ids: idsTensor(), [tapped.steer.name]: steerTensor(undefined, elemType) }, opts.external);
  // Zeros: x + 0 is x, so every original output is unchanged bit for bit.
  expect(rawBytes(zero['logits'])).toEqual(rawBytes(base['logits']));
  const ref0 = interpret(spec, { input_ids: idsRef });
  const hook0 = zero[tapped.hook.name];
  expect(hook0?.dims).toEqual([BATCH, SEQ, D]);
  expect(maxRelErr(floats(hook0), get(ref0, opts.hookRef))).toBeLessThan(tol);

  const v = steerVector(7);
  const steered = await runOrt(tapped.model, { input_ids: idsTensor(), [tapped.steer.name]: steerTensor(v, elemType) }, opts.external);
  const vRounded = elemType === FLOAT16 ? v.map((x) => f16ToF32(f32ToF16(x))) : v.map((x) => Math.fround(x));
  const ref1 = interpret(spec, { input_ids: idsRef }, { at: opts.steerAt, v: vRounded });
  expect(maxRelErr(floats(steered[tapped.hook.name]), get(ref1, opts.hookRef))).toBeLessThan(tol);
  expect(maxRelErr(floats(steered['logits']), get(ref1, 'logits'))).toBeLessThan(tol);
  // The steer must actually move the logits (guards against a test that cannot fail).
  expect(maxRelErr(get(ref1, 'logits'), get(ref0, 'logits'))).toBeGreaterThan(10 * tol);
}

function get(env: Map<string, RefTensor>, name: string): Float64Array {
  const t = env.get(name);
  if (t === undefined) throw new Error(`reference has no ${name}`);
  return t.data;
}

/** Index of the first differing byte, -1 when equal (vitest's deep toEqual is slow on megabytes). */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function initializerBytes(index: OnnxModelIndex): Map<string, Uint8Array> {
  return new Map(index.graph.initializers.map((t) => [t.name, index.bytes.subarray(t.field.start, t.field.end)]));
}

/** Every initializer is byte-identical in the edited model and the model grew by a small delta. */
function expectSurgical(before: Uint8Array, after: TapResult): void {
  expect(after.model.length).toBe(before.length + after.delta);
  expect(after.delta).toBeGreaterThan(0);
  expect(after.delta).toBeLessThan(600);
  const a = initializerBytes(indexOnnxModel(before));
  const b = initializerBytes(indexOnnxModel(after.model));
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [name, bytes] of a) expect(firstDiff(b.get(name) ?? new Uint8Array(0), bytes), name).toBe(-1);
}

// ---------------------------------------------------------------------------------------------

describe('Optimum-style graph (float32)', () => {
  const spec = optimumSpec();
  const model = encodeWithBench(spec);
  const index = indexOnnxModel(model);

  test('indexes nodes, inputs, outputs and initializers without copying', () => {
    expect(index.graph.nodes.length).toBe(spec.nodes.length);
    expect(index.graph.inputs.map((v) => [v.name, v.elemType, v.shape])).toEqual([['input_ids', INT64, ['batch_size', 'sequence_length']]]);
    expect(index.graph.outputs[0]?.shape).toEqual(['batch_size', 'sequence_length', VOCAB]);
    expect(index.opsetImports).toEqual([{ domain: '', version: 18 }]);
    expect(index.irVersion).toBe(8);
    const emb = index.graph.initializers.find((t) => t.name === 'model.embed_tokens.weight');
    expect(emb?.dims).toEqual([VOCAB, D]);
    expect(emb?.external).toBe(false);
    const add1 = index.graph.nodes.find((n) => n.name === '/model/layers.1/Add_1');
    expect(add1).toMatchObject({ opType: 'Add', domain: '', inputs: ['/model/layers.1/Add_output_0', '/model/layers.1/mlp/down_proj/MatMul_output_0'] });
    // Views into the model's own buffer.
    expect(index.bytes.buffer).toBe(model.buffer);
  });

  test('finds every site by the residual-Add rule', () => {
    for (const site of SITES) {
      for (let layer = 0; layer < LAYERS; layer++) {
        const loc = findSite(index, { layer, site });
        expect(loc).toMatchObject({ kind: 'tensor', family: 'optimum', layer, site, tensor: OPTIMUM_SITES[site][layer] });
      }
    }
    expect(findSite(index, { layer: 1 })).toMatchObject({ site: 'resid_post', tensor: '/model/layers.1/Add_1_output_0' });
  });

  test('edit: producer renamed, Add and Identity follow it, steer input and hook output declared', () => {
    const r = tapAndSteer(model, { layer: 0, site: 'resid_post' });
    expect(r.hook).toEqual({ name: 'loupe_hook', elemType: FLOAT, dIn: D, tensor: '/model/layers.0/Add_1_output_0', dims: ['batch_size', 'sequence_length', D] });
    expect(r.steer).toEqual({ name: 'loupe_steer', elemType: FLOAT, dims: [1, 1, D] });
    const g = indexOnnxModel(r.model).graph;
    const i = g.nodes.findIndex((n) => n.name === '/model/layers.0/Add_1');
    expect(g.nodes[i]?.outputs).toEqual(['/model/layers.0/Add_1_output_0/loupe_pre']);
    expect(g.nodes[i + 1]).toMatchObject({ opType: 'Add', inputs: ['/model/layers.0/Add_1_output_0/loupe_pre', 'loupe_steer'], outputs: ['/model/layers.0/Add_1_output_0'] });
    expect(g.nodes[i + 2]).toMatchObject({ opType: 'Identity', inputs: ['/model/layers.0/Add_1_output_0'], outputs: ['loupe_hook'] });
    expect(g.nodes.length).toBe(spec.nodes.length + 2);
    expect(g.inputs.at(-1)).toMatchObject({ name: 'loupe_steer', elemType: FLOAT, shape: [1, 1, D] });
    expect(g.outputs.at(-1)).toMatchObject({ name: 'loupe_hook', elemType: FLOAT, shape: ['batch_size', 'sequence_length', D] });
    // No consumer was touched: every other node's bytes are as before.
    const before = index.graph.nodes.filter((n) => n.name !== '/model/layers.0/Add_1').map((n) => model.subarray(n.field.start, n.field.end));
    const after = g.nodes.filter((n) => n.name !== '/model/layers.0/Add_1' && !n.name.startsWith('loupe_')).map((n) => r.model.subarray(n.field.start, n.field.end));
    expect(after).toEqual(before);
    expectSurgical(model, r);
  });

  for (const site of SITES) {
    for (let layer = 0; layer < LAYERS; layer++) {
      test(`ORT wasm: ${site} of layer ${layer} — hook, steering and zero-steer match`, async () => {
        const r = tapAndSteer(model, { layer, site });
        const t = r.hook.tensor;
        await checkNumerics({ spec, original: model, tapped: r, steerAt: t, hookRef: t, tol: 1e-5 });
        // The hook equals ORT's own value of that tensor in the unedited graph, bit for bit.
        const plain = await runOrt(encodeWithBench(exposed(spec, t, FLOAT)), { input_ids: idsTensor() });
        const zero = await runOrt(r.model, { input_ids: idsTensor(), loupe_steer: steerTensor(undefined, FLOAT) });
        expect(rawBytes(zero['loupe_hook'])).toEqual(rawBytes(plain[t]));
      });
    }
  }

  test('two taps compose (different names), each steer reaches the logits', async () => {
    const a = tapAndSteer(model, { layer: 0, site: 'mlp_out', hookName: 'hook0', steerName: 'steer0' });
    const b = tapAndSteer(a.model, { layer: 1, site: 'resid_post', hookName: 'hook1', steerName: 'steer1' });
    const v = steerVector(3);
    const out = await runOrt(b.model, { input_ids: idsTensor(), steer0: steerTensor(v, FLOAT), steer1: steerTensor(undefined, FLOAT) });
    const ref = interpret(spec, { input_ids: idsRef }, { at: a.hook.tensor, v: v.map(Math.fround) });
    expect(maxRelErr(floats(out['hook1']), get(ref, b.hook.tensor))).toBeLessThan(1e-5);
    expect(maxRelErr(floats(out['logits']), get(ref, 'logits'))).toBeLessThan(1e-5);
    // Sites are still found through the steering Adds, under the names consumers read.
    const tapped = indexOnnxModel(b.model);
    for (const site of SITES) {
      for (let layer = 0; layer < LAYERS; layer++) {
        expect(findSite(tapped, { layer, site }), `${site} ${layer}`).toMatchObject({ kind: 'tensor', tensor: OPTIMUM_SITES[site][layer] });
      }
    }
    expect(() => tapAndSteer(b.model, { layer: 0, site: 'resid_pre', hookName: 'hook0', steerName: 'steer2' })).toThrow(
      /already has a tensor or node named 'hook0' \(already tapped\?\)/,
    );
  });

  test('in place: same bytes as the copying edit, tail moved with copyWithin', () => {
    const copy = tapAndSteer(model, { layer: 1, site: 'resid_pre' });
    const buf = new ArrayBuffer(16 + model.length + TAP_SPARE_BYTES);
    const view = new Uint8Array(buf, 16, model.length);
    view.set(model);
    const r = tapAndSteerInPlace(view, model.length + TAP_SPARE_BYTES, { layer: 1, site: 'resid_pre' });
    expect(r.model.buffer).toBe(buf);
    expect(r.model.byteOffset).toBe(16);
    expect(r.model).toEqual(copy.model);
  });

  test('in place: too little capacity fails before writing anything', () => {
    const buf = new Uint8Array(model.length + 8);
    buf.set(model);
    const snapshot = buf.slice();
    expect(() => tapAndSteerInPlace(buf.subarray(0, model.length), buf.length, { layer: 0 })).toThrow(OnnxGraphError);
    expect(buf).toEqual(snapshot);
  });

  test('in place: a resizable ArrayBuffer is grown', () => {
    const copy = tapAndSteer(model, { layer: 0 });
    const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
    const buf = new Resizable(model.length, { maxByteLength: model.length + TAP_SPARE_BYTES });
    const view = new Uint8Array(buf, 0, model.length);
    view.set(model);
    const r = tapAndSteerInPlace(view, model.length + TAP_SPARE_BYTES, { layer: 0 });
    expect(r.model).toEqual(copy.model);
  });

  test('missing sites throw OnnxGraphError listing candidates', () => {
    const broken = indexOnnxModel(encodeWithBench(optimumSpec({ breakLayer: 1 })));
    expect(() => findSite(broken, { layer: 1 })).toThrow(OnnxGraphError);
    expect(() => findSite(broken, { layer: 1 })).toThrow(/Add outputs in that scope: .*\/model\/layers\.1\/Add_output_0.*\/model\/layers\.1\/Add_2_output_0/);
    expect(() => findSite(broken, { layer: 0 })).not.toThrow();
    expect(() => findSite(index, { layer: 2 })).toThrow(/layer 2 is out of range; layer scopes found: \/model\/layers\.0\/, \/model\/layers\.1\/ \(2 blocks\)/);
    expect(() => findSite(index, { layer: -1 })).toThrow(OnnxGraphError);
    const flat = indexOnnxModel(
      encodeWithBench({ ...spec, nodes: spec.nodes.map((n) => ({ ...n, name: n.name.replace('/model/layers.', '/model/blocks_') })) }),
    );
    expect(() => findSite(flat, { layer: 0 })).toThrow(/no `layers\.\{i\}\/` scopes/);
  });

  test('dIn and elemType options are checked against the graph', () => {
    expect(() => tapAndSteer(model, { layer: 0, dIn: D + 1 })).toThrow(/dIn 9 was given but the graph says the site is 8 wide/);
    expect(() => tapAndSteer(model, { layer: 0, elemType: FLOAT16 })).toThrow(/elemType 10 was given but the graph says .* has element type 1/);
    expect(tapAndSteer(model, { layer: 0, elemType: FLOAT, dIn: D }).hook).toMatchObject({ elemType: FLOAT, dIn: D });
    expect(() => tapAndSteer(model, { layer: 0, hookName: 'x', steerName: 'x' })).toThrow(OnnxGraphError);
    expect(() => tapAndSteer(model, { layer: 0, hookName: 'logits' })).toThrow(/already has a tensor or node named 'logits'/);
  });
});

describe('GenAI-style graph (com.microsoft SkipSimplifiedLayerNormalization)', () => {
  const spec = genaiSpec();
  const { model } = encodeLocal(spec);
  const index = indexOnnxModel(model);
  const post0 = '/model/layers.1/input_layernorm/SkipLayerNorm';
  const final = `/model/layers.${LAYERS}/final_norm_layernorm/SkipLayerNorm`;

  test('finds fused sites through the skip chain', () => {
    expect(index.opsetImports).toContainEqual({ domain: 'com.microsoft', version: 1 });
    expect(findSite(index, { layer: 0 })).toMatchObject({ kind: 'skip-sum', family: 'genai', node: { name: post0 }, tensor: '/model/layers.1/input_layernorm/output_3' });
    expect(findSite(index, { layer: 1 })).toMatchObject({ kind: 'skip-sum', node: { name: final }, tensor: undefined });
    expect(findSite(index, { layer: 0, site: 'resid_pre' })).toMatchObject({ kind: 'tensor', tensor: '/model/embed_tokens/Gather/output_0' });
    expect(findSite(index, { layer: 1, site: 'resid_pre' })).toMatchObject({ kind: 'skip-sum', layer: 1, site: 'resid_pre', node: { name: post0 } });
    expect(findSite(index, { layer: 0, site: 'mlp_out' })).toMatchObject({ kind: 'tensor', tensor: '/model/layers.0/mlp/down_proj/MatMul/output_0' });
    expect(findSite(index, { layer: 1, site: 'mlp_out' })).toMatchObject({ kind: 'tensor', tensor: '/model/layers.1/mlp/down_proj/MatMul/output_0' });
    // The final norm's scope (layers.2) is not a block.
    expect(() => findSite(index, { layer: 2 })).toThrow(/out of range.*\(2 blocks\)/);
  });

  test('edit of a fused node: Add on the skip input before it, output 3 hooked', () => {
    const r = tapAndSteer(model, { layer: 0 });
    const g = indexOnnxModel(r.model).graph;
    const i = g.nodes.findIndex((n) => n.name === post0);
    const stream = '/model/layers.0/post_attention_layernorm/output_3';
    expect(g.nodes[i - 1]).toMatchObject({ opType: 'Add', domain: '', inputs: [stream, 'loupe_steer'], outputs: [`${stream}/loupe_steered`] });
    expect(g.nodes[i]).toMatchObject({ opType: 'SkipSimplifiedLayerNormalization', domain: 'com.microsoft', inputs: ['/model/layers.0/mlp/down_proj/MatMul/output_0', `${stream}/loupe_steered`, 'model.layers.1.input_layernorm.weight'] });
    expect(g.nodes[i]?.outputs).toEqual(['/model/layers.1/input_layernorm/output_0', '', '', '/model/layers.1/input_layernorm/output_3']);
    expect(g.nodes[i + 1]).toMatchObject({ opType: 'Identity', inputs: ['/model/layers.1/input_layernorm/output_3'], outputs: ['loupe_hook'] });
    expect(r.hook).toMatchObject({ elemType: FLOAT, dIn: D, dims: ['batch_size', 'sequence_length', D] });
    expectSurgical(model, r);
  });

  test('edit of a fused node without output 3 names it', () => {
    const r = tapAndSteer(model, { layer: 1 });
    const node = indexOnnxModel(r.model).graph.nodes.find((n) => n.name === final);
    expect(node?.outputs).toEqual([`/model/layers.${LAYERS}/final_norm_layernorm/output_0`, '', '', 'loupe_hook/input_skip_bias_sum']);
    expect(r.hook.tensor).toBe('loupe_hook/input_skip_bias_sum');
  });

  const cases: { layer: number; site: OnnxSite; steerAt: string; hookRef: string }[] = [
    { layer: 0, site: 'resid_pre', steerAt: '/model/embed_tokens/Gather/output_0', hookRef: '/model/embed_tokens/Gather/output_0' },
    { layer: 0, site: 'resid_post', steerAt: `sum:${post0}`, hookRef: `sum:${post0}` },
    { layer: 1, site: 'resid_pre', steerAt: `sum:${post0}`, hookRef: `sum:${post0}` },
    { layer: 1, site: 'resid_post', steerAt: `sum:${final}`, hookRef: `sum:${final}` },
    { layer: 0, site: 'mlp_out', steerAt: '/model/layers.0/mlp/down_proj/MatMul/output_0', hookRef: '/model/layers.0/mlp/down_proj/MatMul/output_0' },
    { layer: 1, site: 'mlp_out', steerAt: '/model/layers.1/mlp/down_proj/MatMul/output_0', hookRef: '/model/layers.1/mlp/down_proj/MatMul/output_0' },
  ];
  for (const c of cases) {
    test(`ORT wasm runs the contrib op: ${c.site} of layer ${c.layer}`, async () => {
      const r = tapAndSteer(model, { layer: c.layer, site: c.site });
      await checkNumerics({ spec, original: model, tapped: r, steerAt: c.steerAt, hookRef: c.hookRef, tol: 1e-5 });
    });
  }

  test('taps compose on fused nodes: the chain is followed through a steering Add', async () => {
    const a = tapAndSteer(model, { layer: 0, hookName: 'hookA', steerName: 'steerA' });
    const b = tapAndSteer(a.model, { layer: 1, site: 'resid_pre', hookName: 'hookB', steerName: 'steerB' });
    const c = tapAndSteer(b.model, { layer: 1, site: 'mlp_out', hookName: 'hookC', steerName: 'steerC' });
    const tapped = indexOnnxModel(c.model);
    expect(findSite(tapped, { layer: 1 })).toMatchObject({ kind: 'skip-sum', node: { name: final } });
    expect(findSite(tapped, { layer: 0 })).toMatchObject({ kind: 'skip-sum', node: { name: post0 } });
    const va = steerVector(4);
    const vb = steerVector(5);
    const out = await runOrt(c.model, {
      input_ids: idsTensor(),
      steerA: steerTensor(va, FLOAT),
      steerB: steerTensor(vb, FLOAT),
      steerC: steerTensor(undefined, FLOAT),
    });
    // Both steers land on the same residual sum (resid_post 0 = resid_pre 1).
    const ref = interpret(spec, { input_ids: idsRef }, { at: `sum:${post0}`, v: va.map((x, j) => Math.fround(x) + Math.fround(vb[j] ?? NaN)) });
    expect(maxRelErr(floats(out['hookA']), get(ref, `sum:${post0}`))).toBeLessThan(1e-5);
    expect(maxRelErr(floats(out['hookB']), get(ref, `sum:${post0}`))).toBeLessThan(1e-5);
    expect(maxRelErr(floats(out['hookC']), get(ref, '/model/layers.1/mlp/down_proj/MatMul/output_0'))).toBeLessThan(1e-5);
    expect(maxRelErr(floats(out['logits']), get(ref, 'logits'))).toBeLessThan(1e-5);
  });

  test('external-data initializer keeps its reference byte for byte and still loads', async () => {
    const ext = genaiSpec({ externalEmbedding: true });
    const { model: m, external } = encodeLocal(ext);
    const before = indexOnnxModel(m).graph.initializers.find((t) => t.name === 'model.embed_tokens.weight')!;
    expect(before.external).toBe(true);
    const r = tapAndSteer(m, { layer: 0, site: 'resid_pre' });
    const after = indexOnnxModel(r.model).graph.initializers.find((t) => t.name === 'model.embed_tokens.weight')!;
    expect(after.external).toBe(true);
    // The TensorProto with its external_data entries (location, offset, length) is copied verbatim.
    expect(r.model.subarray(after.field.start, after.field.end)).toEqual(m.subarray(before.field.start, before.field.end));
    expect(new TextDecoder().decode(m.subarray(before.field.start, before.field.end))).toContain('model.onnx_data');
    expectSurgical(m, r);
    const t = '/model/embed_tokens/Gather/output_0';
    await checkNumerics({ spec: ext, original: m, tapped: r, steerAt: t, hookRef: t, tol: 1e-5, external });
  });
});

describe('float16 graph (Casts, no value_info)', () => {
  const spec = optimumSpec({ fp16: true });
  const model = encodeWithBench(spec);

  test('element type is inferred as float16 at every site', () => {
    for (const site of SITES) {
      const r = tapAndSteer(model, { layer: 1, site });
      expect(r.hook.elemType, site).toBe(FLOAT16);
      expect(r.steer.elemType).toBe(FLOAT16);
      expect(r.hook.dIn).toBe(D);
    }
    // Layer 0's input is the embedding Gather's output (above the Cast to float16): float32.
    expect(tapAndSteer(model, { layer: 0, site: 'resid_pre' }).hook).toMatchObject({ tensor: '/model/embed_tokens/Gather_output_0', elemType: FLOAT });
    expect(tapAndSteer(model, { layer: 0, site: 'resid_post' }).hook).toMatchObject({ tensor: '/model/layers.0/Add_1_output_0', elemType: FLOAT16 });
  });

  for (const site of SITES) {
    test(`ORT wasm: float16 ${site} of layer 1`, async () => {
      const r = tapAndSteer(model, { layer: 1, site });
      const t = r.hook.tensor;
      // f64 reference vs float16 kernels: tolerance of a few f16 ulps of the accumulated values.
      await checkNumerics({ spec, original: model, tapped: r, steerAt: t, hookRef: t, tol: 2e-2 });
      const plain = await runOrt(encodeWithBench(exposed(spec, t, FLOAT16)), { input_ids: idsTensor() });
      const zero = await runOrt(r.model, { input_ids: idsTensor(), loupe_steer: steerTensor(undefined, FLOAT16) });
      expect(zero['loupe_hook']?.type).toBe('float16');
      expect(rawBytes(zero['loupe_hook'])).toEqual(rawBytes(plain[t]));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Protobuf wire format and hostile files.

const reader = (...bytes: number[]): ProtoReader => new ProtoReader(Uint8Array.from(bytes));

describe('protobuf reader and writer', () => {
  test('varints: known encodings, 64-bit values as safe numbers, two-complement negatives', () => {
    expect(reader(0x96, 0x01).uint()).toBe(150);
    expect(reader(0x00).uint()).toBe(0);
    // 2^53 - 1 is the largest exact double: 7 bytes of 0xff then 0x0f.
    expect(reader(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f).uint()).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => reader(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10).uint()).toThrow(/not a safe integer/);
    const minusOne = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    expect(reader(...minusOne).int64()).toBe(-1);
    expect(() => reader(...minusOne).uint()).toThrow(OnnxGraphError);
    expect(() => reader(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02).uint()).toThrow(/exceeds 64 bits/);
    expect(() => reader(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00).uint()).toThrow(/longer than 10 bytes/);
    expect(() => reader(0x80, 0x80).uint()).toThrow(/runs past the end/);
    // Non-minimal encodings are valid protobuf.
    expect(reader(0x81, 0x80, 0x80, 0x00).uint()).toBe(1);
  });

  test('varint round trip through the writer (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeNat(), fc.maxSafeInteger(), fc.integer({ min: -1000, max: 1000 })), fc.integer({ min: 1, max: 10 }), (v, minBytes) => {
        const buf = new Uint8Array(10);
        const end = writeVarint(buf, 0, v, minBytes);
        const r = new ProtoReader(buf, 0, end);
        expect(v >= 0 ? r.uint() : r.int64()).toBe(v);
        expect(r.done()).toBe(true);
        expect(end).toBe(v < 0 ? 10 : Math.max(minBytes, varintSize(v)));
      }),
    );
  });

  test('fixed32/fixed64, length-delimited views, unknown fields of every wire type skipped', () => {
    const w = new ProtoWriter()
      .uintField(100, 5)
      .tag(101, 1)
      .raw(Uint8Array.of(1, 0, 0, 0, 2, 0, 0, 0))
      .tag(102, 5)
      .raw(Uint8Array.of(0x78, 0x56, 0x34, 0x12))
      .bytesField(103, Uint8Array.of(9, 9, 9))
      .stringField(1, 'x');
    const bytes = w.finish().slice();
    const r = new ProtoReader(bytes);
    const fields = [...r.fields()];
    expect(fields.map((f) => [f.field, f.wire])).toEqual([[100, 0], [101, 1], [102, 5], [103, 2], [1, 2]]);
    const f64 = new ProtoReader(bytes, fields[1]?.valueStart, fields[1]?.end);
    expect(f64.fixed64()).toBe(2 * 2 ** 32 + 1);
    expect(new ProtoReader(bytes, fields[2]?.valueStart, fields[2]?.end).fixed32()).toBe(0x12345678);
    const view = r.bytesOf(fields[3]!);
    expect(view.buffer).toBe(bytes.buffer);
    expect([...view]).toEqual([9, 9, 9]);
    expect(r.stringOf(fields[4]!)).toBe('x');
    expect(() => new ProtoReader(bytes, 0, 3).fixed32()).toThrow(OnnxGraphError);
  });

  test('groups, field 0, invalid wire types and bad UTF-8 are named errors', () => {
    expect(() => reader(0x0b).next()).toThrow(/group/);
    expect(() => reader(0x02, 0x00).next()).toThrow(/field number 0/);
    expect(() => reader(0x0e).next()).toThrow(/invalid wire type 6/);
    const bad = reader(0x0a, 0x02, 0xc3, 0x28);
    expect(() => bad.stringOf(bad.next())).toThrow(/not valid UTF-8/);
  });
});

describe('hostile ONNX files', () => {
  const model = encodeWithBench(optimumSpec());
  const g = indexOnnxModel(model).graph.field;

  test('every truncation fails with OnnxGraphError; inside the graph already the index throws', () => {
    for (let cut = 0; cut < model.length; cut++) {
      const short = model.subarray(0, cut);
      let error: unknown;
      try {
        tapAndSteer(short, { layer: 0 });
      } catch (e) {
        error = e;
      }
      expect(error, `cut at ${cut}`).toBeInstanceOf(OnnxGraphError);
      if (cut > g.start && cut < g.end) expect(() => indexOnnxModel(short), `cut at ${cut}`).toThrow(OnnxGraphError);
    }
    expect(() => indexOnnxModel(model.subarray(0, g.end - 1))).toThrow(/runs past the end/);
  });

  test('bad varint, length past the end, no graph, two graphs', () => {
    const withGraphLength = (prefix: number[]): Uint8Array => Uint8Array.from([...model.subarray(0, g.start), 0x3a, ...prefix, ...model.subarray(g.valueStart)]);
    expect(() => indexOnnxModel(withGraphLength([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(OnnxGraphError);
    expect(() => indexOnnxModel(withGraphLength([0xff, 0xff, 0xff, 0x7f]))).toThrow(/length \d+ runs past the end of the message/);
    expect(() => indexOnnxModel(Uint8Array.of(0x08, 0x08))).toThrow(/has no graph/);
    expect(() => indexOnnxModel(new TextEncoder().encode('<html>not a model</html>'))).toThrow(OnnxGraphError);
    const twice = new Uint8Array(model.length + (g.end - g.start));
    twice.set(model);
    twice.set(model.subarray(g.start, g.end), model.length);
    expect(() => indexOnnxModel(twice)).toThrow(/two `graph` fields/);
  });

  test('a nested length that overruns its parent message is caught (not read from the sibling)', () => {
    // Node 0's length grown by one: it now swallows the first byte of node 1 inside the graph.
    const idx = indexOnnxModel(model);
    const n0 = idx.graph.nodes[0]!.field;
    const bytes = model.slice();
    const lenAt = n0.start + 1;
    expect(n0.valueStart - lenAt).toBe(1); // a one-byte length in this small model
    bytes[lenAt] = (bytes[lenAt] ?? 0) + 1;
    expect(() => indexOnnxModel(bytes)).toThrow(OnnxGraphError);
  });

  test('random corruption: only OnnxGraphError or a valid edit (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: model.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), (flips) => {
        const bytes = model.slice();
        for (const [at, value] of flips) bytes[at] = value;
        try {
          const r = tapAndSteer(bytes, { layer: 1, site: 'mlp_out' });
          expect(() => indexOnnxModel(r.model)).not.toThrow();
        } catch (e) {
          expect(e).toBeInstanceOf(OnnxGraphError);
        }
      }),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The real tiny Qwen2 exported by torch.onnx (tools/tiny_model/export_onnx.py): single-file and
// external-data folders, against onnx/sites.json and PyTorch's golden.json.

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const QWEN_SINGLE = 'tiny-qwen2-onnx';
const QWEN_EXTERNAL = 'tiny-qwen2-onnx-external';

interface QwenGolden {
  input_ids: number[];
  last_logits: number[];
  hidden_states: { values: number[][][] };
  steering: { layer: number; site: string; from_position: number; strength: number; vector: number[]; last_logits: number[] };
}
interface QwenSites {
  layers: { layer: number; resid_post: { tensor: string }; resid_pre: { tensor: string }; mlp_out: { tensor: string } }[];
}
interface QwenConfig {
  num_hidden_layers: number;
  num_key_value_heads: number;
  head_dim: number;
  hidden_size: number;
}

const qwenGolden = JSON.parse(readFileSync(`${FIXTURES}${QWEN_SINGLE}/golden.json`, 'utf8')) as QwenGolden;
const qwenSites = JSON.parse(readFileSync(`${FIXTURES}${QWEN_SINGLE}/onnx/sites.json`, 'utf8')) as QwenSites;
const qwenConfig = JSON.parse(readFileSync(`${FIXTURES}${QWEN_SINGLE}/config.json`, 'utf8')) as QwenConfig;

function qwenModel(folder: string): { model: Uint8Array; external?: Map<string, Uint8Array> } {
  const model = new Uint8Array(readFileSync(`${FIXTURES}${folder}/onnx/model.onnx`));
  if (folder !== QWEN_EXTERNAL) return { model };
  return { model, external: new Map([['model.onnx_data', new Uint8Array(readFileSync(`${FIXTURES}${folder}/onnx/model.onnx_data`))]]) };
}

/** Feeds for batch 1: `ids` at positions past..past+len-1, all keys visible, cache from `prev`. */
function qwenFeeds(ids: readonly number[], past: number, prev?: Outputs): Record<string, ort.Tensor> {
  const i64 = (v: readonly number[]): ort.Tensor => new ort.Tensor('int64', BigInt64Array.from(v, (x) => BigInt(x)), [1, v.length]);
  const f: Record<string, ort.Tensor> = {
    input_ids: i64(ids),
    attention_mask: i64(Array<number>(past + ids.length).fill(1)),
    position_ids: i64(Array.from(ids, (_, i) => past + i)),
  };
  for (let l = 0; l < qwenConfig.num_hidden_layers; l++) {
    for (const kv of ['key', 'value']) {
      f[`past_key_values.${l}.${kv}`] =
        prev?.[`present.${l}.${kv}`] ?? new ort.Tensor('float32', new Float32Array(0), [1, qwenConfig.num_key_value_heads, 0, qwenConfig.head_dim]);
    }
  }
  return f;
}

function qwenSteer(v?: readonly number[], scale = 1): ort.Tensor {
  const d = qwenConfig.hidden_size;
  return new ort.Tensor('float32', v === undefined ? new Float32Array(d) : Float32Array.from(v, (x) => x * scale), [1, 1, d]);
}

function lastRow(t: ort.Tensor | undefined): Float64Array {
  const all = floats(t);
  const w = t?.dims[2] ?? 0;
  return all.subarray(all.length - w);
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? NaN) - (b[i] ?? NaN)));
  return Number.isNaN(m) ? Infinity : m;
}

describe.each([QWEN_SINGLE, QWEN_EXTERNAL])('tiny Qwen2 torch export: %s', (folder) => {
  const { model, external } = qwenModel(folder);
  const L = qwenConfig.num_hidden_layers;
  const ids = qwenGolden.input_ids;

  test('findSite agrees with onnx/sites.json for every layer and site', () => {
    const index = indexOnnxModel(model);
    expect(qwenSites.layers.length).toBe(L);
    for (const entry of qwenSites.layers) {
      for (const site of SITES) {
        expect(findSite(index, { layer: entry.layer, site }), `${site} ${entry.layer}`).toMatchObject({
          kind: 'tensor',
          family: 'optimum',
          tensor: entry[site].tensor,
        });
      }
    }
    expect(() => findSite(index, { layer: L })).toThrow(/out of range.*\(4 blocks\)/);
  });

  test('surgical: initializers byte-identical (external ones keep their references)', () => {
    const r = tapAndSteer(model, { layer: 1 });
    expectSurgical(model, r);
    const inits = indexOnnxModel(r.model).graph.initializers;
    expect(inits.length).toBe(53);
    expect(inits.every((t) => t.external)).toBe(folder === QWEN_EXTERNAL);
    expect(r.hook).toMatchObject({ elemType: FLOAT, dIn: qwenConfig.hidden_size, dims: ['batch_size', 'sequence_length', qwenConfig.hidden_size] });
    const buf = new Uint8Array(model.length + TAP_SPARE_BYTES);
    buf.set(model);
    expect(firstDiff(tapAndSteerInPlace(buf.subarray(0, model.length), buf.length, { layer: 1 }).model, r.model)).toBe(-1);
  });

  test('ORT wasm: every layer tapped at once; hooks equal PyTorch hidden states, zero steer changes nothing', async () => {
    let tapped = model;
    for (let l = 0; l < L; l++) tapped = tapAndSteer(tapped, { layer: l, hookName: `hook.${l}`, steerName: `steer.${l}` }).model;
    const steers = Object.fromEntries(Array.from({ length: L }, (_, l) => [`steer.${l}`, qwenSteer()]));
    const base = await runOrt(model, qwenFeeds(ids, 0), external);
    const out = await runOrt(tapped, { ...qwenFeeds(ids, 0), ...steers }, external);
    expect(rawBytes(out['logits'])).toEqual(rawBytes(base['logits']));
    expect(maxAbs(lastRow(out['logits']), qwenGolden.last_logits)).toBeLessThan(1e-4);
    for (let l = 0; l < L; l++) {
      const hook = out[`hook.${l}`];
      expect(hook?.dims).toEqual([1, ids.length, qwenConfig.hidden_size]);
      expect(maxAbs(floats(hook), qwenGolden.hidden_states.values[l]?.flat() ?? []), `layer ${l}`).toBeLessThan(1e-4);
    }
  });

  test("ORT wasm: golden's steering (positions >= 5) reproduced through the KV cache", async () => {
    const s = qwenGolden.steering;
    expect([s.site, s.layer]).toEqual(['resid_post', 1]);
    const r = tapAndSteer(model, { layer: s.layer, site: 'resid_post' });
    // Causal model: positions < from_position never see later ones, so running them unsteered,
    // then the rest on their cache with the steer fed, is golden's "steer at positions >= 5".
    const head = ids.slice(0, s.from_position);
    const tail = ids.slice(s.from_position);
    const first = await runOrt(r.model, { ...qwenFeeds(head, 0), loupe_steer: qwenSteer() }, external);
    const steered = await runOrt(r.model, { ...qwenFeeds(tail, head.length, first), loupe_steer: qwenSteer(s.vector, s.strength) }, external);
    const plain = await runOrt(r.model, { ...qwenFeeds(tail, head.length, first), loupe_steer: qwenSteer() }, external);
    expect(maxAbs(lastRow(steered['logits']), s.last_logits)).toBeLessThan(1e-4);
    expect(maxAbs(lastRow(plain['logits']), qwenGolden.last_logits)).toBeLessThan(1e-4);
    expect(maxAbs(lastRow(steered['logits']), lastRow(plain['logits']))).toBeGreaterThan(1);
    // The hook at the steered site shows the steered stream: golden hidden state + 4 v.
    const want = (qwenGolden.hidden_states.values[s.layer] ?? []).slice(s.from_position).flatMap((row) => row.map((x, j) => x + s.strength * (s.vector[j] ?? NaN)));
    expect(maxAbs(floats(steered['loupe_hook']), want)).toBeLessThan(1e-4);
  });

  test('ORT wasm: steering mlp_out(l) moves the logits exactly like steering resid_post(l)', async () => {
    // mlp_out's only reader is the second residual Add, so x + (m + v) and (x + m) + v agree.
    const v = qwenGolden.steering.vector;
    for (const layer of [0, L - 1]) {
      const mlp = tapAndSteer(model, { layer, site: 'mlp_out' });
      const post = tapAndSteer(model, { layer, site: 'resid_post' });
      const a = await runOrt(mlp.model, { ...qwenFeeds(ids, 0), loupe_steer: qwenSteer(v, 4) }, external);
      const b = await runOrt(post.model, { ...qwenFeeds(ids, 0), loupe_steer: qwenSteer(v, 4) }, external);
      expect(maxAbs(floats(a['logits']), floats(b['logits']))).toBeLessThan(1e-4);
      expect(maxAbs(floats(a['logits']), floats(await runOrt(model, qwenFeeds(ids, 0), external).then((o) => o['logits'])))).toBeGreaterThan(0.1);
    }
  });
});
