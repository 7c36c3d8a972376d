#!/usr/bin/python3
"""Writes Loupe trace files (docs/session.md, "Trace format") from Python, independently of the
TypeScript writer, so the reader and writer in src/session/trace-format.ts are checked against a
second implementation of the spec. Standard library only (zlib.crc32 is the format's CRC-32).
Run from the repository root: /usr/bin/python3 tools/golden/make_trace_fixtures.py

tests/fixtures/traces/
  tiny-r1-golden.loupetrace   the PyTorch golden run of Tiny-R1 (demo/public/models/tiny-r1/golden.json):
                              its token ids, phases, text pieces decoded as one UTF-8 stream (the
                              server's tokenizer gives each token's bytes) and the SAE codes PyTorch computed
  flags.loupetrace            a small synthetic run covering what the golden one does not: steered
                              tokens, a non-finite token (no features), all three phases, empty and
                              multi-byte text, a character split across pieces, and a steering plan
  expected.json               what a reader must get from each file (tokens with codes as f32 values)
"""
import codecs
import json
import os
import random
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'traces')
TINY_R1 = os.path.join(ROOT, 'demo', 'public', 'models', 'tiny-r1')
PHASES = {'prompt': 0, 'thinking': 1, 'answer': 2}


def f32(x):
    """x rounded to float32, as a Python float (what a reader's Float32Array holds)."""
    return struct.unpack('<f', struct.pack('<f', x))[0]


def header_json(h):
    # The TypeScript writer's key order and JSON.stringify's compact form (no spaces, non-ASCII
    # kept as UTF-8): equal headers give equal bytes.
    keys = ['format', 'version', 'model', 'hookpoint', 'dIn', 'dSae', 'sae', 'messages', 'steering', 'maxNewTokens', 'source', 'createdAt']
    ordered = {k: h[k] for k in keys if k in h}
    sae_keys = ['name', 'hash', 'format', 'architecture', 'k']
    ordered['sae'] = {k: h['sae'][k] for k in sae_keys if k in h['sae']}
    ordered['messages'] = [{'role': m['role'], 'content': m['content']} for m in h['messages']]
    return json.dumps(ordered, ensure_ascii=False, separators=(',', ':'), allow_nan=False).encode('utf-8')


def record(kind, body):
    head = struct.pack('<BI', kind, len(body)) + body
    return head + struct.pack('<I', zlib.crc32(head))


def token_body(t):
    text = t['text'].encode('utf-8')
    n = len(t['indices'])
    flags = (1 if t['steered'] else 0) | (2 if t['nonFinite'] else 0)
    body = struct.pack('<IIBBHI', t['position'], t['tokenId'], PHASES[t['phase']], flags, len(text), n) + text
    body += struct.pack('<%dI' % n, *t['indices'])
    body += struct.pack('<%df' % n, *t['values'])
    return body


def trace_bytes(header, tokens, status='done'):
    js = header_json(header)
    pre = b'LOUPETRC' + struct.pack('<BBHI', 1, 0, 0, len(js)) + js
    out = pre + struct.pack('<I', zlib.crc32(pre))
    for t in tokens:
        out += record(1, token_body(t))
    end = json.dumps({'tokens': len(tokens), 'status': status}, separators=(',', ':')).encode('utf-8')
    return out + record(2, end)


def sorted_codes(indices, values):
    """Codes in SparseCodes order: value descending, ties by index ascending (values as f32)."""
    pairs = sorted(((f32(v), int(i)) for i, v in zip(indices, values)), key=lambda p: (-p[0], p[1]))
    return [i for _, i in pairs], [v for v, _ in pairs]


def golden_trace():
    sys.path.insert(0, os.path.join(ROOT, 'server', 'python'))
    from loupe_server.tokenizer import Tokenizer

    golden = json.load(open(os.path.join(TINY_R1, 'golden.json')))
    cfg = json.load(open(os.path.join(TINY_R1, 'sae', 'cfg.json')))
    tok = Tokenizer.from_folder(os.path.join(TINY_R1, 'model'))
    think_end = tok.token_to_id('</think>')
    decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')
    n_prompt = len(golden['prompt_ids'])
    phase = 'prompt'
    tokens = []
    for pos, (tid, codes) in enumerate(zip(golden['ids'], golden['codes'])):
        if pos == n_prompt:
            phase = 'thinking'
        indices, values = sorted_codes(codes['indices'], codes['values'])
        tokens.append({'position': pos, 'tokenId': tid, 'text': decoder.decode(tok.token_bytes(tid)), 'phase': phase,
                       'steered': False, 'nonFinite': False, 'indices': indices, 'values': values})
        if phase == 'thinking' and tid == think_end:
            phase = 'answer'
    header = {
        'format': 'loupe-trace', 'version': 1, 'model': 'tiny-r1', 'hookpoint': cfg['metadata']['hook_name'],
        'dIn': cfg['d_in'], 'dSae': cfg['d_sae'],
        'sae': {'name': 'demo/public/models/tiny-r1/sae', 'format': 'saelens', 'architecture': cfg['architecture'], 'k': cfg['k']},
        'messages': [{'role': 'user', 'content': golden['prompt']}], 'steering': None,
        'maxNewTokens': len(golden['ids']) - n_prompt, 'source': 'python-golden', 'createdAt': '2025-01-01T00:00:00.000Z',
    }
    return header, tokens


def flags_trace():
    rng = random.Random(20250301)
    d_sae = 40
    pieces = [  # (bytes of the piece, phase, steered, non-finite)
        (b'<\xef\xbd\x9cUser\xef\xbd\x9c>', 'prompt', False, False),
        (b'caf\xc3', 'prompt', False, False),      # "é" split across two pieces
        (b'\xa9 \xe2\x88\x9e', 'prompt', False, False),
        (b'', 'thinking', False, False),
        (b' Okay', 'thinking', False, True),        # a NaN activation: no features
        (b', so', 'thinking', True, False),
        (b'\xf0\x9f', 'thinking', True, False),     # an emoji in three pieces
        (b'\x98', 'thinking', True, False),
        (b'\x80!', 'thinking', True, False),
        (b'</think>', 'thinking', True, False),
        (b'\n\nYes', 'answer', True, False),
        (b'"\\\t\x01', 'answer', True, False),
    ]
    decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')
    tokens = []
    for pos, (piece, phase, steered, non_finite) in enumerate(pieces):
        n = 0 if non_finite else rng.randint(1, 6)
        feats = rng.sample(range(d_sae), n)
        vals = [rng.choice([rng.uniform(0.01, 9.0), 2.5, -0.75]) for _ in feats]  # repeated values exercise the tie order
        indices, values = sorted_codes(feats, vals)
        tokens.append({'position': pos, 'tokenId': 1000 + pos, 'text': decoder.decode(piece), 'phase': phase,
                       'steered': steered, 'nonFinite': non_finite, 'indices': indices, 'values': values})
    header = {
        'format': 'loupe-trace', 'version': 1, 'model': 'synthetic', 'hookpoint': 'layer 3 resid_post', 'dIn': 16, 'dSae': d_sae,
        'sae': {'name': 'synthetic ünïcode', 'hash': '00ff' * 16, 'format': 'memory', 'architecture': 'relu'},
        'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Café? "∞" \\ \n ok'}],
        'steering': {'push': [{'feature': 3, 'strength': 4}, {'feature': 17, 'strength': -2.5}], 'clamp': [{'feature': 5, 'value': 0.125}], 'start': 5},
        'maxNewTokens': 9, 'source': 'python-synthetic', 'createdAt': '2025-03-01T12:00:00.000Z',
    }
    return header, tokens


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    for name, (header, tokens), status in [('tiny-r1-golden', golden_trace(), 'done'), ('flags', flags_trace(), 'cancelled')]:
        data = trace_bytes(header, tokens, status)
        with open(os.path.join(OUT, name + '.loupetrace'), 'wb') as f:
            f.write(data)
        expected[name] = {'header': header, 'status': status, 'tokens': tokens, 'bytes': len(data)}
        print(f'{name}.loupetrace: {len(tokens)} tokens, {len(data)} bytes')
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
