#!/usr/bin/python3
"""Writes PyTorch checkpoints for readTorchCheckpoint's tests, with the expected tensors beside them.

Run with Debian's python3 (python3-torch): /usr/bin/python3 tools/golden/make_torch_fixtures.py
Outputs (committed) in tests/fixtures/torch/:
  state_dict.pt          nn.Module state dict (OrderedDict with _metadata, Parameters) plus extra
                         entries: bf16, f16, i64, bool tensors, a transposed (non-contiguous) view,
                         a slice with a storage offset, two tensors sharing one storage
  nested.pt              a nested dict of tensors
  deflated.pt            state_dict.pt re-zipped with deflate compression
  malicious.pt           a zip whose data.pkl calls os.system (must be refused, never run)
  expected.safetensors   every tensor above, contiguous, as torch itself reads it (key: file/name)
  sample_acts_expected.safetensors  torch.load of ../shared fixture sample_acts.pt
"""
import io, json, os, struct, sys, zipfile
import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures/torch'
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)

def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    names = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.int64: 'I64', torch.bool: 'BOOL', torch.float64: 'F64', torch.int32: 'I32'}
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype in (torch.bfloat16,) else t.numpy().tobytes()
        header[k] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h)
        for b in blobs: f.write(b)

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(6, 10)
        self.register_buffer('b_dec', torch.randn(6))

m = Tiny()
sd = m.state_dict()
base = torch.randn(5, 7)
shared = torch.arange(24, dtype=torch.float32)
sd['W_bf16'] = torch.randn(4, 3).to(torch.bfloat16)
sd['W_f16'] = torch.randn(3, 5).to(torch.float16)
sd['steps'] = torch.tensor([1, -2, 3], dtype=torch.int64)
sd['mask'] = torch.tensor([True, False, True])
sd['transposed'] = base.t()                 # non-contiguous: stride (1, 7)
sd['sliced'] = shared[5:17].view(3, 4)      # storage offset 5
sd['shared_tail'] = shared[20:]             # same storage as 'sliced'
sd['scalar'] = torch.tensor(2.5)
torch.save(sd, f'{OUT}/state_dict.pt')
torch.save({'sae': {'W_enc': torch.randn(2, 3), 'b': {'x': torch.randn(2)}}, 'step': torch.tensor(7)}, f'{OUT}/nested.pt')

with zipfile.ZipFile(f'{OUT}/state_dict.pt') as src, zipfile.ZipFile(f'{OUT}/deflated.pt', 'w', zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))

# A checkpoint whose pickle would run os.system('echo pwned') in an unrestricted unpickler.
evil = b'\x80\x02cos\nsystem\nq\x00X\x0b\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.'
with zipfile.ZipFile(f'{OUT}/malicious.pt', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', evil)
    z.writestr('archive/byteorder', 'little')
    z.writestr('archive/version', '3\n')

expected = {}
for f in ['state_dict', 'nested', 'deflated']:
    loaded = torch.load(f'{OUT}/{f}.pt')
    def walk(v, name):
        if isinstance(v, torch.Tensor): expected[f'{f}/{name}'] = v
        elif isinstance(v, dict):
            for k, c in v.items(): walk(c, k if name == '' else f'{name}.{k}')
    walk(loaded, '')
write_safetensors(f'{OUT}/expected.safetensors', expected)
acts = torch.load(os.path.join(os.path.dirname(__file__), '../../tests/fixtures/goodfire/sample_acts.pt'))
write_safetensors(f'{OUT}/sample_acts_expected.safetensors', {'acts': acts})
print('wrote', sorted(os.listdir(OUT)), 'sample_acts norm', float(acts.norm()))
