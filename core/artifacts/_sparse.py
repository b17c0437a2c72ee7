"""A compact, pickle-free encoding of mostly-zero weights: bitmask + non-zero values, deflated.

Written by unstructured pruning so that a 90 %-sparse model is really smaller on disk
(``model.sparse.npz`` beside model.json); loaded back by ``load_model`` into a dense module.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

SPARSE_FILE = "model.sparse.npz"
_MASK, _VALUES, _DENSE, _SHAPE = "::mask", "::values", "::dense", "::shape"


def save_sparse_state(state: dict[str, Any], path: str | Path, *, min_sparsity: float = 0.25
                      ) -> int:
    """Write a state dict as a deflated .npz; tensors with ≥ ``min_sparsity`` zeros are stored
    as a packed bitmask plus their non-zero values. Returns the file's size in bytes."""
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        arr = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        arr = np.ascontiguousarray(arr)
        mask = arr != 0
        if arr.dtype.kind == "f" and arr.size >= 16 and 1 - mask.mean() >= min_sparsity:
            arrays[name + _MASK] = np.packbits(mask.reshape(-1))
            arrays[name + _VALUES] = arr[mask]
            arrays[name + _SHAPE] = np.asarray(arr.shape, dtype=np.int64)
        else:
            arrays[name + _DENSE] = arr
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, value in arrays.items():
            with zf.open(key + ".npy", "w") as fh:
                np.lib.format.write_array(fh, value, allow_pickle=False)
    return path.stat().st_size


def load_sparse_state(path: str | Path) -> dict[str, Any]:
    """Read ``save_sparse_state``'s file back into dense torch tensors (never unpickles)."""
    import torch

    out: dict[str, Any] = {}
    with np.load(str(path), allow_pickle=False) as npz:
        keys = set(npz.files)
        for key in sorted(keys):
            if key.endswith(_DENSE):
                out[key[: -len(_DENSE)]] = torch.from_numpy(npz[key].copy())
            elif key.endswith(_MASK):
                name = key[: -len(_MASK)]
                shape = tuple(int(v) for v in npz[name + _SHAPE])
                values = npz[name + _VALUES]
                size = int(np.prod(shape)) if shape else 1
                mask = np.unpackbits(npz[key], count=size).astype(bool)
                dense = np.zeros(size, dtype=values.dtype)
                dense[mask] = values
                out[name] = torch.from_numpy(dense.reshape(shape))
    return out
