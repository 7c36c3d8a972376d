/**
 * `readTorchCheckpoint`: the tensors of a `torch.save` zip (state dicts, nested dicts, or a bare
 * tensor) without running any Python: the pickle is read by the restricted unpickler
 * (pickle.ts), which only knows `torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`, the
 * typed `torch.*Storage` classes and `collections.OrderedDict`. Storage offsets and arbitrary
 * strides (e.g. a transposed view saved as is) are honoured; contiguous, aligned tensors are
 * zero-copy views of the file's bytes.
 */
import { TorchCheckpointError } from '../errors.js';
import { PickleGlobal, PickleObject, PickleTuple, unpickle, type PickleKey, type PickleValue } from './pickle.js';
import { typedArrayOf, type SafetensorsDtype, type SafetensorsTensor } from './safetensors.js';
import { readZipDirectory, readZipEntry } from './zip.js';

/** A tensor of a checkpoint: the same shape as a safetensors tensor. */
export type TorchTensor = SafetensorsTensor;

const STORAGES: Record<string, { dtype: SafetensorsDtype; size: number }> = {
  FloatStorage: { dtype: 'F32', size: 4 },
  HalfStorage: { dtype: 'F16', size: 2 },
  BFloat16Storage: { dtype: 'BF16', size: 2 },
  DoubleStorage: { dtype: 'F64', size: 8 },
  LongStorage: { dtype: 'I64', size: 8 },
  IntStorage: { dtype: 'I32', size: 4 },
  ShortStorage: { dtype: 'I16', size: 2 },
  CharStorage: { dtype: 'I8', size: 1 },
  ByteStorage: { dtype: 'U8', size: 1 },
  BoolStorage: { dtype: 'BOOL', size: 1 },
};

const ALLOWED = new Set([
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'collections.OrderedDict',
  ...Object.keys(STORAGES).map((s) => `torch.${s}`),
]);

/** Limits that only hostile files reach: see `materialise` and `tensorRefsOf`. */
const MAX_RANK = 64;
const MAX_DICT_DEPTH = 1000;
const MAX_DICT_ENTRIES = 1_000_000;

export interface StorageRef {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: SafetensorsDtype;
  readonly size: number;
  readonly numel: number;
}

export interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly shape: number[];
  readonly stride: number[];
}

function ints(v: PickleValue | undefined, what: string): number[] {
  const items = v instanceof PickleTuple ? v.items : Array.isArray(v) ? v : undefined;
  if (items === undefined || !items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new TorchCheckpointError(`_rebuild_tensor_v2: ${what} must be a tuple of non-negative integers.`);
  }
  return items as number[];
}

function refOf(v: PickleValue | undefined): unknown {
  return v instanceof PickleObject ? v.value : undefined;
}

function isTensorRef(x: unknown): x is TensorRef {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'tensor';
}

/** Materialises one tensor from its storage bytes: a view when contiguous and aligned, else a gather. */
export function materialise(ref: TensorRef, storage: Uint8Array, name: string): TorchTensor {
  const { dtype, size } = ref.storage;
  const numel = ref.shape.reduce((a, b) => a * b, 1);
  if (ref.shape.length !== ref.stride.length) throw new TorchCheckpointError(`Tensor "${name}": shape and stride have different ranks.`);
  // The gather below costs rank × numel; real tensors have a handful of dimensions.
  if (ref.shape.length > MAX_RANK) {
    throw new TorchCheckpointError(`Tensor "${name}" has ${ref.shape.length} dimensions; Loupe reads at most ${MAX_RANK}. The checkpoint is corrupt or hostile. Re-save the weights with torch.save(model.state_dict()) or as safetensors.`);
  }
  // An empty tensor reads no storage, so its offset may lie anywhere; a view there would throw a RangeError.
  if (numel === 0) return { dtype, shape: ref.shape, data: typedArrayOf(dtype, new ArrayBuffer(0), 0, 0) };
  let maxIndex = ref.offset;
  for (let d = 0; d < ref.shape.length; d++) maxIndex += ((ref.shape[d] ?? 1) - 1) * (ref.stride[d] ?? 0);
  if (numel > 0 && (maxIndex + 1) * size > storage.byteLength) {
    throw new TorchCheckpointError(`Tensor "${name}" reaches element ${maxIndex} of a storage holding ${storage.byteLength / size}; the checkpoint is corrupt or truncated.`);
  }
  // Without overlap, a strided view has at most as many elements as its storage. Overlapping views
  // (stride 0, as from expand()) would let a one-element storage claim 10^18 elements to allocate.
  if (numel * size > storage.byteLength) {
    throw new TorchCheckpointError(
      `Tensor "${name}" has ${numel} elements but its storage holds ${Math.floor(storage.byteLength / size)}: overlapping views (stride 0, e.g. from expand()) are not supported. Save tensor.contiguous() instead.`,
    );
  }
  let contiguous = true;
  let expect = 1;
  for (let d = ref.shape.length - 1; d >= 0; d--) {
    if ((ref.shape[d] ?? 1) !== 1 && ref.stride[d] !== expect) contiguous = false;
    expect *= ref.shape[d] ?? 1;
  }
  const byteStart = storage.byteOffset + ref.offset * size;
  if (contiguous && byteStart % size === 0) {
    return { dtype, shape: ref.shape, data: typedArrayOf(dtype, storage.buffer as ArrayBuffer, byteStart, numel) };
  }
  // Strided or unaligned: copy element by element (bytes) into a fresh contiguous buffer.
  const out = new Uint8Array(numel * size);
  const idx = new Array<number>(ref.shape.length).fill(0);
  for (let i = 0; i < numel; i++) {
    let src = ref.offset;
    for (let d = 0; d < idx.length; d++) src += (idx[d] ?? 0) * (ref.stride[d] ?? 0);
    out.set(storage.subarray(src * size, src * size + size), i * size);
    for (let d = idx.length - 1; d >= 0; d--) {
      idx[d] = (idx[d] ?? 0) + 1;
      if ((idx[d] ?? 0) < (ref.shape[d] ?? 1)) break;
      idx[d] = 0;
    }
  }
  return { dtype, shape: ref.shape, data: typedArrayOf(dtype, out.buffer, 0, numel) };
}

/**
 * Reads a `torch.save` checkpoint (the zip format of PyTorch ≥ 1.6). Returns its tensors by
 * name: state-dict keys, nested dicts joined with '.', and '' for a file that holds one bare
 * tensor. Throws `TorchCheckpointError` for anything else, including any pickle global outside
 * the allowlist (nothing named in the file is ever called).
 */
export async function readTorchCheckpoint(bytes: ArrayBuffer | Uint8Array): Promise<Record<string, TorchTensor>> {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const entries = readZipDirectory(u8);
  const pkl = [...entries.keys()].find((n) => n.endsWith('/data.pkl') || n === 'data.pkl');
  if (pkl === undefined) throw new TorchCheckpointError('The zip has no data.pkl: not a torch.save checkpoint.');
  const prefix = pkl.slice(0, pkl.length - 'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder !== undefined) {
    const order = new TextDecoder().decode(await readZipEntry(u8, byteorder)).trim();
    if (order !== 'little') throw new TorchCheckpointError(`The checkpoint was saved ${order}-endian; Loupe reads little-endian checkpoints only.`);
  }
  const pklEntry = entries.get(pkl);
  if (pklEntry === undefined) throw new TorchCheckpointError('data.pkl vanished from the zip directory.');
  const refs = tensorRefsOf(await readZipEntry(u8, pklEntry));
  const storages = new Map<string, Uint8Array>();
  const out: Record<string, TorchTensor> = {};
  for (const [name, ref] of refs) {
    let data = storages.get(ref.storage.key);
    if (data === undefined) {
      const entry = entries.get(`${prefix}data/${ref.storage.key}`);
      if (entry === undefined) throw new TorchCheckpointError(`Storage ${ref.storage.key} of tensor "${name}" is missing from the zip.`);
      data = await readZipEntry(u8, entry);
      storages.set(ref.storage.key, data);
    }
    // defineProperty, not assignment: a tensor named "__proto__" would otherwise replace the result's prototype.
    Object.defineProperty(out, name, { value: materialise(ref, data, name), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * The tensors a checkpoint's data.pkl describes (storage key, dtype, offset, shape, stride), by
 * name — without their data. The streaming loader uses this to route storage bytes as they
 * arrive; `readTorchCheckpoint` to materialise them from a file in memory.
 */
export function tensorRefsOf(pkl: Uint8Array): Map<string, TensorRef> {
  const root = unpickle(pkl, {
    allowGlobal: (module, name) => ALLOWED.has(`${module}.${name}`),
    persistentLoad: (pid) => {
      const t = pid instanceof PickleTuple ? pid.items : undefined;
      const [tag, type, key, , numel] = t ?? [];
      if (tag !== 'storage' || !(type instanceof PickleGlobal) || typeof key !== 'string' || typeof numel !== 'number') {
        throw new TorchCheckpointError('A persistent id is not a torch storage reference.');
      }
      const info = STORAGES[type.name];
      if (info === undefined) throw new TorchCheckpointError(`Unsupported storage type ${type.qualified}.`);
      const ref: StorageRef = { kind: 'storage', key, dtype: info.dtype, size: info.size, numel };
      return new PickleObject(ref);
    },
    reduce: (fn, args) => {
      switch (fn.qualified) {
        case 'collections.OrderedDict':
          return new Map();
        case 'torch._utils._rebuild_parameter':
          return args[0] ?? null;
        case 'torch._utils._rebuild_tensor_v2': {
          const storage = refOf(args[0]) as StorageRef | undefined;
          if (storage?.kind !== 'storage') throw new TorchCheckpointError('_rebuild_tensor_v2 without a storage.');
          const offset = args[1];
          if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new TorchCheckpointError('_rebuild_tensor_v2: bad storage offset.');
          const ref: TensorRef = { kind: 'tensor', storage, offset, shape: ints(args[2], 'size'), stride: ints(args[3], 'stride') };
          return new PickleObject(ref);
        }
        default:
          throw new TorchCheckpointError(`Loupe does not construct ${fn.qualified}.`);
      }
    },
  });
  const refs = new Map<string, TensorRef>();
  // Memo references (BINGET) let a hostile pickle make a dict contain itself, nest dicts deeper than
  // the call stack, or hold one dict twice at every level (2^64 names from 65 dicts): bound all three.
  const open = new Set<Map<PickleKey, PickleValue>>();
  let visited = 0;
  const at = (name: string): string => (name.length > 80 ? `${name.slice(0, 80)}…` : name);
  const walk = (v: PickleValue, name: string, depth: number): void => {
    const r = refOf(v);
    if (isTensorRef(r)) refs.set(name, r);
    else if (v instanceof Map) {
      if (open.has(v)) throw new TorchCheckpointError(`The checkpoint has a dict that contains itself (at "${at(name)}"); a state dict is a tree. The file is corrupt or hostile. Re-save the weights with torch.save(model.state_dict()) or as safetensors.`);
      if (depth >= MAX_DICT_DEPTH) {
        throw new TorchCheckpointError(`The checkpoint's dicts are nested more than ${MAX_DICT_DEPTH} dicts deep (at "${at(name)}"); a state dict has a few levels. The file is corrupt or hostile. Re-save the weights with torch.save(model.state_dict()) or as safetensors.`);
      }
      open.add(v);
      for (const [k, child] of v) {
        if (++visited > MAX_DICT_ENTRIES) {
          throw new TorchCheckpointError(`The checkpoint's dicts hold more than ${MAX_DICT_ENTRIES} entries (a shared dict counts once per place it appears); the file is corrupt or hostile. Re-save the weights with torch.save(model.state_dict()) or as safetensors.`);
        }
        walk(child, name === '' ? String(k) : `${name}.${String(k)}`, depth + 1);
      }
      open.delete(v);
    }
  };
  walk(root, '', 0);
  if (refs.size === 0) throw new TorchCheckpointError('The checkpoint holds no tensors.');
  return refs;
}
