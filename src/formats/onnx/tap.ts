/**
 * Taps and steers one residual-stream site of an exported LLM by editing its ONNX graph, since
 * transformers.js / onnxruntime-web expose no hidden states or hooks.
 *
 * Edit rule, plain tensor X produced by node P (Optimum resid_*, mlp_out; GenAI mlp_out, layer-0
 * resid_pre):
 *   P's output X is renamed `X/loupe_pre`; a new `Add(X/loupe_pre, loupe_steer) → X` follows P,
 *   so every existing consumer of X (and a graph output named X) reads the steered value with no
 *   consumer edited; `Identity(X) → loupe_hook` exposes it.
 * GenAI fused Skip*LayerNormalization N (resid_post, resid_pre of layer > 0): a new
 *   `Add(skip, loupe_steer) → skip/loupe_steered` precedes N and N reads it as input 1, so the fused
 *   sum, the normed output and output 3 are all steered; output 3 (named
 *   `<hook>/input_skip_bias_sum` when the export left it out) is exposed as `Identity → loupe_hook`.
 * Both add graph input `loupe_steer` [1, 1, dIn] (broadcast over batch and positions; feed zeros
 * when not steering — the graph then computes x + 0, which is x bit for bit) and graph output
 * `loupe_hook` [batch, seq, dIn] of the site's element type. The batch/seq dims reuse the
 * tensor's declared dims, else the dims of the `input_ids` input (transformers.js needs the
 * batch axis named `batch_size`), else `batch_size` / `sequence_length`. New nodes are placed
 * next to the node they follow or precede, so the node list stays topologically sorted.
 * `loupe_steer` is a required input: an initializer listed as a graph input (an optional input
 * with a zero default) would be nicer, but onnxruntime-web 1.30 leaves such inputs out of
 * `inputNames` and rejects feeding them ("invalid input"). Callers such as transformers.js, which
 * feeds exactly `session.inputNames`, must therefore supply it.
 *
 * Surgical: only the edited node and the new entries are encoded; every other byte of the model,
 * initializers included (inline or with data_location = EXTERNAL, whose references are untouched),
 * is copied once as is; then the GraphProto's length prefix is rewritten (a ModelProto is the
 * top-level message and has none). `tapAndSteerInPlace` does the same inside the caller's buffer.
 */

import { OnnxGraphError } from '../../errors.js';
import { GraphView } from './graph.js';
import { inferElemType, inferHiddenSize } from './infer.js';
import { GRAPH_FIELD, indexOnnxModel, NODE_FIELD, type OnnxDimInfo, type OnnxNodeEntry } from './model.js';
import { ProtoReader, ProtoWriter, varintSize, WireType, writeVarint } from './protobuf.js';
import { findSite, type OnnxSite, type SiteLocation } from './sites.js';
import { applySplices, applySplicesInPlace, spliceDelta, type Splice } from './splice.js';

export { findSite, exportFamily } from './sites.js';
export type { OnnxSite, OnnxExportFamily, SiteLocation, SiteQuery, SkipSumSite, TensorSite } from './sites.js';

export interface TapOptions {
  readonly layer: number;
  /** Default 'resid_post'. */
  readonly site?: OnnxSite;
  /** Graph output exposing the site. Default 'loupe_hook'. */
  readonly hookName?: string;
  /** Graph input added to the site. Default 'loupe_steer'. */
  readonly steerName?: string;
  /** Hidden size when the graph does not tell (see infer.ts); checked against the graph when it does. */
  readonly dIn?: number;
  /** TensorProto.DataType (1 = float32, 10 = float16) when the graph does not tell; checked against the graph when it does. */
  readonly elemType?: number;
}

export interface TapResult {
  readonly model: Uint8Array;
  readonly hook: {
    readonly name: string;
    readonly elemType: number;
    readonly dIn: number;
    /** The tapped tensor in the edited graph. */
    readonly tensor: string;
    readonly dims: readonly (number | string)[];
  };
  readonly steer: { readonly name: string; readonly elemType: number; readonly dims: readonly [1, 1, number] };
  readonly site: SiteLocation;
  /** Bytes added to the model. */
  readonly delta: number;
}

/** A planned edit: the splices plus what they declare. `model` is filled in by the caller. */
type TapPlan = Omit<TapResult, 'model'> & { readonly splices: readonly Splice[] };

/**
 * Bytes an in-place edit needs after the model beyond any realistic tap: new nodes, a graph input
 * and output and a wider length prefix come to ~200 bytes plus three copies of the site's tensor
 * name. Allocate the model's buffer with this much spare room when it is read from the network.
 */
export const TAP_SPARE_BYTES = 4096;

/** Edits a copy: returns a new model of `bytes.length + delta` bytes; `bytes` is not modified. */
export function tapAndSteer(bytes: Uint8Array, options: TapOptions): TapResult {
  const plan = planTap(bytes, options);
  return { ...plan, model: applySplices(bytes, plan.splices) };
}

/**
 * Edits in place, so a 1.4 GB model is never held twice. `model` is the model's bytes; its
 * ArrayBuffer must have at least `capacity` bytes from `model.byteOffset` and `capacity` must be
 * at least `model.length + delta` (reserve `TAP_SPARE_BYTES`; a resizable ArrayBuffer is grown
 * as needed up to its maxByteLength). Everything after the first edited node moves right with
 * copyWithin. The result's `model` is a view of the same memory, `model.length + delta` long.
 * On error nothing has been written.
 */
export function tapAndSteerInPlace(model: Uint8Array, capacity: number, options: TapOptions): TapResult {
  const plan = planTap(model, options);
  const needed = model.length + plan.delta;
  if (!Number.isSafeInteger(capacity) || capacity < needed) {
    throw new OnnxGraphError(
      `in-place ONNX edit needs ${needed} bytes (model ${model.length} + ${plan.delta}), capacity is ${capacity}`,
    );
  }
  const buffer = model.buffer;
  const end = model.byteOffset + needed;
  if (buffer.byteLength < end) growBuffer(buffer, end);
  const view = new Uint8Array(buffer, model.byteOffset, needed);
  applySplicesInPlace(view, model.length, plan.splices);
  return { ...plan, model: view };
}

function growBuffer(buffer: ArrayBufferLike, byteLength: number): void {
  // Resizable ArrayBuffer / growable SharedArrayBuffer (ES2024), feature-detected: lib ES2023 lacks the types.
  const b = buffer as { resizable?: boolean; growable?: boolean; maxByteLength?: number; resize?: (n: number) => void; grow?: (n: number) => void };
  const max = b.maxByteLength ?? buffer.byteLength;
  if (byteLength <= max) {
    if (b.resizable === true && b.resize !== undefined) return b.resize(byteLength);
    if (b.growable === true && b.grow !== undefined) return b.grow(byteLength);
  }
  throw new OnnxGraphError(
    `in-place ONNX edit needs ${byteLength} bytes in the model's ArrayBuffer, which has ${buffer.byteLength}; ` +
      `allocate the model with TAP_SPARE_BYTES to spare (or a resizable ArrayBuffer)`,
  );
}

// ---------------------------------------------------------------------------------------------

function planTap(bytes: Uint8Array, options: TapOptions): TapPlan {
  const hookName = options.hookName ?? 'loupe_hook';
  const steerName = options.steerName ?? 'loupe_steer';
  if (hookName === '' || steerName === '' || hookName === steerName) {
    throw new OnnxGraphError(`tap: hook and steer names must be distinct and non-empty ('${hookName}', '${steerName}')`);
  }
  const index = indexOnnxModel(bytes);
  if (!index.opsetImports.some((o) => o.domain === '' || o.domain === 'ai.onnx')) {
    throw new OnnxGraphError('ONNX model imports no default-domain opset; the Add and Identity a tap inserts need one');
  }
  const view = new GraphView(index);
  const site = findSite(view, { layer: options.layer, site: options.site ?? 'resid_post' });

  const typeProbe = site.kind === 'tensor' ? site.tensor : (site.tensor ?? site.node.inputs[1] ?? '');
  const elemType = resolveElemType(view, typeProbe, options.elemType);
  const inferred = inferHiddenSize(view, site);
  if (options.dIn !== undefined && inferred !== undefined && options.dIn !== inferred) {
    throw new OnnxGraphError(`tap: dIn ${options.dIn} was given but the graph says the site is ${inferred} wide`);
  }
  const dIn = options.dIn ?? inferred;
  if (dIn === undefined || !Number.isSafeInteger(dIn) || dIn <= 0) {
    throw new OnnxGraphError(`tap: cannot infer the hidden size at layer ${site.layer} ${site.site}; pass { dIn }`);
  }

  const taken = (name: string): boolean => view.names.has(name);
  const fresh = (name: string): string => {
    if (taken(name)) {
      throw new OnnxGraphError(`tap: the graph already has a tensor or node named '${name}' (already tapped?); choose other names`);
    }
    return name;
  };
  fresh(hookName);
  fresh(steerName);
  const addName = fresh(`${steerName}/Add`);
  const idName = fresh(`${hookName}/Identity`);

  const nodeSplices: Splice[] = [];
  let tensor: string;
  if (site.kind === 'tensor') {
    const x = site.tensor;
    const pre = fresh(`${x}/loupe_pre`);
    const edited = rewriteNode(bytes, site.producer, { outputs: new Map([[site.slot, pre]]) });
    const add = encodeNode({ name: addName, opType: 'Add', inputs: [pre, steerName], outputs: [x] });
    const id = encodeNode({ name: idName, opType: 'Identity', inputs: [x], outputs: [hookName] });
    nodeSplices.push({ start: site.producer.field.start, end: site.producer.field.end, bytes: concat([edited, add, id]) });
    tensor = x;
  } else {
    const skip = site.node.inputs[1] ?? '';
    const steered = fresh(`${skip}/loupe_steered`);
    tensor = site.tensor ?? fresh(`${hookName}/input_skip_bias_sum`);
    const outputs = new Map<number, string>(site.tensor === undefined ? [[3, tensor]] : []);
    const edited = rewriteNode(bytes, site.node, { inputs: new Map([[1, steered]]), outputs });
    const add = encodeNode({ name: addName, opType: 'Add', inputs: [skip, steerName], outputs: [steered] });
    const id = encodeNode({ name: idName, opType: 'Identity', inputs: [tensor], outputs: [hookName] });
    nodeSplices.push({ start: site.node.field.start, end: site.node.field.end, bytes: concat([add, edited, id]) });
  }

  const [batch, seq] = hookLeadingDims(view, tensor);
  const hookDims: (number | string)[] = [batch, seq, dIn];
  const steerDims = [1, 1, dIn] as const;
  const appended = concat([
    encodeValueInfo(GRAPH_FIELD.INPUT, steerName, elemType, steerDims),
    encodeValueInfo(GRAPH_FIELD.OUTPUT, hookName, elemType, hookDims),
  ]);
  const g = index.graph.field;
  const inner: Splice[] = [...nodeSplices, { start: g.end, end: g.end, bytes: appended }];
  const payload = g.end - g.valueStart + spliceDelta(bytes.length, inner);
  const splices = [{ start: g.start, end: g.valueStart, bytes: graphHeader(payload, g.valueStart - g.start) }, ...inner];
  return {
    hook: { name: hookName, elemType, dIn, tensor, dims: hookDims },
    steer: { name: steerName, elemType, dims: steerDims },
    site,
    delta: spliceDelta(bytes.length, splices),
    splices,
  };
}

/** The graph's element type for the site; an explicit one must agree, and is used when the graph does not tell. */
function resolveElemType(view: GraphView, tensor: string, given: number | undefined): number {
  let inferred: number | undefined;
  try {
    inferred = inferElemType(view, tensor);
  } catch (e) {
    if (given === undefined || !(e instanceof OnnxGraphError)) throw e;
  }
  if (given !== undefined && inferred !== undefined && given !== inferred) {
    throw new OnnxGraphError(`tap: elemType ${given} was given but the graph says '${tensor}' has element type ${inferred}`);
  }
  const t = given ?? inferred;
  if (t === undefined) throw new OnnxGraphError(`tap: no element type for '${tensor}'`);
  return t;
}

/** ModelProto.graph = 7, length-delimited: a one-byte tag. */
const GRAPH_FIELD_TAG = 7 * 8 + WireType.LEN;

/**
 * The graph field's tag and new length prefix, padded to at least `oldWidth` bytes so that no
 * splice shrinks its range (the in-place edit moves bytes right only). Exporters write minimal
 * varints, so the padding only ever triggers on odd files.
 */
function graphHeader(payload: number, oldWidth: number): Uint8Array {
  const width = Math.max(1 + varintSize(payload), oldWidth);
  if (width > 11) throw new OnnxGraphError(`ONNX model: the graph field's header is ${oldWidth} bytes, more than a tag and a varint`);
  const header = new Uint8Array(width);
  writeVarint(header, writeVarint(header, 0, GRAPH_FIELD_TAG), payload, width - 1);
  return header;
}

function hookLeadingDims(view: GraphView, tensor: string): [number | string, number | string] {
  const named = (d: OnnxDimInfo, fallback: string): number | string => (d === undefined ? fallback : d);
  const own = view.declaredInfo(tensor)?.shape;
  if (own?.length === 3 && own[0] !== undefined && own[1] !== undefined) return [own[0], own[1]];
  const ids = view.graph.inputs.find((v) => v.name === 'input_ids') ?? view.graph.inputs.find((v) => v.shape?.length === 2);
  const s = ids?.shape;
  if (s?.length === 2) return [named(s[0], 'batch_size'), named(s[1], 'sequence_length')];
  return ['batch_size', 'sequence_length'];
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface NewNode {
  readonly name: string;
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
}

/** A GraphProto.node field (tag + length + NodeProto) in the default domain. */
function encodeNode(n: NewNode): Uint8Array {
  const w = new ProtoWriter();
  w.messageField(GRAPH_FIELD.NODE, (m) => {
    for (const i of n.inputs) m.stringField(NODE_FIELD.INPUT, i);
    for (const o of n.outputs) m.stringField(NODE_FIELD.OUTPUT, o);
    m.stringField(NODE_FIELD.NAME, n.name).stringField(NODE_FIELD.OP_TYPE, n.opType);
  });
  return w.finish().slice();
}

/** A GraphProto input/output field holding a tensor ValueInfoProto. */
function encodeValueInfo(field: number, name: string, elemType: number, dims: readonly (number | string)[]): Uint8Array {
  const w = new ProtoWriter();
  w.messageField(field, (vi) => {
    vi.stringField(1, name).messageField(2, (type) => {
      type.messageField(1, (tensor) => {
        tensor.uintField(1, elemType).messageField(2, (shape) => {
          for (const d of dims) {
            shape.messageField(1, (dim) => (typeof d === 'number' ? dim.uintField(1, d) : dim.stringField(2, d)));
          }
        });
      });
    });
  });
  return w.finish().slice();
}

/**
 * Re-encodes one node with some input/output slots renamed, copying every other field (attributes,
 * doc strings, unknown fields) byte for byte. A renamed output slot beyond the node's last output
 * is appended after empty ('' = absent) optional outputs.
 */
function rewriteNode(
  bytes: Uint8Array,
  node: OnnxNodeEntry,
  change: { inputs?: ReadonlyMap<number, string>; outputs?: ReadonlyMap<number, string> },
): Uint8Array {
  const r = ProtoReader.of(bytes, node.field, 'NodeProto');
  const body = new ProtoWriter();
  let inSlot = 0;
  let outSlot = 0;
  for (const f of r.fields()) {
    const isIn = f.field === NODE_FIELD.INPUT && f.wire === WireType.LEN;
    const isOut = f.field === NODE_FIELD.OUTPUT && f.wire === WireType.LEN;
    const renamed = isIn ? change.inputs?.get(inSlot) : isOut ? change.outputs?.get(outSlot) : undefined;
    if (renamed !== undefined) body.stringField(f.field, renamed);
    else body.raw(bytes.subarray(f.start, f.end));
    if (isIn) inSlot++;
    if (isOut) outSlot++;
  }
  for (const [slot] of change.inputs ?? []) {
    if (slot >= inSlot) throw new OnnxGraphError(`internal: node '${node.name}' has no input ${slot}`);
  }
  const extra = [...(change.outputs ?? [])].filter(([slot]) => slot >= outSlot).sort((a, b) => a[0] - b[0]);
  for (const [slot, name] of extra) {
    for (; outSlot < slot; outSlot++) body.stringField(NODE_FIELD.OUTPUT, '');
    body.stringField(NODE_FIELD.OUTPUT, name);
    outSlot++;
  }
  const w = new ProtoWriter();
  w.bytesField(GRAPH_FIELD.NODE, body.finish());
  return w.finish().slice();
}
