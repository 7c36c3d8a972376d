/**
 * An index of an ONNX ModelProto: where its graph, nodes, graph inputs/outputs, value_info and
 * initializers sit in the file, with the few decoded facts a graph edit needs (names, op types,
 * element types, shapes). Nothing is copied: initializer payloads (raw_data, often gigabytes) are
 * skipped by their length prefix, and every entry keeps its byte range so that an edit can copy
 * untouched ranges verbatim.
 *
 * Field numbers follow onnx/onnx.proto:
 *   ModelProto:       ir_version=1, graph=7, opset_import=8
 *   OperatorSetIdProto: domain=1, version=2
 *   GraphProto:       node=1, name=2, initializer=5, input=11, output=12, value_info=13
 *   NodeProto:        input=1, output=2, name=3, op_type=4, attribute=5, domain=7
 *   AttributeProto:   name=1, i=3
 *   TensorProto:      dims=1, data_type=2, name=8, data_location=14
 *   ValueInfoProto:   name=1, type=2 → TypeProto.tensor_type=1 → elem_type=1, shape=2
 *   TensorShapeProto: dim=1 → dim_value=1 | dim_param=2
 */

import { OnnxGraphError } from '../../errors.js';
import { ProtoReader, WireType, type ProtoField } from './protobuf.js';

/** TensorProto.DataType values Loupe names; others are kept as plain numbers. */
export const OnnxElemType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
} as const;

/** Floating element types a hidden state can have. */
export const FLOAT_ELEM_TYPES: ReadonlySet<number> = new Set([
  OnnxElemType.FLOAT,
  OnnxElemType.FLOAT16,
  OnnxElemType.DOUBLE,
  OnnxElemType.BFLOAT16,
]);

/** A dimension: fixed size, symbolic name (dim_param), or unknown (neither set). */
export type OnnxDimInfo = number | string | undefined;

export interface OnnxValueInfoEntry {
  readonly name: string;
  /** TensorProto.DataType; undefined when the type is not a tensor or not given. */
  readonly elemType: number | undefined;
  /** undefined when the rank is unknown (no shape field). */
  readonly shape: readonly OnnxDimInfo[] | undefined;
  readonly field: ProtoField;
}

export interface OnnxNodeEntry {
  /** Position in the graph's node list. */
  readonly index: number;
  readonly name: string;
  readonly opType: string;
  /** '' is the default ONNX domain. */
  readonly domain: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly field: ProtoField;
}

export interface OnnxInitializerEntry {
  readonly name: string;
  readonly dataType: number | undefined;
  readonly dims: readonly number[];
  /** data_location = EXTERNAL: the payload lives in a separate file, referenced by external_data. */
  readonly external: boolean;
  readonly field: ProtoField;
}

export interface OnnxOpsetEntry {
  readonly domain: string;
  readonly version: number;
}

export interface OnnxGraphIndex {
  /** The `graph` field of the ModelProto (tag, length prefix, payload). */
  readonly field: ProtoField;
  readonly name: string;
  readonly nodes: readonly OnnxNodeEntry[];
  readonly inputs: readonly OnnxValueInfoEntry[];
  readonly outputs: readonly OnnxValueInfoEntry[];
  readonly valueInfo: readonly OnnxValueInfoEntry[];
  readonly initializers: readonly OnnxInitializerEntry[];
}

export interface OnnxModelIndex {
  readonly bytes: Uint8Array;
  readonly irVersion: number | undefined;
  readonly opsetImports: readonly OnnxOpsetEntry[];
  readonly graph: OnnxGraphIndex;
}

const MODEL = { IR_VERSION: 1, GRAPH: 7, OPSET_IMPORT: 8 } as const;
const GRAPH = { NODE: 1, NAME: 2, INITIALIZER: 5, INPUT: 11, OUTPUT: 12, VALUE_INFO: 13 } as const;
export const NODE_FIELD = { INPUT: 1, OUTPUT: 2, NAME: 3, OP_TYPE: 4, ATTRIBUTE: 5, DOMAIN: 7 } as const;
/** GraphProto field numbers an edit appends. */
export const GRAPH_FIELD = GRAPH;

/**
 * Indexes `bytes` as an ONNX ModelProto. Throws `OnnxGraphError` on malformed protobuf, on a
 * model without a graph, or on a model with two `graph` fields (protobuf would merge them; an
 * edit of one would be wrong).
 */
export function indexOnnxModel(bytes: Uint8Array): OnnxModelIndex {
  const r = new ProtoReader(bytes, 0, bytes.length, 'ModelProto');
  let irVersion: number | undefined;
  let graphField: ProtoField | undefined;
  const opsetImports: OnnxOpsetEntry[] = [];
  for (const f of r.fields()) {
    if (f.field === MODEL.IR_VERSION && f.wire === WireType.VARINT) {
      irVersion = r.int64Of(f);
    } else if (f.field === MODEL.GRAPH) {
      if (graphField !== undefined) {
        throw new OnnxGraphError('ONNX model has two `graph` fields; refusing to edit a model whose graph protobuf would merge');
      }
      graphField = f;
    } else if (f.field === MODEL.OPSET_IMPORT) {
      opsetImports.push(readOpset(bytes, f));
    }
  }
  if (graphField === undefined) {
    throw new OnnxGraphError(`ONNX model (${bytes.length} bytes) has no graph (ModelProto field 7); is this an ONNX file?`);
  }
  return { bytes, irVersion, opsetImports, graph: readGraph(bytes, graphField) };
}

function readOpset(bytes: Uint8Array, f: ProtoField): OnnxOpsetEntry {
  const r = ProtoReader.of(bytes, f, 'OperatorSetIdProto');
  let domain = '';
  let version = 0;
  for (const g of r.fields()) {
    if (g.field === 1 && g.wire === WireType.LEN) domain = r.stringOf(g);
    else if (g.field === 2 && g.wire === WireType.VARINT) version = r.int64Of(g);
  }
  return { domain, version };
}

function readGraph(bytes: Uint8Array, field: ProtoField): OnnxGraphIndex {
  const r = ProtoReader.of(bytes, field, 'GraphProto');
  let name = '';
  const nodes: OnnxNodeEntry[] = [];
  const inputs: OnnxValueInfoEntry[] = [];
  const outputs: OnnxValueInfoEntry[] = [];
  const valueInfo: OnnxValueInfoEntry[] = [];
  const initializers: OnnxInitializerEntry[] = [];
  for (const f of r.fields()) {
    switch (f.field) {
      case GRAPH.NODE:
        nodes.push(readNode(bytes, f, nodes.length));
        break;
      case GRAPH.NAME:
        if (f.wire === WireType.LEN) name = r.stringOf(f);
        break;
      case GRAPH.INITIALIZER:
        initializers.push(readTensorHeader(bytes, f));
        break;
      case GRAPH.INPUT:
        inputs.push(readValueInfo(bytes, f));
        break;
      case GRAPH.OUTPUT:
        outputs.push(readValueInfo(bytes, f));
        break;
      case GRAPH.VALUE_INFO:
        valueInfo.push(readValueInfo(bytes, f));
        break;
      default:
        break;
    }
  }
  return { field, name, nodes, inputs, outputs, valueInfo, initializers };
}

function readNode(bytes: Uint8Array, f: ProtoField, index: number): OnnxNodeEntry {
  const r = ProtoReader.of(bytes, f, 'NodeProto');
  const inputs: string[] = [];
  const outputs: string[] = [];
  let name = '';
  let opType = '';
  let domain = '';
  for (const g of r.fields()) {
    if (g.wire !== WireType.LEN) continue;
    switch (g.field) {
      case NODE_FIELD.INPUT:
        inputs.push(r.stringOf(g));
        break;
      case NODE_FIELD.OUTPUT:
        outputs.push(r.stringOf(g));
        break;
      case NODE_FIELD.NAME:
        name = r.stringOf(g);
        break;
      case NODE_FIELD.OP_TYPE:
        opType = r.stringOf(g);
        break;
      case NODE_FIELD.DOMAIN:
        domain = r.stringOf(g);
        break;
      default:
        break;
    }
  }
  return { index, name, opType, domain, inputs, outputs, field: f };
}

/** The header of a TensorProto: name, type, dims. raw_data and *_data are skipped, never copied. */
function readTensorHeader(bytes: Uint8Array, f: ProtoField): OnnxInitializerEntry {
  const r = ProtoReader.of(bytes, f, 'TensorProto');
  let name = '';
  let dataType: number | undefined;
  let external = false;
  const dims: number[] = [];
  for (const g of r.fields()) {
    if (g.field === 1) {
      // repeated int64 dims: unpacked (one varint per field) or packed (one length-delimited run).
      if (g.wire === WireType.VARINT) dims.push(r.int64Of(g));
      else if (g.wire === WireType.LEN) {
        const p = new ProtoReader(bytes, g.valueStart, g.end, 'TensorProto.dims');
        while (!p.done()) dims.push(p.int64());
      }
    } else if (g.field === 2 && g.wire === WireType.VARINT) {
      dataType = r.int64Of(g);
    } else if (g.field === 8 && g.wire === WireType.LEN) {
      name = r.stringOf(g);
    } else if (g.field === 14 && g.wire === WireType.VARINT) {
      external = r.int64Of(g) === 1;
    }
  }
  return { name, dataType, dims, external, field: f };
}

function readValueInfo(bytes: Uint8Array, f: ProtoField): OnnxValueInfoEntry {
  const r = ProtoReader.of(bytes, f, 'ValueInfoProto');
  let name = '';
  let elemType: number | undefined;
  let shape: OnnxDimInfo[] | undefined;
  for (const g of r.fields()) {
    if (g.field === 1 && g.wire === WireType.LEN) {
      name = r.stringOf(g);
    } else if (g.field === 2 && g.wire === WireType.LEN) {
      const t = ProtoReader.of(bytes, g, 'TypeProto');
      for (const h of t.fields()) {
        if (h.field !== 1 || h.wire !== WireType.LEN) continue; // only tensor_type
        const tt = ProtoReader.of(bytes, h, 'TypeProto.Tensor');
        for (const k of tt.fields()) {
          if (k.field === 1 && k.wire === WireType.VARINT) elemType = tt.int64Of(k);
          else if (k.field === 2 && k.wire === WireType.LEN) shape = readShape(bytes, k);
        }
      }
    }
  }
  return { name, elemType, shape, field: f };
}

function readShape(bytes: Uint8Array, f: ProtoField): OnnxDimInfo[] {
  const r = ProtoReader.of(bytes, f, 'TensorShapeProto');
  const dims: OnnxDimInfo[] = [];
  for (const g of r.fields()) {
    if (g.field !== 1 || g.wire !== WireType.LEN) continue;
    const d = ProtoReader.of(bytes, g, 'TensorShapeProto.Dimension');
    let dim: OnnxDimInfo;
    for (const h of d.fields()) {
      if (h.field === 1 && h.wire === WireType.VARINT) dim = d.int64Of(h);
      else if (h.field === 2 && h.wire === WireType.LEN) dim = d.stringOf(h);
    }
    dims.push(dim);
  }
  return dims;
}

/**
 * An INT attribute of a node (e.g. Cast's `to`, MatMulNBits' `N`/`K`), read from the node's
 * bytes on demand: nodes are indexed without their attributes because few edits need them.
 */
export function nodeIntAttribute(bytes: Uint8Array, node: OnnxNodeEntry, name: string): number | undefined {
  const r = ProtoReader.of(bytes, node.field, 'NodeProto');
  for (const g of r.fields()) {
    if (g.field !== NODE_FIELD.ATTRIBUTE || g.wire !== WireType.LEN) continue;
    const a = ProtoReader.of(bytes, g, 'AttributeProto');
    let attrName: string | undefined;
    let value: number | undefined;
    for (const h of a.fields()) {
      if (h.field === 1 && h.wire === WireType.LEN) attrName = a.stringOf(h);
      else if (h.field === 3 && h.wire === WireType.VARINT) value = a.int64Of(h);
    }
    if (attrName === name) return value;
  }
  return undefined;
}
