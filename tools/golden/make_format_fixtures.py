#!/usr/bin/python3
"""Re-packs golden SAEs (tests/fixtures/golden) into the file formats their source projects
publish, so loaders can be tested end to end: load the published layout, encode the golden
input, compare with the golden outputs. Run: /usr/bin/python3 tools/golden/make_format_fixtures.py

tests/fixtures/formats/
  goodfire/config.json, goodfire/DeepSeek-R1-SAE-l37.pt   (torch.save OrderedDict W [dIn,dSae], b_enc, b_dec; bf16)
  saelens-standard/cfg.json + sae_weights.safetensors     (SAELens 6.x keys; W_enc [dIn,dSae])
  saelens-legacy/cfg.json + sae_weights.safetensors       (pre-6.0 flat keys, same SAE)
  saelens-jumprelu/..., saelens-topk/...                  (6.x)
  sparsify/layers.3/cfg.json + sae.safetensors            (encoder.weight [dSae,dIn], W_dec [dSae,dIn])
  goodfire-llama/Llama-3.1-8B-Instruct-SAE-l19.pth        (torch.save OrderedDict encoder_linear.weight [dSae,dIn],
                                                           decoder_linear.weight [dIn,dSae] saved as a NON-contiguous
                                                           view (decoder.t(), strides (1, dIn)), biases; f32; no config)
  encoder-decoder/DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt (torch.save dict encoder.weight [dSae,dIn], decoder.weight
                                                           [dIn,dSae] contiguous, biases; bf16 as qresearch ships it)
  llama-scope/L3R/config.json + sae_weights.safetensors   (lm-saes keys; encoder.weight, decoder.weight [dIn,dSae],
                                                           log_jumprelu_threshold, scalar
                                                           dataset_average_activation_norm.<hook_point_in>)
Each folder also has golden.txt naming the golden case it came from.
"""
import collections, json, os, struct, sys
import torch

SRC = 'tests/fixtures/golden'
OUT = sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures/formats'
DT = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16}

def read_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); data = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; raw = bytearray(data[s:e])
        if v['dtype'] == 'BF16':
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=DT[v['dtype']])
        out[k] = t.reshape(v['shape']).clone()
    return out, h.get('__metadata__', {})

def write_st(path, tensors, meta=None):
    names = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16'}
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[k] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    if meta: header['__metadata__'] = meta
    h = json.dumps(header, separators=(',', ':')).encode(); h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h); [f.write(b) for b in blobs]

def case(name):
    t, meta = read_st(f'{SRC}/{name}.safetensors')
    return t, json.loads(meta['config'])

def folder(name, golden):
    d = f'{OUT}/{name}'; os.makedirs(d, exist_ok=True)
    open(f'{d}/golden.txt', 'w').write(golden + '\n')
    return d

# Goodfire R1 (tied, batch top-k): W [dIn, dSae] = encoder rows transposed.
t, c = case('goodfire-bf16-batchtopk-t7')
d = folder('goodfire', 'goodfire-bf16-batchtopk-t7')
sd = collections.OrderedDict([('W', t['encoder'].t().contiguous()), ('b_enc', t['b_enc']), ('b_dec', t['b_dec'])])
torch.save(sd, f'{d}/DeepSeek-R1-SAE-l37.pt')
json.dump({'d_in': c['dIn'], 'expansion_factor': c['dSae'] / c['dIn'], 'k': c['k']}, open(f'{d}/config.json', 'w'))

def saelens(folder_name, golden, architecture, legacy=False):
    t, c = case(golden)
    d = folder(folder_name, golden)
    w = {'W_enc': t['encoder'].t().contiguous(), 'W_dec': t['decoder'], 'b_enc': t['b_enc'], 'b_dec': t['b_dec']}
    if 'threshold' in t: w['threshold'] = t['threshold']
    write_st(f'{d}/sae_weights.safetensors', w)
    norm = {'none': 'none', 'constant-norm-rescale': 'constant_norm_rescale', 'layer-norm': 'layer_norm'}[c['inputNorm']]
    dtype = {'f32': 'float32', 'f16': 'float16', 'bf16': 'bfloat16'}[c['weightDtype']]
    if legacy:
        cfg = {'d_in': c['dIn'], 'd_sae': c['dSae'], 'dtype': dtype, 'hook_point': 'blocks.3.hook_resid_post', 'model_name': 'tiny',
               'activation_fn_str': 'topk' if architecture == 'topk' else 'relu', 'activation_fn_kwargs': {'k': c['k']} if architecture == 'topk' else {},
               'apply_b_dec_to_input': c['applyBDecToInput'], 'normalize_activations': norm, 'finetuning_scaling_factor': False}
    else:
        cfg = {'architecture': architecture, 'd_in': c['dIn'], 'd_sae': c['dSae'], 'dtype': dtype, 'apply_b_dec_to_input': c['applyBDecToInput'],
               'normalize_activations': norm, 'reshape_activations': 'none', 'metadata': {'hook_name': 'blocks.3.hook_resid_post', 'model_name': 'tiny'}}
        if architecture == 'topk': cfg['k'] = c['k']
    json.dump(cfg, open(f'{d}/cfg.json', 'w'), indent=1)

saelens('saelens-standard', 'saelens-standard-f32-t7', 'standard')
saelens('saelens-legacy', 'saelens-standard-f32-t7', 'standard', legacy=True)
saelens('saelens-jumprelu', 'saelens-jumprelu-f32-t7', 'jumprelu')
saelens('saelens-topk', 'saelens-topk-f16-t64', 'topk')
saelens('saelens-layernorm', 'saelens-standard-layernorm-f16-t7', 'standard')

t, c = case('sparsify-f32-topk-t64-edge')
d = folder('sparsify', 'sparsify-f32-topk-t64-edge') + '/layers.3'
os.makedirs(d, exist_ok=True)
write_st(f'{d}/sae.safetensors', {'encoder.weight': t['encoder'], 'encoder.bias': t['b_enc'], 'W_dec': t['decoder'], 'b_dec': t['b_dec']})
json.dump({'activation': 'topk', 'expansion_factor': c['dSae'] / c['dIn'], 'normalize_decoder': True, 'num_latents': c['dSae'], 'k': c['k'],
           'multi_topk': False, 'skip_connection': False, 'transcode': False, 'd_in': c['dIn'], 'signed': False}, open(f'{d}/cfg.json', 'w'))
# Goodfire Llama (ReLU, no b_dec subtraction): a torch.save'd state dict, no config file. The
# decoder goes in as the transposed view of Loupe's [dSae, dIn] decoder WITHOUT .contiguous(), so
# the checkpoint stores feature-major bytes with strides (1, dIn) under an input-major shape.
t, c = case('goodfire-llama-relu-f32-t7')
d = folder('goodfire-llama', 'goodfire-llama-relu-f32-t7')
dec_view = t['decoder'].t()
assert not dec_view.is_contiguous() and dec_view.stride() == (1, c['dIn'])
sd = collections.OrderedDict([('encoder_linear.weight', t['encoder']), ('encoder_linear.bias', t['b_enc']),
                              ('decoder_linear.weight', dec_view), ('decoder_linear.bias', t['b_dec'])])
torch.save(sd, f'{d}/Llama-3.1-8B-Instruct-SAE-l19.pth')
back = torch.load(f'{d}/Llama-3.1-8B-Instruct-SAE-l19.pth')
assert back['decoder_linear.weight'].stride() == (1, c['dIn']) and torch.equal(back['decoder_linear.weight'], dec_view)

# qresearch-style encoder/decoder pair (SAELens deepseek_r1 loader): bf16 nn.Linear weights.
t, c = case('encoder-decoder-relu-bf16-t7')
d = folder('encoder-decoder', 'encoder-decoder-relu-bf16-t7')
assert t['encoder'].dtype == torch.bfloat16
torch.save({'encoder.weight': t['encoder'], 'encoder.bias': t['b_enc'], 'decoder.weight': t['decoder'].t().contiguous(),
            'decoder.bias': t['b_dec']}, f'{d}/DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt')

# Llama-Scope-R1-Distill as lm-saes saves it: config.json (hyperparameters) and sae_weights.safetensors
# with log_jumprelu_threshold and the dataset norm as a scalar per hook point (_get_full_state_dict).
t, c = case('llama-scope-jumprelu-f32-t7')
meta = json.loads(read_st(f'{SRC}/llama-scope-jumprelu-f32-t7.safetensors')[1]['case'])
norm = meta['datasetAverageActivationNorm']
d = folder('llama-scope', 'llama-scope-jumprelu-f32-t7') + '/L3R'
os.makedirs(d, exist_ok=True)
hook = 'blocks.3.hook_resid_post'
log_thr = torch.log(t['threshold'])
assert torch.equal(torch.exp(log_thr), t['threshold'])  # make_golden picked round-tripping logs
write_st(f'{d}/sae_weights.safetensors', {
    'encoder.weight': t['encoder'], 'encoder.bias': t['b_enc'], 'decoder.weight': t['decoder'].t().contiguous(),
    'decoder.bias': t['b_dec'], 'log_jumprelu_threshold': log_thr,
    f'dataset_average_activation_norm.{hook}': torch.tensor(norm, dtype=torch.float32)}, {'version': '2.0.0'})
assert abs(float(torch.tensor(c['dIn'] ** 0.5 / norm, dtype=torch.float32)) - c['inputScale']) == 0
json.dump({'sae_type': 'sae', 'hook_point_in': hook, 'hook_point_out': hook, 'd_model': c['dIn'],
           'expansion_factor': c['dSae'] // c['dIn'], 'use_decoder_bias': True, 'use_glu_encoder': False,
           'act_fn': 'jumprelu', 'apply_decoder_bias_to_pre_encoder': False, 'norm_activation': 'dataset-wise',
           'sparsity_include_decoder_norm': True, 'force_unit_decoder_norm': False, 'top_k': 8,
           'jumprelu_threshold_window': 2.0, 'dtype': 'torch.float32'}, open(f'{d}/config.json', 'w'), indent=1)
assert c['dSae'] == c['dIn'] * (c['dSae'] // c['dIn'])
print('wrote', sorted(os.listdir(OUT)))
