/**
 * The reference activation server started the way server/python/README.md documents it
 * (`cd server/python && /usr/bin/python3 -m loupe_server --model … --port …`), for end-to-end
 * tests; and an independent PyTorch recomputation of hidden states (a full forward of the tiny
 * model, no KV cache, no hooks) to check what the server streamed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const SERVER_DIR = fileURLToPath(new URL('../../server/python/', import.meta.url));
export const TINY_MODEL = '../../tests/fixtures/tiny-qwen2';
export const PYTHON = '/usr/bin/python3';

export function hasTorch(): boolean {
  return spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => ok(port));
    });
  });
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** stderr so far (the server logs requests there). */
  readonly log: () => string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function startServer(options: { port?: number; token?: string; cors?: string; tokenDelayMs?: number; model?: string } = {}): Promise<RunningServer> {
  const port = options.port ?? (await freePort());
  const args = ['-m', 'loupe_server', '--model', options.model ?? TINY_MODEL, '--port', String(port)];
  if (options.token !== undefined) args.push('--token', options.token);
  if (options.cors !== undefined) args.push('--cors', options.cors);
  if (options.tokenDelayMs !== undefined) args.push('--token-delay-ms', String(options.tokenDelayMs));
  const child = spawn(PYTHON, args, { cwd: SERVER_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`loupe-server did not start within 60 s:\n${err}`)), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /loupe-server listening on (http:\/\/\S+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`loupe-server exited with ${code}:\n${err}`));
    });
  });
  return {
    url,
    port,
    process: child,
    log: () => err,
    kill: (signal = 'SIGTERM') =>
      new Promise<void>((ok) => {
        if (child.exitCode !== null || child.signalCode !== null) return ok();
        child.once('exit', () => ok());
        child.kill(signal);
      }),
  };
}

/** Block `layer` outputs (HF hidden_states[layer + 1]) of the tiny model for `ids`, by a full forward in PyTorch. */
export function referenceHiddenStates(ids: readonly number[], layer: number): number[][] {
  const script = [
    'import json, sys, torch',
    'from loupe_server.models.qwen2 import Qwen2ForCausalLM',
    `model = Qwen2ForCausalLM.from_pretrained(${JSON.stringify(TINY_MODEL)})`,
    'model.eval()',
    'ids = torch.tensor([json.load(sys.stdin)], dtype=torch.long)',
    'with torch.no_grad():',
    '    hs = model.hidden_states(ids)',
    `json.dump(hs[${layer + 1}][0].tolist(), sys.stdout)`,
  ].join('\n');
  const r = spawnSync(PYTHON, ['-c', script], { cwd: SERVER_DIR, input: JSON.stringify(ids), encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`reference forward failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as number[][];
}

/**
 * A PyTorch reference for local steering, independent of the ONNX path: greedy decoding of the
 * tiny model with full forwards (no cache), a forward hook on model.layers[layer] adding `vector`
 * to the block output at every position ≥ `start`; returns the generated ids and the (steered)
 * block outputs of every position of prompt + generated ids.
 */
export function referenceSteeredGreedy(
  promptIds: readonly number[],
  layer: number,
  /**
   * What to add: a model-space vector, or SAE feature pushes v = Σ strength · W_dec[f] built in
   * PyTorch from the SAE's safetensors file (independent of Loupe's readers), or nothing.
   */
  vector: readonly number[] | { readonly sae: string; readonly pushes: ReadonlyArray<{ readonly feature: number; readonly strength: number }> } | undefined,
  start: number,
  steps: number,
  /** Model folder relative to server/python/ (default the tiny test model); greedy stops after its EOS. */
  model: string = TINY_MODEL,
  eosTokenId?: number,
): { ids: number[]; hidden: number[][] } {
  const script = [
    'import json, sys, torch',
    'from loupe_server.models.qwen2 import Qwen2ForCausalLM',
    `model = Qwen2ForCausalLM.from_pretrained(${JSON.stringify(model)})`,
    'model.eval()',
    'req = json.load(sys.stdin)',
    'from loupe_server.safetensors_io import load_file',
    'v = req["vector"]',
    'if isinstance(v, dict):',
    '    W_dec = load_file(v["sae"])["W_dec"].to(torch.float32)',
    '    v = sum((p["strength"] * W_dec[p["feature"]] for p in v["pushes"]), torch.zeros(W_dec.shape[1]))',
    'elif v is not None:',
    '    v = torch.tensor(v, dtype=torch.float32)',
    'captured = {}',
    'def hook(mod, inp, out):',
    '    h = out[0] if isinstance(out, tuple) else out',
    '    if v is not None:',
    '        pos = torch.arange(h.shape[1])',
    '        h = h + (pos >= req["start"]).to(h.dtype)[None, :, None] * v',
    '    captured["h"] = h',
    '    return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h',
    'model.model.layers[req["layer"]].register_forward_hook(hook)',
    'ids = list(req["prompt"])',
    'with torch.no_grad():',
    '    for _ in range(req["steps"]):',
    '        logits, _ = model(torch.tensor([ids]))',
    '        ids.append(int(logits[0, -1].argmax()))',
    '        if ids[-1] == req["eos"]: break',
    '    model(torch.tensor([ids]))',
    'json.dump({"ids": ids, "hidden": captured["h"][0].tolist()}, sys.stdout)',
  ].join('\n');
  const input = JSON.stringify({ prompt: promptIds, layer, vector: vector ?? null, start, steps, eos: eosTokenId ?? -1 });
  const r = spawnSync(PYTHON, ['-c', script], { cwd: SERVER_DIR, input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`reference steered greedy failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { ids: number[]; hidden: number[][] };
}
