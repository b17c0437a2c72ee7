"""Task sequences: built-in split/permuted digits, and user data (label columns or files)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.continual._config import ContinualConfig
from core.data import Dataset, load_dataset
from core.errors import DataError, InvalidParameterError

__all__ = ["TaskSequence", "build_tasks", "merge_tasks", "split_digits", "permuted_digits",
           "tasks_from_files", "tasks_from_label_columns"]


@dataclass
class TaskSequence:
    """Tasks in order; every task's Dataset shares one label space (``class_names``)."""

    tasks: list[Dataset]
    names: list[str]
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return self.tasks[0].class_names

    def __len__(self) -> int:
        return len(self.tasks)

    def summary(self) -> list[dict[str, Any]]:
        return [{"task": i + 1, "name": n, "classes": sorted({int(c) for c in t.y_train}),
                 "train": len(t.y_train), "val": len(t.y_val), "test": len(t.y_test)}
                for i, (t, n) in enumerate(zip(self.tasks, self.names))]


def _subset(data: Dataset, keep: Any, name: str, transform: Any = None) -> Dataset:
    """The rows of each split whose label passes ``keep`` (inputs through ``transform``)."""
    arrays = []
    for split in ("train", "val", "test"):
        X, y = data.split(split)
        rows = keep(y)
        Xs = X[rows]
        arrays += [transform(Xs) if transform else Xs, y[rows]]
    return Dataset(name, *arrays, list(data.class_names), data.preprocessing, data.spec)


def split_digits(n_tasks: int = 5, *, seed: int = 0) -> TaskSequence:
    """Class-incremental digits: the 10 classes in ``n_tasks`` consecutive groups."""
    base = load_dataset("digits", seed=seed)
    groups = np.array_split(np.arange(base.num_classes), n_tasks)
    tasks = [_subset(base, lambda y, g=g: np.isin(y, g), f"digits {list(map(int, g))}")
             for g in groups]
    names = [f"classes {', '.join(str(int(c)) for c in g)}" for g in groups]
    return TaskSequence(tasks, names, "class-incremental",
                        {"sequence": "split-digits", "n_tasks": n_tasks, "seed": seed})


def permuted_digits(n_tasks: int = 5, *, seed: int = 0) -> TaskSequence:
    """Domain-incremental digits: all classes every task, the 64 pixels permuted by a fixed
    seeded permutation per task (task 1 unpermuted)."""
    base = load_dataset("digits", seed=seed)
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(base.input_shape))
    perms = [np.arange(pixels)] + [rng.permutation(pixels) for _ in range(n_tasks - 1)]

    def permute(perm: np.ndarray) -> Any:
        return lambda X: np.ascontiguousarray(X.reshape(len(X), -1)[:, perm].reshape(X.shape))

    tasks = [_subset(base, lambda y: np.ones(len(y), bool), f"digits permutation {i + 1}",
                     permute(p)) for i, p in enumerate(perms)]
    names = ["unpermuted"] + [f"permutation {i + 1}" for i in range(1, n_tasks)]
    return TaskSequence(tasks, names, "domain-incremental",
                        {"sequence": "permuted-digits", "n_tasks": n_tasks, "seed": seed})


def _relabel(data: Dataset, codes: dict[str, int], names: list[str], label: str) -> Dataset:
    lookup = np.array([codes[c] for c in data.class_names], dtype=np.int64)
    arrays = []
    for split in ("train", "val", "test"):
        X, y = data.split(split)
        arrays += [X, lookup[y]]
    return Dataset(label, *arrays, list(names), data.preprocessing, data.spec)


def tasks_from_files(files: Any, *, label_column: str = "label", normalize: bool = False,
                     seed: int = 0) -> TaskSequence:
    """One task per .csv/.npz file; classes are matched by their value across files."""
    loaded = [load_dataset(f, label_column=label_column, normalize=normalize, seed=seed)
              for f in files]
    shapes = {d.input_shape for d in loaded}
    if len(shapes) > 1:
        raise DataError(f"Every task file must have the same inputs; got shapes "
                        f"{sorted(list(s) for s in shapes)}.")
    names: list[str] = []
    for d in loaded:
        names += [c for c in d.class_names if c not in names]
    codes = {c: i for i, c in enumerate(names)}
    tasks = [_relabel(d, codes, names, Path(f).name) for d, f in zip(loaded, files)]
    return TaskSequence(tasks, [Path(f).name for f in files], "files",
                        {"sequence": "files", "files": [Path(f).name for f in files],
                         "seed": seed, "normalize": normalize})


def tasks_from_label_columns(path: str | Path, columns: Any, *, normalize: bool = False,
                             seed: int = 0) -> TaskSequence:
    """One .csv, one task per label column: the same inputs, each task its own classes (the
    output covers them all, named ``column=value``)."""
    from core.data import read_csv_frame
    from core.data._dataset import DataSpec, _split  # the one split rule of core.data

    df = read_csv_frame(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"The CSV has no '{missing[0]}' column (columns: "
                        f"{list(df.columns)[:10]}).")
    features = df.drop(columns=list(columns))
    bad = [c for c in features.columns if not np.issubdtype(features[c].dtype, np.number)]
    if bad or features.shape[1] == 0 or df.isna().any().any():
        raise DataError(f"The CSV must hold numeric feature columns without missing values "
                        f"besides the label columns {list(columns)}"
                        + (f" (column '{bad[0]}' holds text)." if bad else "."))
    X = features.to_numpy(dtype=np.float64)
    names: list[str] = []
    tasks = []
    for col in columns:
        values, y = np.unique(df[col].to_numpy(), return_inverse=True)
        classes = [f"{col}={v}" for v in values]
        spec = DataSpec(str(path), col, seed, normalize=normalize)
        part = _split(col, X, y, classes, None, spec, fit_standardize=normalize)
        tasks.append((part, len(names)))
        names += classes
    out = [_offset(part, start, names) for part, start in tasks]
    return TaskSequence(out, list(columns), "label-columns",
                        {"sequence": "label-columns", "data": Path(path).name,
                         "label_columns": list(columns), "seed": seed, "normalize": normalize})


def _offset(data: Dataset, start: int, names: list[str]) -> Dataset:
    arrays = []
    for split in ("train", "val", "test"):
        X, y = data.split(split)
        arrays += [X, y + start]
    return replace(data, y_train=arrays[1], y_val=arrays[3], y_test=arrays[5],
                   class_names=list(names))


def build_tasks(config: ContinualConfig) -> TaskSequence:
    """The sequence a config names."""
    if config.sequence == "split-digits":
        return split_digits(config.n_tasks, seed=config.seed)
    if config.sequence == "permuted-digits":
        return permuted_digits(config.n_tasks, seed=config.seed)
    if config.sequence == "label-columns":
        return tasks_from_label_columns(config.data, config.label_columns,
                                        normalize=config.normalize, seed=config.seed)
    return tasks_from_files(config.files, label_column=config.label_column,
                            normalize=config.normalize, seed=config.seed)


def merge_tasks(tasks: list[Dataset], *, train: tuple[np.ndarray, np.ndarray] | None = None,
                name: str = "seen tasks") -> Dataset:
    """One Dataset over several tasks (val/test concatenated); ``train`` replaces its train."""
    if not tasks:
        raise InvalidParameterError("tasks", "at least one task", 0)
    parts = {s: [t.split(s) for t in tasks] for s in ("train", "val", "test")}
    arrays = []
    for split in ("train", "val", "test"):
        if split == "train" and train is not None:
            arrays += list(train)
            continue
        arrays += [np.concatenate([p[0] for p in parts[split]]),
                   np.concatenate([p[1] for p in parts[split]])]
    first = tasks[0]
    return Dataset(name, *arrays, list(first.class_names), first.preprocessing, first.spec)
