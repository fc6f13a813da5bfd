#!/usr/bin/env python3
"""Writes the golden files for Tests/QuantTests from the `gguf` Python package (an independent reference).

Each Tests/QuantTests/Golden/<type>.bin is little-endian:
    u32 count        number of float values
    u32 nbytes       bytes of quantized data
    u32 quantized    1 if `data` is gguf's quantization of `src`, 0 if data are random blocks (src is then zeros)
    f32 src[count]   source floats
    u8  data[nbytes] quantized blocks
    f32 deq[count]   gguf.quants.dequantize(data) (numpy for Q8_1 / Q8_K, which gguf does not dequantize)

Usage: pip install gguf numpy && python3 scripts/quant-golden.py
"""
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "QuantTests", "Golden")
rng = np.random.default_rng(20240611)


def f16(x):
    return np.asarray(x, dtype=np.float16).view(np.uint8)


def write(name, src, data, deq, quantized):
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    src = np.asarray(src, dtype=np.float32).reshape(-1)
    deq = np.asarray(deq, dtype=np.float32).reshape(-1)
    assert src.size == deq.size and np.all(np.isfinite(deq)), name
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(struct.pack("<III", deq.size, data.size, 1 if quantized else 0))
        f.write(src.tobytes())
        f.write(data.tobytes())
        f.write(deq.tobytes())


def normal(n):
    # mix of scales per 32-group so blocks see different magnitudes, plus some outliers
    x = rng.standard_normal(n).astype(np.float32)
    x *= np.repeat(rng.uniform(0.01, 2.0, n // 32).astype(np.float32), 32)
    x[rng.integers(0, n, n // 64)] *= 4
    return x


def quantized_case(name, qtype, n):
    x = normal(n)
    if qtype == T.F32:
        data = x.view(np.uint8)
    elif qtype == T.F16:
        data = x.astype(np.float16).view(np.uint8)
    else:
        data = quants.quantize(x.reshape(1, -1), qtype)
    deq = quants.dequantize(np.asarray(data).reshape(1, -1), qtype)
    write(name, x, data, deq, True)


def random_blocks(qtype, nb):
    """Random quant bytes with realistic, finite f16 scales."""
    def sc(lo, hi, k=1):
        return f16(rng.uniform(lo, hi, k) * rng.choice([-1, 1], k))

    def pos(lo, hi):
        return f16(rng.uniform(lo, hi, 1))

    def rb(k):
        return rng.integers(0, 256, k, dtype=np.uint8)

    blocks = []
    for _ in range(nb):
        if qtype == T.Q2_K:
            b = [rb(16), rb(64), pos(1e-3, 0.05), pos(1e-3, 0.05)]
        elif qtype == T.Q3_K:
            b = [rb(32), rb(64), rb(12), sc(1e-3, 0.05)]
        elif qtype == T.Q4_K:
            b = [pos(1e-3, 0.05), pos(1e-3, 0.05), rb(12), rb(128)]
        elif qtype == T.Q5_K:
            b = [pos(1e-3, 0.05), pos(1e-3, 0.05), rb(12), rb(32), rb(128)]
        elif qtype == T.Q6_K:
            b = [rb(128), rb(64), rb(16), sc(1e-4, 0.01)]
        elif qtype == T.Q8_1:
            b = [pos(1e-3, 0.05), pos(-1, 1), rb(32)]
        elif qtype == T.Q8_K:
            b = [np.asarray(rng.uniform(1e-3, 0.05, 1), dtype=np.float32).view(np.uint8), rb(256), rb(32)]
        else:
            raise ValueError(qtype)
        blocks.append(np.concatenate(b))
    return np.stack(blocks)


def random_case(name, qtype, nb):
    data = random_blocks(qtype, nb)
    if qtype == T.Q8_1:
        deq = data[:, :2].copy().view(np.float16).astype(np.float32) * data[:, 4:].view(np.int8).astype(np.float32)
    elif qtype == T.Q8_K:
        deq = data[:, :4].copy().view(np.float32) * data[:, 4:260].view(np.int8).astype(np.float32)
    else:
        deq = quants.dequantize(data, qtype)
    n = deq.size
    write(name, np.zeros(n, np.float32), data, deq, False)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, qt in [("f32", T.F32), ("f16", T.F16), ("bf16", T.BF16), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1),
                     ("q5_0", T.Q5_0), ("q5_1", T.Q5_1), ("q8_0", T.Q8_0)]:
        quantized_case(name, qt, 32 * 16)
    for name, qt in [("q8_1", T.Q8_1), ("q2_K", T.Q2_K), ("q3_K", T.Q3_K), ("q4_K", T.Q4_K), ("q5_K", T.Q5_K),
                     ("q6_K", T.Q6_K), ("q8_K", T.Q8_K)]:
        random_case(name, qt, 4 if qt != T.Q8_1 else 16)


if __name__ == "__main__":
    main()
