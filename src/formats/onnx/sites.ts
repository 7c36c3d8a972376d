/**
 * Finds the tensor that carries a layer's residual stream (or MLP output) in an exported LLM
 * graph. Two export families are recognised; neither rule depends on one exact node name.
 *
 * Optimum / torch.onnx family (no fused norms). Nodes are named after module paths, so block
 * `model.layers[i]` owns scope S = `.../layers.{i}/` and its sub-modules own `S<sub>/...`.
 * A *residual Add* of block i is an `Add` whose name is directly in S (the block's own forward,
 * not a sub-module) with two inputs, exactly one of which ("branch") is computed inside a
 * sub-scope of S (attention or MLP) and the other ("stream") is not. "Computed" looks up through
 * Identity and Cast nodes: torch routes the residual through RMSNorm's float32 `.to()` Cast, so
 * `/model/layers.{i}/Add` reads `input_layernorm/Cast_output_0`, whose value is the block input.
 * A pre-norm block has two residual Adds, chained: the second's stream is the first's output.
 * Then
 *   resid_post(i) = output of the second residual Add (Optimum: `/model/layers.{i}/Add_1`),
 *   resid_pre(i)  = the tensor the first one's stream comes from (above pass-through Casts): the
 *                   embedding output (`Gather`) for i = 0, resid_post(i-1) otherwise,
 *   mlp_out(i)    = branch input of the second one: the MLP's output
 *                   (Optimum: `/model/layers.{i}/mlp/down_proj/MatMul_output_0`).
 *
 * ORT GenAI model-builder family: the residual adds are fused into SkipSimplifiedLayerNormalization
 * (or SkipLayerNormalization; inputs: input, skip, gamma[, bias]; output 3 `input_skip_bias_sum`
 * = input + skip (+ bias), the residual stream). These nodes form one chain: each one's skip
 * (input 1) is the previous one's output 3. Layer i holds its post-attention norm (and, for
 * i > 0, its input norm); the chain node right after layer i's last one — layer i+1's input norm,
 * or the final norm for the last layer — sums layer i's MLP output (input 0) with the stream:
 *   resid_post(i) = output 3 of that next chain node (named by the edit when absent),
 *   resid_pre(i)  = resid_post(i-1) for i > 0; for i = 0 the skip input of the first chain node
 *                   (the embedding output, a plain tensor),
 *   mlp_out(i)    = input 0 of that next chain node (the down_proj output).
 *
 * The family is GenAI when the graph has any Skip*LayerNormalization node, Optimum otherwise.
 *
 * Both rules look through the steering Adds a tap inserts (`Add(t, s)`, `s` a [1, 1, d] graph
 * input), so an already tapped graph can be tapped again.
 */

import { OnnxGraphError } from '../../errors.js';
import { GraphView, layerScopeOf, scopeOf } from './graph.js';
import type { OnnxModelIndex, OnnxNodeEntry } from './model.js';

export type OnnxSite = 'resid_post' | 'resid_pre' | 'mlp_out';
export type OnnxExportFamily = 'optimum' | 'genai';

export interface SiteQuery {
  readonly layer: number;
  /** Default 'resid_post'. */
  readonly site?: OnnxSite;
}

/** A plain tensor produced by one node's output `slot`. */
export interface TensorSite {
  readonly kind: 'tensor';
  readonly family: OnnxExportFamily;
  readonly layer: number;
  readonly site: OnnxSite;
  readonly tensor: string;
  readonly producer: OnnxNodeEntry;
  readonly slot: number;
}

/** Output 3 of a fused Skip*LayerNormalization: steered through its skip input. */
export interface SkipSumSite {
  readonly kind: 'skip-sum';
  readonly family: 'genai';
  readonly layer: number;
  readonly site: OnnxSite;
  readonly node: OnnxNodeEntry;
  /** The node's output 3, or undefined when the export left it out (the edit names it). */
  readonly tensor: string | undefined;
}

export type SiteLocation = TensorSite | SkipSumSite;

const SKIP_NORMS: ReadonlySet<string> = new Set(['SkipSimplifiedLayerNormalization', 'SkipLayerNormalization']);
const NORM_OPS: ReadonlySet<string> = new Set([
  ...SKIP_NORMS,
  'SimplifiedLayerNormalization',
  'LayerNormalization',
  'RMSNormalization',
]);

function isSkipNorm(n: OnnxNodeEntry): boolean {
  return SKIP_NORMS.has(n.opType) && (n.domain === 'com.microsoft' || n.domain === '');
}

/** The export family of a graph (see the module comment). */
export function exportFamily(view: GraphView): OnnxExportFamily {
  return view.graph.nodes.some(isSkipNorm) ? 'genai' : 'optimum';
}

interface Layers {
  /** layer index → scope prefix (e.g. '/model/layers.3/'). */
  readonly scopes: ReadonlyMap<number, string>;
  /** Number of transformer blocks: scopes holding more than normalization nodes. */
  readonly count: number;
}

/**
 * Layer scopes in the graph. GenAI exports put the final norm in a scope of its own one past the
 * last block (`layers.{L}/final_norm_layernorm`), so a block is a scope with some non-norm node.
 */
function findLayers(view: GraphView): Layers {
  const scopes = new Map<number, string>();
  const real = new Set<number>();
  for (const n of view.graph.nodes) {
    const l = layerScopeOf(n);
    if (l === undefined) continue;
    const seen = scopes.get(l.layer);
    if (seen !== undefined && seen !== l.scope) {
      throw new OnnxGraphError(
        `ONNX graph has two scopes for layer ${l.layer} ('${seen}' and '${l.scope}'); cannot tell which is the decoder block`,
      );
    }
    scopes.set(l.layer, l.scope);
    if (!NORM_OPS.has(n.opType)) real.add(l.layer);
  }
  let count = 0;
  while (real.has(count)) count++;
  return { scopes, count };
}

function describeLayers(layers: Layers): string {
  if (layers.scopes.size === 0) return 'no `layers.{i}/` scopes were found in node names';
  const list = [...layers.scopes.entries()].sort((a, b) => a[0] - b[0]).map(([, s]) => s);
  const shown = list.length > 6 ? [...list.slice(0, 3), '...', ...list.slice(-2)] : list;
  return `layer scopes found: ${shown.join(', ')} (${layers.count} blocks)`;
}

function inScope(node: OnnxNodeEntry, scope: string): boolean {
  return scopeOf(node).startsWith(scope);
}

function inSubScope(node: OnnxNodeEntry, scope: string): boolean {
  const s = scopeOf(node);
  return s.startsWith(scope) && s !== scope;
}

/** Finds the tensor for `{ layer, site }`; throws `OnnxGraphError` listing candidates if it cannot. */
export function findSite(index: OnnxModelIndex | GraphView, query: SiteQuery): SiteLocation {
  const view = index instanceof GraphView ? index : new GraphView(index);
  const site = query.site ?? 'resid_post';
  const layers = findLayers(view);
  if (!Number.isInteger(query.layer) || query.layer < 0 || query.layer >= layers.count) {
    throw new OnnxGraphError(`ONNX graph: layer ${query.layer} is out of range; ${describeLayers(layers)}`);
  }
  return exportFamily(view) === 'genai'
    ? findGenAiSite(view, layers, query.layer, site)
    : findOptimumSite(view, layers, query.layer, site);
}

// ---------------------------------------------------------------------------------------------
// Optimum / torch.onnx

interface ResidualAdd {
  readonly node: OnnxNodeEntry;
  readonly stream: string;
  readonly branch: string;
}

function findOptimumSite(view: GraphView, layers: Layers, layer: number, site: OnnxSite): SiteLocation {
  const scope = layers.scopes.get(layer) ?? '';
  const adds = view.graph.nodes.filter((n) => n.opType === 'Add' && n.domain === '' && scopeOf(n) === scope);
  const residual: ResidualAdd[] = [];
  for (const n of adds) {
    if (n.inputs.length !== 2) continue;
    const fromBranch = n.inputs.map((t) => {
      const p = view.sourceProducer(t);
      return p !== undefined && inSubScope(p.node, scope);
    });
    const b = fromBranch.indexOf(true);
    if (fromBranch.filter(Boolean).length !== 1) continue;
    residual.push({ node: n, branch: n.inputs[b] ?? '', stream: n.inputs[1 - b] ?? '' });
  }
  const [first, second] = orderChain(view, residual);
  if (first === undefined || second === undefined) {
    const candidates = view.graph.nodes
      .filter((n) => n.opType === 'Add' && inScope(n, scope))
      .map((n) => `${n.outputs[0] ?? '?'} (${n.inputs.join(' + ')})`);
    throw new OnnxGraphError(
      `ONNX graph: cannot find the residual stream of layer ${layer} (${site}): expected two chained Adds directly in ` +
        `scope '${scope}' each adding a sub-module output to the stream, found ${residual.length} ` +
        `(${residual.map((r) => r.node.name).join(', ') || 'none'}). Add outputs in that scope: ` +
        `${candidates.join('; ') || 'none'}. ${describeLayers(layers)}`,
    );
  }
  // resid_post: the name consumers read (a previous tap renamed the Add's own output).
  // resid_pre: the block input itself, above any pass-through Cast, so all its readers are steered.
  const tensor =
    site === 'resid_post'
      ? view.steered(second.node.outputs[0] ?? '')
      : site === 'resid_pre'
        ? view.steered(view.origin(first.stream))
        : second.branch;
  return tensorSite(view, 'optimum', layer, site, tensor);
}

/** The two residual Adds in stream order, or [] unless they form exactly one chain of two. */
function orderChain(view: GraphView, residual: readonly ResidualAdd[]): ResidualAdd[] {
  if (residual.length !== 2) return [];
  const [a, b] = residual as [ResidualAdd, ResidualAdd];
  if (view.origin(b.stream) === a.node.outputs[0]) return [a, b];
  if (view.origin(a.stream) === b.node.outputs[0]) return [b, a];
  return [];
}

function tensorSite(view: GraphView, family: OnnxExportFamily, layer: number, site: OnnxSite, tensor: string): TensorSite {
  const p = view.producer(tensor);
  if (p === undefined) {
    const what = view.isGraphInput(tensor) ? 'a graph input' : view.initializer(tensor) !== undefined ? 'an initializer' : 'produced by no node';
    throw new OnnxGraphError(
      `ONNX graph: the ${site} tensor of layer ${layer} ('${tensor}') is ${what}; a tap renames the producing node's output, so it needs one`,
    );
  }
  return { kind: 'tensor', family, layer, site, tensor, producer: p.node, slot: p.slot };
}

// ---------------------------------------------------------------------------------------------
// ORT GenAI model builder

function skipChain(view: GraphView): OnnxNodeEntry[] {
  const fused = view.graph.nodes.filter(isSkipNorm);
  // Skip inputs are compared through steering Adds a previous tap put in front of them.
  const skipOf = (n: OnnxNodeEntry): string => view.origin(n.inputs[1] ?? '');
  const bySkip = new Map<string, OnnxNodeEntry>();
  for (const n of fused) bySkip.set(skipOf(n), n);
  const sums = new Set(fused.map((n) => n.outputs[3]).filter((t): t is string => t !== undefined && t !== ''));
  const starts = fused.filter((n) => !sums.has(skipOf(n)));
  const chain: OnnxNodeEntry[] = [];
  let cur = starts.length === 1 ? starts[0] : undefined;
  while (cur !== undefined && chain.length <= fused.length) {
    chain.push(cur);
    const sum = cur.outputs[3];
    cur = sum === undefined || sum === '' ? undefined : bySkip.get(sum);
  }
  if (chain.length !== fused.length) {
    throw new OnnxGraphError(
      `ONNX graph: the ${fused.length} Skip*LayerNormalization nodes do not form one residual chain ` +
        `(each skip input = the previous node's output 3); chain starts: ${starts.map((n) => n.name).join(', ') || 'none'}`,
    );
  }
  return chain;
}

function describeChain(chain: readonly OnnxNodeEntry[]): string {
  return chain.map((n) => `${n.name} → ${n.outputs[3] ?? '(no output 3)'}`).join('; ');
}

function findGenAiSite(view: GraphView, layers: Layers, layer: number, site: OnnxSite): SiteLocation {
  const chain = skipChain(view);
  if (site === 'resid_pre' && layer > 0) {
    return { ...residPostNode(view, layers, chain, layer - 1), layer, site };
  }
  if (site === 'resid_pre') {
    const scope = layers.scopes.get(0) ?? '';
    const first = chain[0];
    const stream = first?.inputs[1];
    const p = stream === undefined ? undefined : view.sourceProducer(stream);
    if (first === undefined || stream === undefined || !inScope(first, scope) || (p !== undefined && inScope(p.node, scope))) {
      throw new OnnxGraphError(
        `ONNX graph: cannot find layer 0's input stream: expected the first Skip*LayerNormalization of the chain in ` +
          `'${scope}' with its skip input coming from outside the block; chain: ${describeChain(chain)}`,
      );
    }
    return tensorSite(view, 'genai', layer, site, stream);
  }
  const post = residPostNode(view, layers, chain, layer);
  if (site === 'mlp_out') return tensorSite(view, 'genai', layer, site, post.node.inputs[0] ?? '');
  return post;
}

function residPostNode(view: GraphView, layers: Layers, chain: readonly OnnxNodeEntry[], layer: number): SkipSumSite {
  const scope = layers.scopes.get(layer) ?? '';
  let last = -1;
  chain.forEach((n, i) => {
    if (inScope(n, scope)) last = i;
  });
  const next = last >= 0 ? chain[last + 1] : undefined;
  const branch = next?.inputs[0];
  const p = branch === undefined ? undefined : view.sourceProducer(branch);
  if (next === undefined || p === undefined || !inScope(p.node, scope)) {
    throw new OnnxGraphError(
      `ONNX graph: cannot find the fused residual add after layer ${layer}: expected the Skip*LayerNormalization ` +
        `following the last one in '${scope}' to take that block's MLP output as input 0; chain: ${describeChain(chain)}`,
    );
  }
  const sum = next.outputs[3];
  return {
    kind: 'skip-sum',
    family: 'genai',
    layer,
    site: 'resid_post',
    node: next,
    tensor: sum === undefined || sum === '' ? undefined : sum,
  };
}
