#!/usr/bin/python3
"""Independent check of the golden fixtures written by make_golden.py.

Run:  /usr/bin/python3 tools/golden/check_golden.py [--dir tests/fixtures/golden]
Needs numpy only (no torch).

1. Parses every <case>.safetensors with a small reader of its own (header length bound, JSON,
   data start aligned to 8, offsets in bounds, contiguous, non-overlapping, size == shape x dtype).
2. Re-derives every expected output from the stored weights, x and the `config` metadata alone,
   in float64 with numpy, following Loupe's SaeConfig semantics as written in
   docs/golden-fixtures.md, and compares with the stored pre_acts / feature_acts / x_hat / metrics.
   This is what the TypeScript CPU reference has to do, so the config vocabulary is complete when
   this passes.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DIR = os.path.join(REPO_ROOT, "tests", "fixtures", "golden")
ITEM = {"F32": 4, "F16": 2, "BF16": 2}


def read_safetensors(path):
    raw = open(path, "rb").read()
    if len(raw) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack_from("<Q", raw, 0)
    if n > len(raw) - 8 or n > 100_000_000:
        raise ValueError(f"header length {n} out of bounds")
    if (8 + n) % 8:
        raise ValueError("data does not start at a multiple of 8")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    spans = []
    tensors = {}
    for name, info in header.items():
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        if not (0 <= b <= e <= len(data)):
            raise ValueError(f"{name}: offsets {b},{e} outside data of {len(data)} bytes")
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * ITEM[dt]:
            raise ValueError(f"{name}: {e - b} bytes for shape {shape} {dt}")
        if b % ITEM[dt]:
            raise ValueError(f"{name}: offset {b} not aligned to {ITEM[dt]}")
        spans.append((b, e, name))
        buf = data[b:e]
        if dt == "F32":
            arr = np.frombuffer(buf, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        else:  # BF16: the upper half of a float32
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        tensors[name] = (dt, arr.reshape(shape).astype(np.float64))
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise ValueError(f"{name}: gap or overlap at {pos}..{b}")
        pos = e
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes")
    return meta, tensors


def reference(cfg, t):
    """Loupe semantics in float64 from config + stored tensors."""
    x = t["x"][1]
    enc = t["encoder"][1]
    dec = enc if cfg["tied"] else t["decoder"][1]
    b_enc, b_dec = t["b_enc"][1], t["b_dec"][1]
    T, d = x.shape
    finite = np.isfinite(x).all(axis=1)
    xf = x[finite]
    s = cfg["inputScale"]
    h = xf * s
    state = {}
    if cfg["inputNorm"] == "constant-norm-rescale":
        c = np.sqrt(d) / np.linalg.norm(h, axis=1, keepdims=True)
        h = h * c
        state["c"] = c
    elif cfg["inputNorm"] == "layer-norm":
        mu = h.mean(axis=1, keepdims=True)
        hc = h - mu
        std = np.sqrt((hc ** 2).sum(axis=1, keepdims=True) / (d - 1))  # unbiased
        h = hc / (std + 1e-5)
        state["mu"], state["std"] = mu, std
    if cfg["applyBDecToInput"]:
        h = h - b_dec
    pre = h @ enc.T + b_enc
    arch = cfg["architecture"]
    if arch == "relu":
        acts = np.maximum(pre, 0)
    elif arch == "jumprelu":
        acts = np.maximum(pre, 0) * (pre > t["threshold"][1])
    elif arch == "topk":
        r = np.maximum(pre, 0)  # either order gives the same dense codes (ReLU is monotone)
        acts = np.zeros_like(pre)
        idx = np.argsort(-r, axis=1, kind="stable")[:, :cfg["k"]]
        np.put_along_axis(acts, idx, np.take_along_axis(r, idx, axis=1), axis=1)
    elif arch == "batchtopk":
        r = np.maximum(pre, 0).ravel()
        kk = cfg["k"] * xf.shape[0]
        idx = np.argsort(-r, kind="stable")[:kk]
        acts = np.zeros_like(r)
        acts[idx] = r[idx]
        acts = acts.reshape(pre.shape)
    else:
        raise ValueError(arch)
    y = acts @ dec + b_dec
    if cfg["inputNorm"] == "constant-norm-rescale":
        y = y / state["c"]
    elif cfg["inputNorm"] == "layer-norm":
        y = y * state["std"] + state["mu"]
    y = y / s
    m = pre.shape[1]
    P = np.full((T, m), np.nan)
    A = np.zeros((T, m))
    Y = np.empty((T, d))
    P[finite], A[finite], Y[finite] = pre, acts, y
    Y[~finite] = b_dec / s
    mse, cos, fvu = metrics(x, Y)
    for v in (mse, cos, fvu):
        v[~finite] = np.nan  # Loupe: metrics of a non-finite row are NaN
    return P, A, Y, mse, cos, fvu, finite


def metrics(x, y):
    with np.errstate(invalid="ignore", divide="ignore"):
        err = x - y
        mse = (err ** 2).mean(axis=1)
        cos = (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
        fvu = (err ** 2).sum(axis=1) / ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    return mse, cos, fvu


def close(name, got, want, atol, rtol, errors):
    both_nan = np.isnan(got) & np.isnan(want)
    bad = ~both_nan & ~(np.abs(got - want) <= atol + rtol * np.abs(want))
    if bad.any():
        i = np.argwhere(bad)[0]
        errors.append(f"{name}: {int(bad.sum())} mismatches, first at {tuple(int(v) for v in i)}: "
                      f"stored {got[tuple(i)]!r} reference {want[tuple(i)]!r}")


def check_case(path, entry):
    meta, t = read_safetensors(path)
    cfg = json.loads(meta["config"])
    case = json.loads(meta["case"])
    errors = []
    for key in ("format", "architecture", "dIn", "dSae", "applyBDecToInput", "inputNorm",
                "inputScale", "tied", "weightDtype"):
        if key not in cfg:
            errors.append(f"config lacks {key}")
    T, d, m = case["tokens"], cfg["dIn"], cfg["dSae"]
    shapes = {"encoder": [m, d], "b_enc": [m], "b_dec": [d], "x": [T, d], "pre_acts": [T, m],
              "feature_acts": [T, m], "x_hat": [T, d], "mse": [T], "cosine": [T], "fvu": [T]}
    if not cfg["tied"]:
        shapes["decoder"] = [m, d]
    if cfg["architecture"] == "jumprelu":
        shapes["threshold"] = [m]
    if set(shapes) != set(t):
        errors.append(f"tensors {sorted(t)} != {sorted(shapes)}")
    for name, shp in shapes.items():
        if name in t and list(t[name][1].shape) != shp:
            errors.append(f"{name} shape {list(t[name][1].shape)} != {shp}")
    wdt = {"f32": "F32", "f16": "F16", "bf16": "BF16"}[cfg["weightDtype"]]
    for name in ("encoder", "decoder", "b_enc", "b_dec", "threshold"):
        if name in t and t[name][0] != wdt:
            errors.append(f"{name} stored as {t[name][0]}, config says {wdt}")
    for name in ("x", "pre_acts", "feature_acts", "x_hat", "mse", "cosine", "fvu"):
        if t[name][0] != "F32":
            errors.append(f"{name} not F32")
    if entry["tokens"] != T or entry["dIn"] != d or entry["dSae"] != m:
        errors.append("index.json entry disagrees with the file")
    if errors:
        return errors, {}

    P, A, Y, mse, cos, fvu, finite = reference(cfg, t)
    nonfinite = [int(i) for i in np.nonzero(~finite)[0]]
    if nonfinite != case["nonFiniteTokens"]:
        errors.append(f"nonFiniteTokens {case['nonFiniteTokens']} != {nonfinite}")
    allneg = [int(i) for i in range(T) if finite[i] and (t["pre_acts"][1][i] < 0).all()]
    if allneg != case["allNegativeTokens"]:
        errors.append(f"allNegativeTokens {case['allNegativeTokens']} != {allneg}")

    bf16 = case["computeDtype"] == "bf16"
    # Tolerances: the stored values come from the source formula in the compute dtype; this
    # reference is float64. bf16 compute rounds every product sum and bias add to 8 bits.
    rt = 2e-2 if bf16 else 2e-5
    scale_pre = np.nanmax(np.abs(P))
    close("pre_acts", t["pre_acts"][1], P, rt * scale_pre * 0.5, rt, errors)
    close("feature_acts", t["feature_acts"][1], A, rt * scale_pre * 0.5, rt, errors)
    sel_stored = t["feature_acts"][1] > 0
    sel_ref = A > 0
    big = np.maximum(np.abs(t["feature_acts"][1]), A) > 1e-3 * scale_pre
    if ((sel_stored != sel_ref) & big).any():
        errors.append("selected feature set differs from the float64 reference")
    row_scale = np.abs(Y).max(axis=1, keepdims=True)  # per token: rows differ in magnitude
    close("x_hat", t["x_hat"][1], Y, (5e-2 if bf16 else 1e-4) * row_scale, rt, errors)
    if bf16:  # near-perfect reconstructions make relative metric errors large in bf16
        close("mse", t["mse"][1], mse, 1e-2 * float(np.nanmean(t["x"][1][finite] ** 2)), 0, errors)
        close("cosine", t["cosine"][1], cos, 1e-3, 0, errors)
        close("fvu", t["fvu"][1], fvu, 1e-2, 0, errors)
    else:
        close("mse", t["mse"][1], mse, 0, 1e-3, errors)
        close("cosine", t["cosine"][1], cos, 1e-5, 0, errors)
        close("fvu", t["fvu"][1], fvu, 0, 1e-3, errors)
    # Metrics recomputed from the stored x and x_hat must match to float32 rounding.
    m2, c2, f2 = metrics(t["x"][1][finite], t["x_hat"][1][finite])
    close("mse(stored x_hat)", t["mse"][1][finite], m2, 0, 1e-6, errors)
    close("cosine(stored x_hat)", t["cosine"][1][finite], c2, 1e-7, 0, errors)
    close("fvu(stored x_hat)", t["fvu"][1][finite], f2, 0, 1e-6, errors)
    if not np.isnan(t["mse"][1][~finite]).all() or not np.isnan(t["cosine"][1][~finite]).all() \
            or not np.isnan(t["fvu"][1][~finite]).all():
        errors.append("metrics of a non-finite row are not NaN")
    if (t["x_hat"][1][~finite] != t["b_dec"][1] / cfg["inputScale"]).any():
        errors.append("x_hat of a non-finite row is not b_dec / inputScale")
    nnz = (t["feature_acts"][1] > 0).sum(axis=1)
    info = {"nnz_min": int(nnz[finite].min()), "nnz_max": int(nnz[finite].max())}
    if cfg["architecture"] == "topk" and (nnz > cfg["k"]).any():
        errors.append("a token has more than k features")
    if cfg["architecture"] == "batchtopk" and nnz.sum() > cfg["k"] * int(finite.sum()):
        errors.append("batch has more than k x finite tokens features")
    if (t["feature_acts"][1][~finite] != 0).any():
        errors.append("non-finite row has features")
    return errors, info


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    index = json.load(open(os.path.join(args.dir, "index.json"), encoding="utf-8"))
    failed = 0
    total = 0
    for entry in index["cases"]:
        path = os.path.join(args.dir, entry["file"])
        total += os.path.getsize(path)
        try:
            errors, info = check_case(path, entry)
        except Exception as exc:  # noqa: BLE001 - report and continue
            errors, info = [f"{type(exc).__name__}: {exc}"], {}
        status = "ok" if not errors else "FAIL"
        print(f"{status:4s} {entry['name']:40s} {info}")
        for e in errors:
            print("     " + e)
        failed += bool(errors)
    listed = {e["file"] for e in index["cases"]}
    extra = sorted(f for f in os.listdir(args.dir) if f.endswith(".safetensors") and f not in listed)
    if extra:
        print(f"FAIL files not in index.json: {extra}")
        failed += 1
    print(f"{len(index['cases'])} cases, {total} bytes, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
