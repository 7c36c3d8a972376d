/**
 * Lookups over an indexed graph: who produces and who consumes a tensor, declared types, and
 * the name scopes (`/model/layers.{i}/...`) that exporters give nodes. Built once per edit; all
 * maps hold references into the index, nothing is copied from the model.
 */

import type { OnnxGraphIndex, OnnxInitializerEntry, OnnxModelIndex, OnnxNodeEntry, OnnxValueInfoEntry } from './model.js';

export interface Producer {
  readonly node: OnnxNodeEntry;
  readonly slot: number;
}

/** `layers.{i}/` as a path segment, after any prefix (`/model/`, `/transformer/`, ''). */
const LAYER_SCOPE = /^(.*?(?:^|\/)layers\.(\d+)\/)/;

export class GraphView {
  readonly graph: OnnxGraphIndex;
  private readonly producers = new Map<string, Producer>();
  private readonly consumerMap = new Map<string, OnnxNodeEntry[]>();
  private readonly declared = new Map<string, OnnxValueInfoEntry>();
  private readonly inits = new Map<string, OnnxInitializerEntry>();
  /** Every tensor name the graph mentions (to refuse edits whose new names collide). */
  readonly names = new Set<string>();
  private readonly inputNames: ReadonlySet<string>;

  constructor(readonly index: OnnxModelIndex) {
    this.graph = index.graph;
    this.inputNames = new Set(this.graph.inputs.map((v) => v.name));
    for (const n of this.graph.nodes) {
      n.outputs.forEach((t, slot) => {
        if (t === '') return;
        this.producers.set(t, { node: n, slot });
        this.names.add(t);
      });
      for (const t of n.inputs) {
        if (t === '') continue;
        let list = this.consumerMap.get(t);
        if (list === undefined) this.consumerMap.set(t, (list = []));
        list.push(n);
        this.names.add(t);
      }
      if (n.name !== '') this.names.add(n.name);
    }
    // value_info first so that graph inputs/outputs, the interface contract, win on conflicts.
    for (const v of [...this.graph.valueInfo, ...this.graph.inputs, ...this.graph.outputs]) {
      this.declared.set(v.name, v);
      this.names.add(v.name);
    }
    for (const t of this.graph.initializers) {
      this.inits.set(t.name, t);
      this.names.add(t.name);
    }
  }

  producer(tensor: string): Producer | undefined {
    return this.producers.get(tensor);
  }

  consumers(tensor: string): readonly OnnxNodeEntry[] {
    return this.consumerMap.get(tensor) ?? [];
  }

  /** The value_info, graph input or graph output entry describing `tensor`. */
  declaredInfo(tensor: string): OnnxValueInfoEntry | undefined {
    return this.declared.get(tensor);
  }

  initializer(tensor: string): OnnxInitializerEntry | undefined {
    return this.inits.get(tensor);
  }

  isGraphInput(tensor: string): boolean {
    return this.inputNames.has(tensor);
  }

  /**
   * A steering Add a previous tap inserted: `Add(t, s)` with `s` a graph input of shape
   * [1, 1, d]. Site rules look through these so that taps compose (a graph tapped at one site can
   * be tapped again at another, or at the same one with new names).
   */
  steerOperand(node: OnnxNodeEntry): number | undefined {
    if (node.opType !== 'Add' || node.domain !== '' || node.inputs.length !== 2) return undefined;
    const isSteer = node.inputs.map((t) => {
      const shape = this.isGraphInput(t) ? this.declared.get(t)?.shape : undefined;
      return shape?.length === 3 && shape[0] === 1 && shape[1] === 1;
    });
    return isSteer[0] === isSteer[1] ? undefined : isSteer.indexOf(true);
  }

  /**
   * Where `tensor`'s value comes from, looking up through nodes that pass the stream on as is:
   * Identity, Cast (torch routes the residual through RMSNorm's float32 → float32 `.to()` Cast)
   * and steering Adds.
   */
  origin(tensor: string): string {
    let t = tensor;
    for (let guard = 0; guard < 64; guard++) {
      const p = this.producers.get(t);
      if (p === undefined) return t;
      const n = p.node;
      const s = this.steerOperand(n);
      const passThrough = (n.opType === 'Identity' || n.opType === 'Cast') && n.domain === '';
      if (s === undefined && !passThrough) return t;
      t = (s === undefined ? n.inputs[0] : n.inputs[1 - s]) ?? t;
    }
    return t;
  }

  /** The node that computed `tensor`'s value (see `origin`). */
  sourceProducer(tensor: string): Producer | undefined {
    return this.producers.get(this.origin(tensor));
  }

  /** The name consumers read: `tensor`, or the output of the steering Adds that are its only consumer. */
  steered(tensor: string): string {
    let t = tensor;
    for (let guard = 0; guard < 64; guard++) {
      const c = this.consumerMap.get(t);
      const only = c?.length === 1 ? c[0] : undefined;
      if (only === undefined || this.steerOperand(only) === undefined) return t;
      t = only.outputs[0] ?? t;
    }
    return t;
  }
}

/** The scope a node's name puts it in: everything up to the last '/' (its first output's name if unnamed). */
export function scopeOf(node: OnnxNodeEntry): string {
  const label = node.name !== '' ? node.name : (node.outputs[0] ?? '');
  return label.slice(0, label.lastIndexOf('/') + 1);
}

/** `{ layer, scope }` when the node sits in a `layers.{i}/` scope. */
export function layerScopeOf(node: OnnxNodeEntry): { layer: number; scope: string } | undefined {
  const m = LAYER_SCOPE.exec(scopeOf(node));
  if (m === null || m[1] === undefined || m[2] === undefined) return undefined;
  return { layer: Number(m[2]), scope: m[1] };
}
