"""Transfer sets: the labelled train split, a labelled fraction + unlabelled rest, user inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data import apply_preprocessing, read_csv_frame, read_npz
from core.errors import DataError


@dataclass
class TransferSet:
    """Inputs the teacher labels; ``labels`` is -1 where a row has no ground-truth label."""

    X: np.ndarray
    labels: np.ndarray
    source: str

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0

    def labelled_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows with labels: the label-only student's whole training set."""
        mask = self.labelled
        return self.X[mask], self.labels[mask]

    def summary(self) -> dict[str, Any]:
        n_lab = int(self.labelled.sum())
        return {"source": self.source, "labelled": n_lab,
                "unlabelled": int(len(self.labels) - n_lab), "rows": int(len(self.labels))}


def labelled_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified ``fraction`` of rows (at least one per present class)."""
    if fraction >= 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = max(1, int(round(fraction * len(rows))))
        keep.append(rng.choice(rows, size=k, replace=False))
    return np.sort(np.concatenate(keep))


def build_transfer_set(data: Any, *, label_fraction: float = 1.0, unlabelled: Any = None,
                       seed: int = 0) -> TransferSet:
    """The labelled fraction of the train split, the rest of it unlabelled, plus extra inputs.

    ``unlabelled`` is a ``.npz`` (array ``X``) or ``.csv`` path, or an array, of raw inputs:
    the data set's own preprocessing is applied to them.
    """
    X, y = data.split("train")
    keep = labelled_subset(y, label_fraction, seed)
    labels = np.full(len(y), -1, dtype=np.int64)
    labels[keep] = y[keep]
    parts, label_parts = [X], [labels]
    source = "train split" if label_fraction >= 1 else \
        f"{label_fraction:.0%} labelled train split + the rest unlabelled"
    if unlabelled is not None:
        extra = read_unlabelled(unlabelled, data)
        parts.append(extra)
        label_parts.append(np.full(len(extra), -1, dtype=np.int64))
        name = Path(unlabelled).name if isinstance(unlabelled, (str, Path)) else "array"
        source += f" + {len(extra)} unlabelled rows from {name}"
    return TransferSet(np.concatenate(parts).astype(np.float32), np.concatenate(label_parts),
                       source)


def read_unlabelled(source: Any, data: Any) -> np.ndarray:
    """Raw unlabelled inputs from ``.npz``/``.csv``/array, preprocessed like the data set."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"No unlabelled input file '{path.name}'.")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            X = _read_npz(path)
        elif suffix == ".csv":
            X = _read_csv(path, data)
        else:
            raise DataError(f"Unsupported unlabelled file '{path.name}': use .npz (array 'X') "
                            "or .csv (numeric feature columns).")
    else:
        X = np.asarray(source)
    if X.dtype.kind not in "fiub":
        raise DataError(f"Unlabelled inputs must be numeric; got dtype {X.dtype}.")
    X = X.astype(np.float64)
    shape = tuple(data.input_shape)
    if X.ndim >= 2 and tuple(X.shape[1:]) != shape:
        if int(np.prod(X.shape[1:])) == int(np.prod(shape)):
            X = X.reshape(len(X), *shape)
        else:
            raise DataError(f"Unlabelled inputs have shape {list(X.shape[1:])} per row; the "
                            f"data set's inputs have shape {list(shape)}.")
    if X.ndim < 2 or len(X) == 0:
        raise DataError(f"Unlabelled inputs must have one row per sample; got shape "
                        f"{list(X.shape)}.")
    if not np.isfinite(X).all():
        raise DataError("Unlabelled inputs have NaN or infinite values.")
    return apply_preprocessing(X, data.preprocessing).astype(np.float32)


def _read_npz(path: Path) -> np.ndarray:
    X = read_npz(path, ("X",))["X"]  # sizes checked against the limits before loading
    return X[:, None] if X.ndim == 3 else X


def _read_csv(path: Path, data: Any) -> np.ndarray:
    import pandas as pd

    df = read_csv_frame(path)  # rows and values bounded while parsing
    label = getattr(data.spec, "label_column", "label")
    if label in df.columns:
        df = df.drop(columns=[label])
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise DataError(f"Column '{bad[0]}' holds text; every feature column must be numeric.")
    if df.isna().any().any():
        raise DataError("The unlabelled CSV has missing values (NaN); fill or drop them first.")
    return df.to_numpy(dtype=np.float64)
