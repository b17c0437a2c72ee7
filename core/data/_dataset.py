"""Data sets: built-in (shipped with scikit-learn or seeded synthetic) and user files."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.errors import DataError, InvalidParameterError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataSpec:
    """How to rebuild a data set: a built-in name or a file path, and the split seed."""

    source: str = "digits"
    label_column: str = "label"
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.15

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Dataset:
    """A split, preprocessed data set; arrays are float32 features and int64 labels."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    preprocessing: dict[str, Any]
    spec: DataSpec = field(default_factory=DataSpec)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def kind(self) -> str:
        return "image" if len(self.input_shape) == 3 else "tabular"

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise InvalidParameterError("split", f"one of {list(SPLITS)}", name)
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")

    def loader(self, split: str = "train", *, batch_size: int = 64, shuffle: bool = False,
               seed: int = 0):
        """A torch DataLoader over one split."""
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        X, y = self.split(split)
        ds = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "input_shape": list(self.input_shape),
            "num_classes": self.num_classes, "train": len(self.y_train),
            "val": len(self.y_val), "test": len(self.y_test),
        }


def _digits() -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    return X, d.target, [str(c) for c in d.target_names], {"type": "scale", "factor": 1 / 16}


def _sklearn_tabular(loader_name: str) -> Callable[[], tuple]:
    def load() -> tuple:
        import sklearn.datasets

        d = getattr(sklearn.datasets, loader_name)()
        return d.data, d.target, [str(c) for c in d.target_names], None

    return load


def _health(seed: int = 0) -> tuple:
    """A seeded synthetic 9-feature, 4-class health-monitoring task (vitals → risk level)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=2000, n_features=9, n_informative=6, n_redundant=2, n_classes=4,
        n_clusters_per_class=2, class_sep=1.2, random_state=1234,
    )
    return X, y, ["normal", "elevated", "high", "critical"], None


BUILTIN: dict[str, Callable[[], tuple]] = {
    "digits": _digits,
    "wine": _sklearn_tabular("load_wine"),
    "breast_cancer": _sklearn_tabular("load_breast_cancer"),
    "health": _health,
}


def list_datasets() -> list[str]:
    """Names of the built-in data sets."""
    return list(BUILTIN)


def load_dataset(
    source: str | Path = "digits",
    *,
    label_column: str = "label",
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.15,
) -> Dataset:
    """Load a built-in name, a ``.csv`` (label column) or ``.npz`` (``X``, ``y``) and split it."""
    spec = DataSpec(str(source), label_column, seed, test_fraction, val_fraction)
    if not 0 < test_fraction < 0.9 or not 0 <= val_fraction < 0.9:
        raise InvalidParameterError("test_fraction", "a float in (0, 0.9)", test_fraction)
    name = str(source)
    if name in BUILTIN:
        X, y, classes, prep = BUILTIN[name]()
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidParameterError(
                "data", f"a built-in name {list(BUILTIN)} or an existing .csv/.npz file", name)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            X, y, classes = _read_csv(path, label_column)
        elif suffix == ".npz":
            X, y, classes = _read_npz(path)
        else:
            raise DataError(f"Unsupported data file '{path.name}': use a .csv or .npz file.")
        prep = None
        name = path.stem
    y = np.asarray(y)
    return _split(name, np.asarray(X, dtype=np.float64), y, classes, prep, spec)


def _split(name, X, y, classes, prep, spec: DataSpec) -> Dataset:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y.astype(np.int64), minlength=len(classes))
    if len(y) < 10 or (counts > 0).sum() < 2:
        raise DataError(f"The data set needs at least 10 rows and 2 classes; got {len(y)} rows "
                        f"and {(counts > 0).sum()} classes.")
    idx = np.arange(len(y))

    def cut(ix: np.ndarray, frac: float, salt: int) -> tuple[np.ndarray, np.ndarray]:
        strat = y[ix] if np.bincount(y[ix].astype(np.int64)).min(initial=0) >= 2 else None
        try:
            return train_test_split(ix, test_size=frac, random_state=spec.seed + salt,
                                    stratify=strat)
        except ValueError:
            return train_test_split(ix, test_size=frac, random_state=spec.seed + salt)

    rest, test = cut(idx, spec.test_fraction, 0)
    if spec.val_fraction > 0:
        train, val = cut(rest, spec.val_fraction / (1 - spec.test_fraction), 1)
    else:
        train, val = rest, rest[:0]
    if prep is None:
        axes = 0 if X.ndim == 2 else None
        mean = X[train].mean(axis=axes)
        std = X[train].std(axis=axes)
        std = np.where(std > 1e-12, std, 1.0)
        X = (X - mean) / std
        prep = {"type": "standardize", "mean": np.atleast_1d(mean).tolist(),
                "std": np.atleast_1d(std).tolist()}
    X = X.astype(np.float32)
    y = y.astype(np.int64)
    return Dataset(name, X[train], y[train], X[val], y[val], X[test], y[test],
                   list(classes), prep, spec)


def _labels(raw: np.ndarray) -> tuple[np.ndarray, list[str]]:
    values, codes = np.unique(raw, return_inverse=True)
    return codes.astype(np.int64), [str(v) for v in values]


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"'{path.name}' is not a readable CSV file ({exc}).") from None
    if label_column not in df.columns:
        raise DataError(f"The CSV has no '{label_column}' column (columns: "
                        f"{list(df.columns)[:10]}). Name the label column with --label-column.")
    features = df.drop(columns=[label_column])
    if features.shape[1] == 0:
        raise DataError("The CSV has no feature columns besides the label.")
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise DataError(f"Column '{bad[0]}' holds text; every feature column must be numeric.")
    nan_cols = [c for c in df.columns if df[c].isna().any()]
    if nan_cols:
        rows = int(df[nan_cols].isna().any(axis=1).sum())
        raise DataError(f"The CSV has missing values (NaN) in column '{nan_cols[0]}' "
                        f"({rows} rows). Fill or drop them first.")
    X = features.to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        raise DataError("The CSV has infinite values; every feature must be finite.")
    y, classes = _labels(df[label_column].to_numpy())
    return X, y, classes


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz or "y" not in npz:
                raise DataError(f"The .npz file must hold arrays 'X' and 'y'; it holds "
                                f"{sorted(npz.files)}.")
            X, y = npz["X"], npz["y"]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"'{path.name}' is not a readable .npz file without pickles ({exc}).")
    if X.dtype.kind not in "fiub" or len(X) != len(y) or X.ndim not in (2, 3, 4):
        raise DataError(f"'X' must be numeric with 2–4 dimensions and as many rows as 'y'; got "
                        f"dtype {X.dtype}, shape {X.shape} and {len(y)} labels.")
    if not np.isfinite(X.astype(np.float64)).all():
        raise DataError("'X' has NaN or infinite values.")
    if X.ndim == 3:
        X = X[:, None]
    y, classes = _labels(y)
    return X, y, classes
