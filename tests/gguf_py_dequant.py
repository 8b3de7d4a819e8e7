#!/usr/bin/env python3
"""Dequantize GGUF tensors with llama.cpp's own gguf-py package (an independent reference).

usage: gguf_py_dequant.py GGUF OUTDIR [NAME:ROWS ...]

Writes OUTDIR/<i>.f32 (raw little-endian f32) for the i-th NAME:ROWS spec: the first ROWS rows
of tensor NAME, dequantized by gguf.quants.dequantize. With no specs, every tensor in full,
numbered in file order. Used by tests/kernels.rs; needs `pip install gguf numpy`.
"""
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    path, outdir = sys.argv[1], sys.argv[2]
    reader = GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    specs = sys.argv[3:] or [f"{t.name}:{2**62}" for t in reader.tensors]
    for i, spec in enumerate(specs):
        name, rows = spec.rsplit(":", 1)
        t = by_name[name]
        data = t.data
        if data.ndim == 1:
            data = data.reshape(1, -1)
        data = data.reshape(-1, data.shape[-1])[: int(rows)]
        values = dequantize(data, t.tensor_type).astype(np.float32)
        values.tofile(os.path.join(outdir, f"{i}.f32"))


if __name__ == "__main__":
    main()
