/**
 * A restricted unpickler: the subset of the pickle VM (protocols 2–5) that `torch.save` emits for
 * tensors and state dicts. It never calls anything the file names: GLOBAL / STACK_GLOBAL resolve
 * only through the caller's allowlist of constructors written in TypeScript, and any other
 * global, any unknown opcode, or a malformed stream raises `TorchCheckpointError`.
 */
import { TorchCheckpointError } from '../errors.js';

/** A pickle value as Loupe sees it. Dicts keep insertion order (Map). */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleTuple
  | Map<PickleKey, PickleValue>
  | PickleGlobal
  | PickleObject;
export type PickleKey = string | number | bigint | boolean | null;

/** A tuple (immutable in Python; kept apart from lists for `_rebuild_tensor_v2` arguments). */
export class PickleTuple {
  constructor(readonly items: PickleValue[]) {}
}

/** A global the allowlist resolved: a marker the REDUCE/persistent-load hooks recognise. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What an allowed callable produced (e.g. a tensor); opaque to the VM. */
export class PickleObject {
  constructor(readonly value: unknown) {}
}

export interface UnpickleHooks {
  /** Globals that may be named; anything else is refused. */
  readonly allowGlobal: (module: string, name: string) => boolean;
  /** REDUCE of an allowed global with its argument tuple. */
  readonly reduce: (fn: PickleGlobal, args: PickleValue[]) => PickleValue;
  /** BINPERSID: the persistent id tuple (torch: storage references). */
  readonly persistentLoad: (pid: PickleValue) => PickleValue;
}

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

export function unpickle(data: Uint8Array, hooks: UnpickleHooks): PickleValue {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const stack: StackItem[] = [];
  const memo = new Map<number, PickleValue>();
  let p = 0;
  const fail = (what: string): never => {
    throw new TorchCheckpointError(`Pickle stream: ${what} at byte ${p}. The checkpoint is corrupt or not a torch.save file.`);
  };
  const need = (k: number): void => {
    if (p + k > data.length) fail(`needs ${k} more bytes but the stream ends`);
  };
  const u8 = (): number => (need(1), data[p++] ?? 0);
  const u16 = (): number => (need(2), (p += 2), view.getUint16(p - 2, true));
  const u32 = (): number => (need(4), (p += 4), view.getUint32(p - 4, true));
  const i32 = (): number => (need(4), (p += 4), view.getInt32(p - 4, true));
  const bytes = (k: number): Uint8Array => (need(k), (p += k), data.subarray(p - k, p));
  // A fatal decoder throws a bare TypeError on bad UTF-8; report it as a corrupt stream instead.
  const text = (b: Uint8Array): string => {
    try {
      return decoder.decode(b);
    } catch {
      return fail(`text that is not valid UTF-8 (${b.length} bytes)`);
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) fail('unterminated text line');
    const s = text(data.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) fail('stack underflow');
    return v as PickleValue;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail('empty stack');
    return v as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail('no MARK on the stack');
    const items = stack.splice(i) as PickleValue[];
    items.shift();
    return items;
  };
  const global = (module: string, name: string): PickleGlobal => {
    if (!hooks.allowGlobal(module, name)) {
      throw new TorchCheckpointError(
        `The checkpoint names the Python global "${module}.${name}", which Loupe refuses to load (only tensors and state dicts are allowed; nothing named in a file is ever called). Re-save the weights as a plain state dict or as safetensors.`,
      );
    }
    return new PickleGlobal(module, name);
  };
  const setItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!(target instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    const map = target as Map<PickleKey, PickleValue>;
    for (let i = 0; i + 1 < items.length; i += 2) {
      const k = items[i];
      if (typeof k === 'object' && k !== null) fail('unhashable dict key');
      map.set(k as PickleKey, items[i + 1] ?? null);
    }
  };
  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: bytes(8); break; // FRAME (framing is advisory)
      case 0x2e: return pop(); // STOP
      case 0x28: stack.push(MARK); break; // MARK
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x8a: { // LONG1
        const b = bytes(u8());
        let v = 0n;
        for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i] ?? 0);
        if (b.length > 0 && ((b[b.length - 1] ?? 0) & 0x80) !== 0) v -= 1n << BigInt(8 * b.length);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: need(8); stack.push(view.getFloat64(p, false)); p += 8; break; // BINFLOAT (big-endian)
      case 0x58: stack.push(text(bytes(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(text(bytes(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: { need(8); const n = Number(view.getBigUint64(p, true)); p += 8; stack.push(text(bytes(n))); break; } // BINUNICODE8
      case 0x43: stack.push(bytes(u8())); break; // SHORT_BINBYTES
      case 0x42: stack.push(bytes(u32())); break; // BINBYTES
      case 0x29: stack.push(new PickleTuple([])); break; // EMPTY_TUPLE
      case 0x85: stack.push(new PickleTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(new PickleTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(new PickleTuple([a, b, c])); break; } // TUPLE3
      case 0x74: stack.push(new PickleTuple(popMark())); break; // TUPLE
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x61: { const v = pop(); const l = top(); if (!Array.isArray(l)) fail('APPEND to a non-list'); (l as PickleValue[]).push(v); break; } // APPEND
      case 0x65: { // APPENDS; a loop, because push(...items) overflows the call stack for ~100k items
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) fail('APPENDS to a non-list');
        for (const item of items) (l as PickleValue[]).push(item);
        break;
      }
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x64: { const m = new Map<PickleKey, PickleValue>(); setItems(m, popMark()); stack.push(m); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`memo ${i} was never stored`);
        stack.push(memo.get(i) ?? null);
        break;
      }
      case 0x63: { const module = line(); const name = line(); stack.push(global(module, name)); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings'); stack.push(global(module as string, name as string)); break; }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleGlobal)) fail('REDUCE of something that is not an allowed global');
        if (!(args instanceof PickleTuple)) fail('REDUCE arguments must be a tuple');
        stack.push(hooks.reduce(fn as PickleGlobal, (args as PickleTuple).items));
        break;
      }
      case 0x51: stack.push(hooks.persistentLoad(pop())); break; // BINPERSID
      case 0x62: { // BUILD: only dict state onto a dict (OrderedDict._metadata); the state is dropped
        const state = pop();
        if (!(top() instanceof Map)) fail('BUILD on an object Loupe does not construct');
        void state;
        break;
      }
      default:
        fail(`opcode 0x${op.toString(16)} is not supported (Loupe reads only what torch.save writes for tensors and state dicts)`);
    }
  }
}
