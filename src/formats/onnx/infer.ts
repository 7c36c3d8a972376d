/**
 * Element type and hidden size of a tapped tensor, for the graph input/output the tap declares.
 * Exports often leave intermediate tensors without value_info, and q4f16 exports keep hidden
 * states in float16, so "assume float32" would declare a wrong type that ORT rejects at load.
 *
 * Element type, first rule that gives a floating type wins:
 *   1. the tensor's value_info / graph input / graph output entry;
 *   2. the producer is a Cast: its `to` attribute;
 *   3. propagation through ops whose listed inputs and outputs share one type T (Add, Mul,
 *      MatMul, Skip*LayerNormalization, MatMulNBits' activations and scales, Reshape's data ...):
 *      breadth-first from the tensor, the first reached tensor with a declared type or an
 *      initializer's data_type (e.g. a MatMul weight, a norm's gamma).
 * Hidden size (dIn), first rule that gives a number wins:
 *   1. the tensor's declared shape, last dim;
 *   2. adjacent weights: a fused norm site's gamma length; the producer's output width
 *      (MatMul weight dims[1], MatMulNBits N, Gather table dims[1]), looking through
 *      Identity/Cast and, for an Add/Sub producer (a residual Add), at its operands' producers
 *      two levels deep; a consumer's input width (MatMul weight dims[0], MatMulNBits K, a norm's
 *      1-D gamma length);
 *   3. the declared last dim of a residual Add's operands (same shape as the stream);
 *   4. the embedding table width (a Gather of a 2-D initializer by `input_ids`, else by any graph
 *      input when all such Gathers agree): every residual site of a decoder that does not project
 *      its embeddings has that width.
 * Anything else throws; the caller can pass `elemType` / `dIn` explicitly.
 */

import { OnnxGraphError } from '../../errors.js';
import type { GraphView } from './graph.js';
import { FLOAT_ELEM_TYPES, nodeIntAttribute, type OnnxNodeEntry } from './model.js';
import type { SiteLocation } from './sites.js';

type Slots = readonly number[] | 'all';
/** Op → (input slots, output slots) that share the element type T. */
const SAME_TYPE: ReadonlyMap<string, readonly [Slots, Slots]> = new Map<string, readonly [Slots, Slots]>([
  ['Add', ['all', 'all']],
  ['Sub', ['all', 'all']],
  ['Mul', ['all', 'all']],
  ['Div', ['all', 'all']],
  ['MatMul', ['all', 'all']],
  ['Gemm', ['all', 'all']],
  ['Identity', ['all', 'all']],
  ['Concat', ['all', 'all']],
  ['Neg', ['all', 'all']],
  ['Sqrt', ['all', 'all']],
  ['Softmax', ['all', 'all']],
  ['Sigmoid', ['all', 'all']],
  ['Tanh', ['all', 'all']],
  ['Relu', ['all', 'all']],
  ['Pow', [[0], [0]]],
  ['ReduceMean', [[0], [0]]],
  ['Reshape', [[0], [0]]],
  ['Transpose', [[0], [0]]],
  ['Squeeze', [[0], [0]]],
  ['Unsqueeze', [[0], [0]]],
  ['Gather', [[0], [0]]],
  ['MatMulNBits', [[0, 2], [0]]],
  ['SkipSimplifiedLayerNormalization', ['all', [0, 3]]],
  ['SkipLayerNormalization', ['all', [0, 3]]],
  ['LayerNormalization', [[0, 1, 2], [0]]],
]);

const GAMMA_SLOT: ReadonlyMap<string, number> = new Map([
  ['SkipSimplifiedLayerNormalization', 2],
  ['SkipLayerNormalization', 2],
  ['SimplifiedLayerNormalization', 1],
  ['LayerNormalization', 1],
  ['RMSNormalization', 1],
]);

function slotList(slots: Slots, n: number): number[] {
  return slots === 'all' ? Array.from({ length: n }, (_, i) => i) : slots.filter((i) => i < n);
}

function knownFloatType(view: GraphView, tensor: string): number | undefined {
  const t = view.declaredInfo(tensor)?.elemType ?? view.initializer(tensor)?.dataType;
  return t !== undefined && FLOAT_ELEM_TYPES.has(t) ? t : undefined;
}

/** The tensors sharing `tensor`'s type through `node`, or [] if `tensor` is not in a T slot. */
function sameTypeNeighbours(node: OnnxNodeEntry, tensor: string): string[] {
  const rule = SAME_TYPE.get(node.opType);
  if (rule === undefined) return [];
  const ins = slotList(rule[0], node.inputs.length).map((i) => node.inputs[i] ?? '');
  const outs = slotList(rule[1], node.outputs.length).map((i) => node.outputs[i] ?? '');
  const group = [...ins, ...outs].filter((t) => t !== '');
  return group.includes(tensor) ? group : [];
}

/** The tapped tensor's element type (see the module comment), starting from `start`. */
export function inferElemType(view: GraphView, start: string): number {
  const bytes = view.index.bytes;
  const seen = new Set<string>([start]);
  let frontier = [start];
  // A few hundred tensors are enough to reach a typed weight; a cap keeps hostile graphs cheap.
  for (let step = 0; frontier.length > 0 && seen.size < 512; step++) {
    const next: string[] = [];
    for (const t of frontier) {
      const known = knownFloatType(view, t);
      if (known !== undefined) return known;
      const p = view.producer(t);
      if (p !== undefined && p.node.opType === 'Cast') {
        const to = nodeIntAttribute(bytes, p.node, 'to');
        if (to !== undefined && FLOAT_ELEM_TYPES.has(to)) return to;
      }
      const around = [...(p === undefined ? [] : [p.node]), ...view.consumers(t)];
      for (const n of around) {
        for (const u of sameTypeNeighbours(n, t)) {
          if (!seen.has(u)) {
            seen.add(u);
            next.push(u);
          }
        }
      }
    }
    frontier = next;
  }
  throw new OnnxGraphError(
    `ONNX graph: cannot infer the element type of '${start}' (no value_info, Cast or typed weight reachable through ` +
      `same-type ops); pass { elemType } (1 = float32, 10 = float16)`,
  );
}

function lastDim(view: GraphView, tensor: string, minRank = 1): number | undefined {
  const shape = view.declaredInfo(tensor)?.shape;
  const d = shape !== undefined && shape.length >= minRank ? shape[shape.length - 1] : undefined;
  return typeof d === 'number' && d > 0 ? d : undefined;
}

function initDims(view: GraphView, tensor: string | undefined): readonly number[] | undefined {
  return tensor === undefined ? undefined : view.initializer(tensor)?.dims;
}

/** Width a node's weights give `tensor` as its output (producer) or input (consumer). */
function widthFromNode(view: GraphView, node: OnnxNodeEntry, tensor: string, asOutput: boolean): number | undefined {
  const bytes = view.index.bytes;
  const w = initDims(view, node.inputs[1]);
  const op = node.opType;
  if (asOutput) {
    if (op === 'MatMul' && w?.length === 2) return w[1];
    if (op === 'MatMulNBits') return nodeIntAttribute(bytes, node, 'N');
    if (op === 'Gather') {
      const table = initDims(view, node.inputs[0]);
      if (table?.length === 2) return table[1];
    }
    return undefined;
  }
  if (node.inputs[0] !== tensor) return undefined;
  if (op === 'MatMul' && w?.length === 2) return w[0];
  if (op === 'MatMulNBits') return nodeIntAttribute(bytes, node, 'K');
  const g = GAMMA_SLOT.get(op);
  const gamma = g === undefined ? undefined : initDims(view, node.inputs[g]);
  return gamma?.length === 1 ? gamma[0] : undefined;
}

function embeddingWidth(view: GraphView): number | undefined {
  const widths = new Map<string, number>();
  for (const n of view.graph.nodes) {
    const ids = n.inputs[1] ?? '';
    const table = initDims(view, n.inputs[0]);
    if (n.opType === 'Gather' && view.isGraphInput(ids) && table?.length === 2 && table[1] !== undefined) widths.set(ids, table[1]);
  }
  // position_ids may gather rotary tables of another width: prefer the token embedding.
  const byIds = widths.get('input_ids');
  if (byIds !== undefined) return byIds;
  const all = new Set(widths.values());
  return all.size === 1 ? [...all][0] : undefined;
}

/** Output width from the node computing `tensor` (through Identity/Cast), or an Add's operands. */
function widthFromProducer(view: GraphView, tensor: string, depth: number): number | undefined {
  const t = view.origin(tensor);
  const p = view.producer(t);
  if (p === undefined) return undefined;
  const w = widthFromNode(view, p.node, t, true);
  if (w !== undefined || depth === 0 || (p.node.opType !== 'Add' && p.node.opType !== 'Sub')) return w;
  for (const operand of p.node.inputs) {
    const v = widthFromProducer(view, operand, depth - 1);
    if (v !== undefined) return v;
  }
  return undefined;
}

/** The tapped site's hidden size (see the module comment). */
export function inferHiddenSize(view: GraphView, loc: SiteLocation): number | undefined {
  if (loc.kind === 'skip-sum') {
    const declared = loc.tensor === undefined ? undefined : lastDim(view, loc.tensor);
    return declared ?? widthFromNode(view, loc.node, loc.node.inputs[0] ?? '', false) ?? embeddingWidth(view);
  }
  const x = loc.tensor;
  const declared = lastDim(view, x);
  if (declared !== undefined) return declared;
  const p = view.producer(x);
  const fromProducer = widthFromProducer(view, x, 2);
  if (fromProducer !== undefined) return fromProducer;
  for (const c of view.consumers(x)) {
    const w = widthFromNode(view, c, x, false);
    if (w !== undefined) return w;
  }
  if (p !== undefined && p.node.opType === 'Add') {
    for (const other of p.node.inputs) {
      const d = lastDim(view, other, 2);
      if (d !== undefined) return d;
    }
  }
  return embeddingWidth(view);
}
