/**
 * ONNX graphs equivalent to our SAE kernels, for running the same computation in onnxruntime-web.
 *
 *   encode: x [T, dIn] → MatMul(x, W_enc^T [dIn, dSae]) → Add(b_enc) → Relu → TopK(k, axis -1,
 *           largest, sorted) → values [T, k], indices [T, k] (int64)
 *   decode (dense): f [T, dSae] → MatMul(f, W_dec [dSae, dIn]) → Add(b_dec) → x_hat [T, dIn]
 *
 * Weights come in our SAE layout, feature-major [dSae][dIn] row-major for both the encoder and
 * the decoder; the encoder is transposed while it is written into the model (no extra copy).
 *
 * T is either fixed in the graph (a number) or symbolic (a string, ONNX dim_param). The session
 * wrapper uses fixed T: shapes are then fully known when the session is created, which is the
 * fairest setting for ORT (our kernels are also specialised per dispatch size).
 *
 * Column blocks (optional, `maxInitializerBytes`): a WebGPU binding may not exceed
 * maxStorageBufferBindingSize (128 MiB on lavapipe and the WebGPU default). Checked with ORT-web
 * 1.30 on lavapipe: ORT does NOT refuse larger initializers; its WebGPU EP binds a big tensor as
 * several segments itself (onnxruntime PRs #25962/#26429), and the results are correct (see
 * smoke.ts, 144 MiB and 822 MiB weights). So the default is one MatMul, as an ORT user would
 * write it. With `maxInitializerBytes` the weight is cut into column blocks instead: per block
 * MatMul + Add (ORT fuses those into one Gemm), then Concat on the last axis. That is exactly
 * the same arithmetic (each output column is still one dot product over the whole reduction
 * axis), only spread over several kernels; it is kept to compare the two layouts.
 */

import {
  OnnxDataType,
  bytesOf,
  encodeModel,
  int64Bytes,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
  type RawBytesWriter,
} from './onnx-builder.js';

export type OrtDtype = 'f32' | 'f16';
/** f32 values, or f16 bit patterns (IEEE binary16) for dtype 'f16'. */
export type WeightArray = Float32Array | Uint16Array;

/** Operator set used by the graphs: TopK-11 semantics (k as an input), Relu/Add-14, MatMul-13. */
export const OPSET_VERSION = 17;

export interface EncodeGraphSpec {
  readonly dtype: OrtDtype;
  readonly dIn: number;
  readonly dSae: number;
  readonly k: number;
  /** Fixed token count, or a dim_param name for a symbolic batch dimension. */
  readonly tokens: number | string;
  /** [dSae][dIn] row-major (row i = feature i's encoder direction). */
  readonly encoder: WeightArray;
  /** [dSae]; zeros when omitted. */
  readonly encoderBias?: WeightArray;
  /** Split W_enc^T by column blocks so that no weight initializer exceeds this many bytes. Default: one block. */
  readonly maxInitializerBytes?: number;
}

export interface DecodeGraphSpec {
  readonly dtype: OrtDtype;
  readonly dIn: number;
  readonly dSae: number;
  readonly tokens: number | string;
  /** [dSae][dIn] row-major (row i = feature i's decoder direction). */
  readonly decoder: WeightArray;
  /** [dIn]; zeros when omitted. */
  readonly decoderBias?: WeightArray;
  readonly maxInitializerBytes?: number;
}

export interface BuiltModel {
  /** Serialised ModelProto. */
  readonly bytes: Uint8Array;
  readonly inputName: string;
  readonly outputNames: readonly string[];
  /** Number of column blocks the weight was split into (1 = one MatMul). */
  readonly blocks: number;
  /** Columns per block (the last block may be smaller). */
  readonly blockCols: number;
}

function elemType(dtype: OrtDtype): OnnxDataType {
  return dtype === 'f32' ? OnnxDataType.FLOAT : OnnxDataType.FLOAT16;
}

function elemBytes(dtype: OrtDtype): number {
  return dtype === 'f32' ? 4 : 2;
}

function checkArray(what: string, a: WeightArray, dtype: OrtDtype, length: number): void {
  const ok = dtype === 'f32' ? a instanceof Float32Array : a instanceof Uint16Array;
  if (!ok) {
    throw new TypeError(
      `${what}: dtype ${dtype} needs a ${dtype === 'f32' ? 'Float32Array' : 'Uint16Array (f16 bits)'}`,
    );
  }
  if (a.length !== length) {
    throw new RangeError(`${what}: length ${a.length}, expected ${length}`);
  }
}

/**
 * Split `cols` columns of `rows × cols` elements into as few near-equal blocks as keep each
 * block under `maxBytes`. Block widths are rounded up to a multiple of 64 columns where that
 * does not break the limit, so that blocks stay aligned for vectorised kernels.
 */
export function planColumnBlocks(
  rows: number,
  cols: number,
  bytesPerElem: number,
  maxBytes: number | undefined,
): { blocks: number; blockCols: number } {
  const total = rows * cols * bytesPerElem;
  if (maxBytes === undefined || total <= maxBytes) return { blocks: 1, blockCols: cols };
  const maxCols = Math.floor(maxBytes / (rows * bytesPerElem));
  if (maxCols < 1) throw new RangeError(`one column of ${rows} rows exceeds ${maxBytes} bytes`);
  let blocks = Math.ceil(cols / maxCols);
  let blockCols = Math.ceil(cols / blocks);
  const aligned = Math.ceil(blockCols / 64) * 64;
  if (aligned <= maxCols) blockCols = aligned;
  blocks = Math.ceil(cols / blockCols);
  return { blocks, blockCols };
}

function allocLike(src: WeightArray, length: number): WeightArray {
  return src instanceof Float32Array ? new Float32Array(length) : new Uint16Array(length);
}

/**
 * Writes W^T[:, c0:c0+cb] for W = [rows=dSae][dIn] row-major, i.e. a [dIn, cb] block whose
 * element (i, j) is W[c0 + j][i]. Works through a small aligned scratch tile (16 output rows at
 * a time) because the destination inside the model buffer is not 4-byte aligned, and because
 * reading 16 consecutive source elements per feature keeps the gather cache-friendly.
 */
function transposedBlockWriter(
  w: WeightArray,
  dIn: number,
  c0: number,
  cb: number,
  bytesPerElem: number,
): RawBytesWriter {
  const TILE = 16;
  return {
    byteLength: dIn * cb * bytesPerElem,
    write(dst: Uint8Array): void {
      const scratch = allocLike(w, TILE * cb);
      const scratchBytes = bytesOf(scratch);
      for (let i0 = 0; i0 < dIn; i0 += TILE) {
        const rowsHere = Math.min(TILE, dIn - i0);
        for (let j = 0; j < cb; j++) {
          const base = (c0 + j) * dIn + i0;
          for (let r = 0; r < rowsHere; r++) scratch[r * cb + j] = w[base + r] ?? 0;
        }
        const n = rowsHere * cb * bytesPerElem;
        dst.set(scratchBytes.subarray(0, n), i0 * cb * bytesPerElem);
      }
    },
  };
}

/** Writes W[:, c0:c0+cb] of a row-major [rows][cols] matrix (a strided row copy). */
function columnBlockWriter(
  w: WeightArray,
  rows: number,
  cols: number,
  c0: number,
  cb: number,
  bytesPerElem: number,
): RawBytesWriter {
  return {
    byteLength: rows * cb * bytesPerElem,
    write(dst: Uint8Array): void {
      const src = bytesOf(w);
      const rowBytes = cb * bytesPerElem;
      for (let r = 0; r < rows; r++) {
        const s = (r * cols + c0) * bytesPerElem;
        dst.set(src.subarray(s, s + rowBytes), r * rowBytes);
      }
    },
  };
}

function sliceBytes(a: WeightArray, start: number, end: number): Uint8Array {
  return bytesOf(a.subarray(start, end));
}

/**
 * Emits the per-block MatMul + Add nodes (and the Concat when there is more than one block) for
 * y = input · B + bias, with B [rows, cols] given through `blockWriter`. Returns the name of y.
 */
function blockedLinear(
  prefix: string,
  input: string,
  rows: number,
  cols: number,
  dtype: OrtDtype,
  bias: WeightArray,
  plan: { blocks: number; blockCols: number },
  blockWriter: (c0: number, cb: number) => RawBytesWriter,
  nodes: OnnxNode[],
  inits: OnnxTensor[],
  outName: string,
): void {
  const et = elemType(dtype);
  const parts: string[] = [];
  for (let b = 0; b < plan.blocks; b++) {
    const c0 = b * plan.blockCols;
    const cb = Math.min(plan.blockCols, cols - c0);
    const single = plan.blocks === 1;
    const sfx = single ? '' : `_${b}`;
    const wName = `${prefix}_W${sfx}`;
    const bName = `${prefix}_b${sfx}`;
    inits.push({ name: wName, dataType: et, dims: [rows, cb], raw: blockWriter(c0, cb) });
    inits.push({ name: bName, dataType: et, dims: [cb], raw: sliceBytes(bias, c0, c0 + cb) });
    const mm = `${prefix}_mm${sfx}`;
    const y = single ? outName : `${prefix}_y${sfx}`;
    nodes.push({ opType: 'MatMul', name: `${prefix}_MatMul${sfx}`, inputs: [input, wName], outputs: [mm] });
    nodes.push({ opType: 'Add', name: `${prefix}_Add${sfx}`, inputs: [mm, bName], outputs: [y] });
    parts.push(y);
  }
  if (plan.blocks > 1) {
    nodes.push({
      opType: 'Concat',
      name: `${prefix}_Concat`,
      inputs: parts,
      outputs: [outName],
      attributes: [{ name: 'axis', int: -1 }],
    });
  }
}

export function buildEncodeModel(spec: EncodeGraphSpec): BuiltModel {
  const { dtype, dIn, dSae, k, tokens } = spec;
  checkArray('encoder', spec.encoder, dtype, dSae * dIn);
  const bias = spec.encoderBias ?? allocLike(spec.encoder, dSae);
  checkArray('encoderBias', bias, dtype, dSae);
  if (!(k >= 1 && k <= dSae)) throw new RangeError(`k=${k} out of range 1..${dSae}`);

  const eb = elemBytes(dtype);
  const et = elemType(dtype);
  const plan = planColumnBlocks(dIn, dSae, eb, spec.maxInitializerBytes);
  const nodes: OnnxNode[] = [];
  const inits: OnnxTensor[] = [];
  blockedLinear(
    'enc',
    'x',
    dIn,
    dSae,
    dtype,
    bias,
    plan,
    (c0, cb) => transposedBlockWriter(spec.encoder, dIn, c0, cb, eb),
    nodes,
    inits,
    'pre',
  );
  nodes.push({ opType: 'Relu', name: 'relu', inputs: ['pre'], outputs: ['act'] });
  inits.push({ name: 'k', dataType: OnnxDataType.INT64, dims: [1], raw: int64Bytes([k]) });
  nodes.push({
    opType: 'TopK',
    name: 'topk',
    inputs: ['act', 'k'],
    outputs: ['values', 'indices'],
    attributes: [
      { name: 'axis', int: -1 },
      { name: 'largest', int: 1 },
      { name: 'sorted', int: 1 },
    ],
  });
  const inputs: OnnxValueInfo[] = [{ name: 'x', elemType: et, shape: [tokens, dIn] }];
  const outputs: OnnxValueInfo[] = [
    { name: 'values', elemType: et, shape: [tokens, k] },
    { name: 'indices', elemType: OnnxDataType.INT64, shape: [tokens, k] },
  ];
  const bytes = encodeModel({
    opsetVersion: OPSET_VERSION,
    producerName: 'sae-loupe-bench',
    graph: { name: 'sae_encode', nodes, initializers: inits, inputs, outputs },
  });
  return { bytes, inputName: 'x', outputNames: ['values', 'indices'], ...plan };
}

export function buildDecodeModel(spec: DecodeGraphSpec): BuiltModel {
  const { dtype, dIn, dSae, tokens } = spec;
  checkArray('decoder', spec.decoder, dtype, dSae * dIn);
  const bias = spec.decoderBias ?? allocLike(spec.decoder, dIn);
  checkArray('decoderBias', bias, dtype, dIn);

  const eb = elemBytes(dtype);
  const et = elemType(dtype);
  const plan = planColumnBlocks(dSae, dIn, eb, spec.maxInitializerBytes);
  const nodes: OnnxNode[] = [];
  const inits: OnnxTensor[] = [];
  blockedLinear(
    'dec',
    'f',
    dSae,
    dIn,
    dtype,
    bias,
    plan,
    (c0, cb) =>
      plan.blocks === 1
        ? { byteLength: dSae * dIn * eb, write: (dst) => dst.set(bytesOf(spec.decoder)) }
        : columnBlockWriter(spec.decoder, dSae, dIn, c0, cb, eb),
    nodes,
    inits,
    'x_hat',
  );
  const inputs: OnnxValueInfo[] = [{ name: 'f', elemType: et, shape: [tokens, dSae] }];
  const outputs: OnnxValueInfo[] = [{ name: 'x_hat', elemType: et, shape: [tokens, dIn] }];
  const bytes = encodeModel({
    opsetVersion: OPSET_VERSION,
    producerName: 'sae-loupe-bench',
    graph: { name: 'sae_decode', nodes, initializers: inits, inputs, outputs },
  });
  return { bytes, inputName: 'f', outputNames: ['x_hat'], ...plan };
}
