/**
 * A minimal, dependency-free encoder for ONNX ModelProto (protobuf wire format).
 *
 * Why hand-written: the benchmark only needs a handful of node types, and pulling in protobufjs
 * or onnx tooling for that would add a dependency and, worse, build the ~800 MB R1 initializer
 * through intermediate copies. Here every message's size is computed first (a cheap tree walk),
 * then the whole model is written once into a single preallocated Uint8Array; large tensors can
 * even be produced straight into that buffer by a writer callback (e.g. a transposing copy).
 *
 * Field numbers follow onnx/onnx.proto (proto2):
 *   ModelProto:        ir_version=1 (int64), producer_name=2, graph=7, opset_import=8
 *   OperatorSetIdProto: domain=1, version=2 (int64)
 *   GraphProto:        node=1, name=2, initializer=5, input=11, output=12
 *   NodeProto:         input=1, output=2, name=3, op_type=4, attribute=5
 *   AttributeProto:    name=1, i=3 (int64), type=20 (enum; INT=2)
 *   TensorProto:       dims=1 (int64, repeated), data_type=2, name=8, raw_data=9
 *   ValueInfoProto:    name=1, type=2
 *   TypeProto:         tensor_type=1;  TypeProto.Tensor: elem_type=1, shape=2
 *   TensorShapeProto:  dim=1;  Dimension: dim_value=1, dim_param=2
 */

import { varintSize, writeVarint } from '../../src/formats/onnx/protobuf.js';

/** TensorProto.DataType values used by the benchmark graphs. */
export const OnnxDataType = {
  FLOAT: 1,
  INT64: 7,
  FLOAT16: 10,
} as const;
export type OnnxDataType = (typeof OnnxDataType)[keyof typeof OnnxDataType];

/** Bytes per element of each supported data type (raw_data is fixed-width little-endian). */
export function onnxElementBytes(t: OnnxDataType): number {
  switch (t) {
    case OnnxDataType.FLOAT:
      return 4;
    case OnnxDataType.INT64:
      return 8;
    case OnnxDataType.FLOAT16:
      return 2;
  }
}

/**
 * Produces `byteLength` bytes directly into the final model buffer. `dst` is a subarray of
 * exactly `byteLength` bytes; it is NOT necessarily 4-byte aligned, so writers must not create
 * Float32Array views on it (copy through an aligned scratch buffer or a DataView instead).
 */
export interface RawBytesWriter {
  readonly byteLength: number;
  write(dst: Uint8Array): void;
}

/** raw_data content: ready bytes (copied once) or a writer that fills the model buffer itself. */
export type RawBytes = Uint8Array | RawBytesWriter;

export interface OnnxTensor {
  readonly name: string;
  readonly dataType: OnnxDataType;
  readonly dims: readonly number[];
  readonly raw: RawBytes;
}

/** A dimension is a fixed size (number) or a symbolic name (string, dim_param). */
export type OnnxDim = number | string;

export interface OnnxValueInfo {
  readonly name: string;
  readonly elemType: OnnxDataType;
  readonly shape: readonly OnnxDim[];
}

/** Only INT attributes are needed (TopK axis/largest/sorted, Concat axis). */
export interface OnnxIntAttribute {
  readonly name: string;
  readonly int: number;
}

export interface OnnxNode {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly attributes?: readonly OnnxIntAttribute[];
}

export interface OnnxGraph {
  readonly name: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  /** Defaults to 8 (ONNX 1.10+), which every ORT 1.1x+ accepts. */
  readonly irVersion?: number;
  /** Version of the default ("ai.onnx") operator set. */
  readonly opsetVersion: number;
  readonly producerName?: string;
  readonly graph: OnnxGraph;
}

// ---------------------------------------------------------------------------------------------
// Wire-format tree. Wire types: 0 = varint, 2 = length-delimited.

type Field =
  | { readonly no: number; readonly kind: 'varint'; readonly value: number }
  | { readonly no: number; readonly kind: 'bytes'; readonly value: RawBytes }
  | { readonly no: number; readonly kind: 'msg'; readonly value: Msg };

class Msg {
  readonly fields: Field[] = [];
  /** Cached payload size; computed once by `size()` before writing. */
  private cached = -1;

  varint(no: number, value: number): this {
    this.fields.push({ no, kind: 'varint', value });
    return this;
  }
  bytes(no: number, value: RawBytes): this {
    this.fields.push({ no, kind: 'bytes', value });
    return this;
  }
  string(no: number, value: string): this {
    return this.bytes(no, textEncoder.encode(value));
  }
  msg(no: number, value: Msg): this {
    this.fields.push({ no, kind: 'msg', value });
    return this;
  }

  size(): number {
    if (this.cached >= 0) return this.cached;
    let n = 0;
    for (const f of this.fields) {
      n += varintSize(f.no * 8 + (f.kind === 'varint' ? 0 : 2));
      if (f.kind === 'varint') {
        n += varintSize(f.value);
      } else {
        const len = f.kind === 'bytes' ? f.value.byteLength : f.value.size();
        n += varintSize(len) + len;
      }
    }
    this.cached = n;
    return n;
  }
}

const textEncoder = new TextEncoder();

// Varints (incl. negative int64 in 10-byte two's complement) come from the library's ONNX
// protobuf writer, so the benchmark graphs and the graph editor encode them the same way.

class Writer {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  varint(v: number): void {
    this.pos = writeVarint(this.buf, this.pos, v);
  }

  msg(m: Msg): void {
    for (const f of m.fields) {
      this.varint(f.no * 8 + (f.kind === 'varint' ? 0 : 2));
      if (f.kind === 'varint') {
        this.varint(f.value);
      } else if (f.kind === 'msg') {
        this.varint(f.value.size());
        this.msg(f.value);
      } else {
        const raw = f.value;
        const len = raw.byteLength;
        this.varint(len);
        const dst = this.buf.subarray(this.pos, this.pos + len);
        if (raw instanceof Uint8Array) dst.set(raw);
        else raw.write(dst);
        this.pos += len;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ONNX messages.

function tensorMsg(t: OnnxTensor): Msg {
  const count = t.dims.reduce((a, b) => a * b, 1);
  const expected = count * onnxElementBytes(t.dataType);
  if (t.raw.byteLength !== expected) {
    throw new RangeError(
      `onnx-builder: tensor ${t.name} has ${t.raw.byteLength} raw bytes, expected ${expected}`,
    );
  }
  const m = new Msg();
  // dims is `repeated int64` without [packed]; parsers must accept both forms, unpacked is the
  // proto2 default and the simplest to emit.
  for (const d of t.dims) m.varint(1, d);
  m.varint(2, t.dataType).string(8, t.name).bytes(9, t.raw);
  return m;
}

function valueInfoMsg(v: OnnxValueInfo): Msg {
  const shape = new Msg();
  for (const d of v.shape) {
    const dim = new Msg();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    shape.msg(1, dim);
  }
  const tensorType = new Msg().varint(1, v.elemType).msg(2, shape);
  const type = new Msg().msg(1, tensorType);
  return new Msg().string(1, v.name).msg(2, type);
}

const ATTRIBUTE_TYPE_INT = 2;

function nodeMsg(n: OnnxNode): Msg {
  const m = new Msg();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  if (n.name !== undefined) m.string(3, n.name);
  m.string(4, n.opType);
  for (const a of n.attributes ?? []) {
    m.msg(5, new Msg().string(1, a.name).varint(3, a.int).varint(20, ATTRIBUTE_TYPE_INT));
  }
  return m;
}

function graphMsg(g: OnnxGraph): Msg {
  const m = new Msg();
  for (const n of g.nodes) m.msg(1, nodeMsg(n));
  m.string(2, g.name);
  for (const t of g.initializers) m.msg(5, tensorMsg(t));
  for (const v of g.inputs) m.msg(11, valueInfoMsg(v));
  for (const v of g.outputs) m.msg(12, valueInfoMsg(v));
  return m;
}

/** Serialised size in bytes of `model`, without encoding it. */
export function modelByteLength(model: OnnxModel): number {
  return modelMsg(model).size();
}

function modelMsg(model: OnnxModel): Msg {
  const opset = new Msg().string(1, '').varint(2, model.opsetVersion);
  const m = new Msg().varint(1, model.irVersion ?? 8);
  if (model.producerName !== undefined) m.string(2, model.producerName);
  m.msg(7, graphMsg(model.graph)).msg(8, opset);
  return m;
}

/**
 * Encodes `model` into one freshly allocated Uint8Array of exactly the serialised size. Large
 * initializers are copied (or produced by their writer) exactly once, straight into place.
 */
export function encodeModel(model: OnnxModel): Uint8Array {
  const root = modelMsg(model);
  const out = new Uint8Array(root.size());
  const w = new Writer(out);
  w.msg(root);
  if (w.pos !== out.length) {
    throw new Error(`onnx-builder: wrote ${w.pos} bytes, sized ${out.length}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers for raw_data.

/** The bytes of a typed array (little-endian on every platform Node/browsers run on). */
export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** raw_data for an INT64 tensor from plain numbers. */
export function int64Bytes(values: readonly number[]): Uint8Array {
  return bytesOf(BigInt64Array.from(values, (v) => BigInt(v)));
}
