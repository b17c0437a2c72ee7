"""Data sets: built-in (shipped with scikit-learn or seeded synthetic) and user files."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from core.errors import DataError, InvalidParameterError, StudioError
from core.limits import check_limit

SPLITS = ("train", "val", "test")
NO_PREPROCESSING: dict[str, Any] = {"type": "none"}
PREPROCESSING_TYPES = ("none", "scale", "standardize")


@dataclass(frozen=True)
class DataSpec:
    """How to rebuild a data set: a built-in name or a file path, and the split seed."""

    source: str = "digits"
    label_column: str = "label"
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    normalize: bool = False
    preprocessing: dict[str, Any] | None = None  # what was applied (recorded in report.json)
    splitter: str = "numpy"  # "sklearn": how reports before 2026-12-02 were split
    labels: str = "index"  # "sorted": how reports before 2026-12-02 coded integer labels
    # A file's 3-D X: True = (N, H, W) images fed as (N, 1, H, W); False = fed as given
    # (sequences (N, T, F)); None = X is not 3-D. See ``fed_to``.
    channel_axis: bool | None = None
    input_shape: tuple[int, ...] | None = None  # one row as fed (recorded; not an input)
    classes: tuple[str, ...] | None = None  # classes[i]: the label of index i (recorded)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        out["classes"] = None if self.classes is None else list(self.classes)
        warning = class_order_warning(self.classes or ())
        if warning:
            out["class_order_warning"] = warning
        return out


@dataclass
class Dataset:
    """A split data set; arrays are float32 features and int64 labels.

    ``preprocessing`` is what was applied to the features (``{"type": "none"}`` for user data
    taken as given); the spec records it too, so report.json says it and a later verb that
    re-loads the data from the report applies the same thing.
    """

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

    def __post_init__(self) -> None:
        self.preprocessing = dict(self.preprocessing or NO_PREPROCESSING)
        classes = tuple(str(c) for c in self.class_names)
        if self.spec.preprocessing != self.preprocessing or \
                self.spec.input_shape != self.input_shape or self.spec.classes != classes:
            self.spec = replace(self.spec, preprocessing=self.preprocessing,
                                input_shape=self.input_shape, classes=classes)

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
        """Shape, rows per split and ``classes`` (index i's label), with a
        ``class_order_warning`` when number-like labels are indexed in text order."""
        out = {
            "name": self.name, "kind": self.kind, "input_shape": list(self.input_shape),
            "num_classes": self.num_classes, "classes": list(self.class_names),
            "train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test),
        }
        warning = class_order_warning(self.class_names)
        return {**out, "class_order_warning": warning} if warning else out


_NUMBER_WORDS = {word: i for i, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}


def _as_number(label: str) -> int | None:
    """A label's number when it is a digit string or an English number word, else None."""
    text = label.strip().lower()
    return int(text) if text.isascii() and text.isdigit() else _NUMBER_WORDS.get(text)


def class_mapping(class_names: Sequence[str], limit: int = 8) -> str:
    """'0 = "cat", 1 = "dog"': class index to label, the first ``limit`` of them."""
    shown = ", ".join(f'{i} = "{name}"' for i, name in enumerate(class_names[:limit]))
    return shown + (", …" if len(class_names) > limit else "")


def class_order_warning(class_names: Sequence[str]) -> str | None:
    """Why the class indices may surprise: labels that read as numbers (digit strings or
    number words) are indexed in their sorted text order, which is not their numeric order
    ("1", "10", "2"; "eight", "five", …). None otherwise."""
    numbers = [_as_number(str(name)) for name in class_names]
    if len(numbers) < 2 or None in numbers or numbers == sorted(numbers):
        return None
    return (f"The labels read as numbers, but class indices follow their sorted text order "
            f"({class_mapping(class_names)}), not their numeric order: a model's output k "
            "scores the label listed as k. To choose the order, write the labels as "
            "integers 0..K-1 (they are then the class indices).")


def _digits() -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.data.reshape(-1, 1, 8, 8).astype(np.float64)
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


# Rows, input shape and classes of each built-in set, so a job's budget is checked at submit
# without importing scikit-learn (tests/test_security_limits.py checks them against the data).
BUILTIN_SIZES: dict[str, tuple[int, tuple[int, ...], int]] = {
    "digits": (1797, (1, 8, 8), 10),
    "wine": (178, (13,), 3),
    "breast_cancer": (569, (30,), 2),
    "health": (2000, (9,), 4),
}


def split_sizes(rows: int, *, test_fraction: float = 0.2, val_fraction: float = 0.15
                ) -> tuple[int, int, int]:
    """(train, val, test) row counts of a split, as ``load_dataset`` cuts it."""
    test = math.ceil(test_fraction * rows)
    val = math.ceil(val_fraction / (1 - test_fraction) * (rows - test)) if val_fraction else 0
    return rows - test - val, val, test


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
    normalize: bool = False,
    preprocessing: Mapping[str, Any] | None = None,
    splitter: str = "numpy",
    labels: str = "index",
    channel_axis: bool | None = True,
) -> Dataset:
    """Load a built-in name, a ``.csv`` (label column) or ``.npz`` (``X``, ``y``) and split it.

    A user file's features are used as given unless ``normalize=True`` (standardize with the
    train split's mean and std). Built-in data sets keep their own scaling. ``preprocessing``
    replays what a report recorded (``dataset.spec.preprocessing``) instead of choosing anew.
    ``splitter`` "sklearn" replays the split of reports written before the numpy one.
    ``labels`` "index": a user file's integer labels 0..K-1 are class indices as given (label
    k is scored against output k, even where the file lacks some classes); "sorted" codes
    every label by its rank among the file's values (how earlier reports coded them).
    ``channel_axis``: a 3-D X (an .npz's (N, H, W) or (N, T, F)) gets a channel axis, (N, 1,
    H, W), as images do, unless False (rows fed as given); ``fed_to`` re-lays a data set for
    a model that declares the other rank, and the spec records which was fed.
    Sizes are checked against the STUDIO_MAX_DATA_* limits before the data is loaded.
    """
    if not 0 < test_fraction < 0.9 or not 0 <= val_fraction < 0.9:
        raise InvalidParameterError("test_fraction", "a float in (0, 0.9)", test_fraction)
    if not isinstance(normalize, bool):
        raise InvalidParameterError("normalize", "true or false", normalize)
    if splitter not in SPLITTERS:
        raise InvalidParameterError("splitter", f"one of {list(SPLITTERS)}", splitter)
    if labels not in LABEL_CODINGS:
        raise InvalidParameterError("labels", f"one of {list(LABEL_CODINGS)}", labels)
    if channel_axis not in (True, False, None):
        raise InvalidParameterError("channel_axis", "true or false", channel_axis)
    spec = DataSpec(str(source), label_column, seed, test_fraction, val_fraction, normalize,
                    splitter=splitter, labels=labels)
    name = str(source)
    if name in BUILTIN:
        X, y, classes, prep = BUILTIN[name]()
        fit_standardize = prep is None  # the built-in tabular sets are standardized
    else:
        X, y, classes = _read_user_file(source, label_column, labels)
        prep, fit_standardize, name = None, normalize, Path(source).stem
        if np.ndim(X) == 3:
            spec = replace(spec, channel_axis=channel_axis is not False)
            X = X[:, None] if spec.channel_axis else X
    if preprocessing is not None:
        prep, fit_standardize = _checked_preprocessing(preprocessing), False
    return _split(name, np.asarray(X, dtype=np.float64), np.asarray(y), classes, prep, spec,
                  fit_standardize=fit_standardize)


# What a report's data entry records about the data rather than asks of it.
RECORDED_ONLY = ("input_shape", "classes", "class_order_warning")


def spec_inputs(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """A data spec without what is only recorded: two runs on the same data compare equal
    this way, whichever studio version wrote their reports."""
    return {k: v for k, v in dict(spec or {}).items() if k not in RECORDED_ONLY}


def dataset_from_spec(spec: Mapping[str, Any]) -> Dataset:
    """Rebuild a data set from a report's ``data`` entry (``DataSpec.to_dict()``).

    Reports written before user data was taken as given have no ``preprocessing`` entry;
    their user files were standardized, so that is what they get again.
    """
    values = dict(spec or {"source": "digits"})
    source = values.pop("source", "digits")
    known = {f for f in DataSpec.__dataclass_fields__} - {"source"}
    values = {k: v for k, v in spec_inputs(values).items() if k in known}
    if "preprocessing" not in values and str(source) not in BUILTIN:
        values.setdefault("normalize", True)
    values.setdefault("splitter", "sklearn")  # written before the numpy split
    values.setdefault("labels", "sorted")  # written before integer labels were indices
    if values.get("channel_axis") is None:
        values.pop("channel_axis", None)  # written before: a 3-D X always got the axis
    return load_dataset(source, **values)


def fed_to(data: Dataset, model_shape: tuple[int, ...] | None) -> Dataset:
    """``data`` as a model declaring ``model_shape`` (one row, 0 = free) takes it.

    The one layout rule: a file's 3-D X gets a channel axis (N, 1, H, W) by default, as the
    built-in image families and every earlier report take it; a model declaring a rank-2 row
    (a GRU, LSTM, Conv1d or Transformer over (N, T, F)) gets the rows as the file gives them;
    a model declaring (1, H, W) gets the axis back. Any other data is returned as is.
    """
    rows = tuple(data.input_shape)
    if data.spec.channel_axis is None or not model_shape:
        return data
    if data.spec.channel_axis and len(model_shape) == 2 and len(rows) == 3:
        return _relaid(data, channel_axis=False)
    if not data.spec.channel_axis and len(model_shape) == 3 and len(rows) == 2 \
            and model_shape[0] in (0, 1):
        return _relaid(data, channel_axis=True)
    return data


def _relaid(data: Dataset, *, channel_axis: bool) -> Dataset:
    """The same rows with the channel axis added (True) or taken away (False)."""
    def lay(X: np.ndarray) -> np.ndarray:
        return X[:, None] if channel_axis else X[:, 0]

    return replace(data, X_train=lay(data.X_train), X_val=lay(data.X_val),
                   X_test=lay(data.X_test),
                   spec=replace(data.spec, channel_axis=channel_axis))


def _read_user_file(source: str | Path, label_column: str, labels: str = "index"
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = Path(source)
    if not path.is_file():
        raise InvalidParameterError(
            "data", f"a built-in name {list(BUILTIN)} or an existing .csv/.npz file", path.name)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        X, raw = _read_csv(path, label_column)
    elif suffix == ".npz":
        X, raw = _read_npz(path)
    else:
        raise DataError(f"Unsupported data file '{path.name}': use a .csv or .npz file.")
    return (X, *_labels(raw, as_index=labels == "index"))


def _checked_preprocessing(prep: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(prep, Mapping) or prep.get("type") not in PREPROCESSING_TYPES:
        raise InvalidParameterError("preprocessing", f"a mapping with 'type' one of "
                                    f"{list(PREPROCESSING_TYPES)}", prep)
    return dict(prep)


def apply_preprocessing(X: np.ndarray, prep: Mapping[str, Any] | None) -> np.ndarray:
    """Apply a recorded preprocessing (none, scale or standardize) to raw features."""
    kind = (prep or NO_PREPROCESSING).get("type")
    if kind == "none":
        return X
    if kind == "scale":
        return X * float(prep["factor"])
    if kind != "standardize":
        raise InvalidParameterError("preprocessing", f"'type' one of {list(PREPROCESSING_TYPES)}",
                                    kind)
    mean = np.asarray(prep["mean"], dtype=np.float64)
    std = np.asarray(prep["std"], dtype=np.float64)
    if mean.size == 1 and std.size == 1:
        return (X - mean.item()) / std.item()
    features = int(np.prod(X.shape[1:]))
    if mean.size != features or std.size != features:
        raise DataError(f"The recorded standardization has {mean.size} means for "
                        f"{features} features; the data file changed since the run.")
    return (X - mean.reshape(X.shape[1:])) / std.reshape(X.shape[1:])


def _fit_standardize(X_train: np.ndarray) -> dict[str, Any]:
    axes = 0 if X_train.ndim == 2 else None
    mean = X_train.mean(axis=axes)
    std = X_train.std(axis=axes)
    std = np.where(std > 1e-12, std, 1.0)
    return {"type": "standardize", "mean": np.atleast_1d(mean).tolist(),
            "std": np.atleast_1d(std).tolist()}


SPLITTERS = ("numpy", "sklearn")


def _numpy_cut(ix: np.ndarray, labels: np.ndarray, frac: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """A stratified shuffle split with numpy alone (sklearn's import costs ~1.5 s a run):
    ceil(frac * n) rows for the cut, shared out by class in proportion (largest remainders)."""
    rng = np.random.default_rng(seed)
    n_cut = math.ceil(frac * len(ix))
    classes, counts = np.unique(labels, return_counts=True)
    if len(counts) == 0 or counts.min() < 2:  # a class of one row cannot be in both parts
        perm = rng.permutation(ix)
        return perm[n_cut:], perm[:n_cut]
    exact = counts * n_cut / len(ix)
    take = np.floor(exact).astype(np.int64)
    extra = n_cut - int(take.sum())
    take[np.argsort(-(exact - take), kind="stable")[:extra]] += 1
    take = np.minimum(take, counts - 1)
    keep, cut = [], []
    for c, k in zip(classes, take):
        members = rng.permutation(ix[labels == c])
        cut.append(members[:k])
        keep.append(members[k:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(cut))


def _split(name, X, y, classes, prep, spec: DataSpec, *, fit_standardize: bool) -> Dataset:
    counts = np.bincount(y.astype(np.int64), minlength=len(classes))
    if len(y) < 10 or (counts > 0).sum() < 2:
        raise DataError(f"The data set '{Path(spec.source).name}' needs at least 10 rows and 2 "
                        f"classes; got {len(y)} rows and {(counts > 0).sum()} classes.")
    idx = np.arange(len(y))

    def cut(ix: np.ndarray, frac: float, salt: int) -> tuple[np.ndarray, np.ndarray]:
        if spec.splitter == "numpy":
            return _numpy_cut(ix, y[ix], frac, spec.seed + salt)
        from sklearn.model_selection import train_test_split

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
    if fit_standardize:
        prep = _fit_standardize(X[train])
    prep = dict(prep or NO_PREPROCESSING)
    X = apply_preprocessing(X, prep).astype(np.float32)
    y = y.astype(np.int64)
    return Dataset(name, X[train], y[train], X[val], y[val], X[test], y[test],
                   list(classes), prep, replace(spec, preprocessing=prep))


LABEL_CODINGS = ("index", "sorted")


def _labels(raw: np.ndarray, *, as_index: bool = False) -> tuple[np.ndarray, list[str]]:
    """Integer codes and class names. With ``as_index``, non-negative integer labels below
    max(1024, 2 × the number of distinct labels) are the class indices themselves (classes
    absent from the file keep their index); other labels are coded by sorted value."""
    values, codes = np.unique(raw, return_inverse=True)
    if as_index and raw.dtype.kind in "iu" and len(values) and values[0] >= 0 \
            and values[-1] < max(1024, 2 * len(values)):
        return raw.astype(np.int64), [str(v) for v in range(int(values[-1]) + 1)]
    return codes.astype(np.int64), [str(v) for v in values]


def _check_size(file: str, rows: int, values: int) -> None:
    """Refuse a data file over STUDIO_MAX_DATA_ROWS or STUDIO_MAX_DATA_MB before loading it."""
    mb = values * 8 / 2**20
    check_limit("data", mb, "data_mb", value=file,
                detail=f"'{file}' holds {values:,} values ({mb:,.0f} MB as float64)")
    check_limit("data", rows, "data_rows", detail=f"'{file}' has {rows:,} rows", value=file)


def _separator(path: Path) -> str:
    """',' unless the header line has none and is split by ';' (Excel's export where the
    decimal mark is a comma) or tabs."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline(65536)
    return next((c for c in (";", "\t") if c in header and "," not in header), ",")


def _header_fields(path: Path, sep: str, cap: int) -> int:
    """Fields of the header line, counted from its bytes (stops past ``cap``). Pandas is not
    asked: a header of 2 million names took it 4 minutes and 6 GB. A separator inside quotes
    counts too, so this is an upper bound. The line ends at a line feed or a carriage return
    (old Mac exports end lines with a carriage return alone, which pandas reads)."""
    fields, mark = 1, sep.encode()
    with open(path, "rb") as fh:
        while fields <= cap and (chunk := fh.read(2**20)):
            line = chunk.split(b"\n", 1)[0].split(b"\r", 1)[0]
            fields += line.count(mark)
            if len(line) < len(chunk):
                break
    return fields


def read_csv_frame(path: str | Path) -> Any:
    """A CSV file as a pandas DataFrame, its rows and values bounded while parsing."""
    import pandas as pd

    from core.limits import get_limit

    path = Path(path)
    try:
        sep = _separator(path)
        columns = _header_fields(path, sep, int(get_limit("data_columns")))
        check_limit("data", columns, "data_columns", value=path.name,
                    detail=f"'{path.name}' has {columns:,}+ columns in its header line")
        columns = len(pd.read_csv(path, nrows=0, sep=sep).columns)
        budget_rows = int(get_limit("data_mb") * 2**20 / 8 / max(columns, 1))
        cap = min(int(get_limit("data_rows")), budget_rows)
        df = pd.read_csv(path, nrows=cap + 1, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"'{path.name}' is not a readable CSV file ({exc}).") from None
    if len(df) > cap:  # more rows than the limits allow: say which limit
        check_limit("data", len(df), "data_rows", value=path.name,
                    detail=f"'{path.name}' has more than {cap:,} rows")
        mb = len(df) * columns * 8 / 2**20
        check_limit("data", mb, "data_mb", value=path.name,
                    detail=f"'{path.name}' has more than {cap:,} rows × {columns} columns "
                           f"(over {mb:,.0f} MB as float64)")
    return df


def _check_float32_range(X: np.ndarray, what: str) -> None:
    """Models take float32: a value beyond its range would reach them as infinity."""
    big = float(np.abs(X).max(initial=0.0)) if X.dtype.kind == "f" else 0.0
    limit = float(np.finfo(np.float32).max)
    if big > limit:
        raise DataError(f"{what} has values up to {big:.3g}, beyond float32's range "
                        f"(±{limit:.3g}); models take float32 inputs.")


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and raw labels of a CSV file."""
    import pandas as pd

    df = read_csv_frame(path)
    if label_column not in df.columns:
        raise DataError(f"The CSV has no '{label_column}' column (columns: "
                        f"{list(df.columns)[:10]}). Name the label column with --label-column.")
    if df.empty:
        raise DataError(f"'{path.name}' has a header but no rows.")
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
    _check_float32_range(X, "The CSV")
    return X, df[label_column].to_numpy()


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each ``.npy`` member's shape and dtype, read from its header without loading its data.

    Refuses a member whose declared sizes are over STUDIO_MAX_DATA_MB (a compression bomb
    is caught here, before any allocation) and any dtype that would need pickle.
    """
    from numpy.lib import format as npy

    path = Path(path)
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                check_limit("data", info.file_size / 2**20, "data_mb", value=path.name,
                            detail=f"'{path.name}' member '{name}' unpacks to "
                                   f"{info.file_size:,} bytes")
                with zf.open(info) as fp:
                    version = npy.read_magic(fp)
                    if version == (1, 0):
                        shape, _, dtype = npy.read_array_header_1_0(fp)
                    elif version == (2, 0):
                        shape, _, dtype = npy.read_array_header_2_0(fp)
                    else:
                        raise ValueError(f"unsupported .npy format version {version}")
                if dtype.hasobject:
                    raise DataError(f"'{path.name}' array '{name}' holds Python objects "
                                    "(pickle); the studio loads numeric arrays only.")
                out[name] = (tuple(int(d) for d in shape), dtype)
    except StudioError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"'{path.name}' is not a readable .npz file without pickles "
                        f"({exc}).") from None
    return out


def read_npz(path: str | Path, names: tuple[str, ...] = ("X", "y")) -> dict[str, np.ndarray]:
    """The named arrays of a ``.npz`` file, each checked against the limits before loading."""
    path = Path(path)
    headers = npz_headers(path)
    missing = [n for n in names if n not in headers]
    if missing:
        raise DataError(f"The .npz file must hold arrays {list(names)}; it holds "
                        f"{sorted(headers)}.")
    for n in names:
        shape, _ = headers[n]
        _check_size(f"{path.name}:{n}", shape[0] if shape else 1, math.prod(shape))
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {n: npz[n] for n in names}
    except StudioError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"'{path.name}' is not a readable .npz file without pickles "
                        f"({exc}).") from None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features and raw labels of an .npz file (arrays X and y)."""
    arrays = read_npz(path)
    X, y = arrays["X"], arrays["y"]
    if y.ndim == 2 and y.shape[1:] == (1,):  # a column of labels, as Keras and pandas write it
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"'y' must hold one label per row (shape [rows]); got shape {y.shape}.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"'y' has {int((~np.isfinite(y)).sum())} missing (NaN) or infinite "
                        "labels; every row needs a label.")
    if X.dtype.kind not in "fiub" or len(X) != len(y) or X.ndim not in (2, 3, 4):
        raise DataError(f"'X' must be numeric with 2–4 dimensions and as many rows as 'y'; got "
                        f"dtype {X.dtype}, shape {X.shape} and {len(y)} labels.")
    if not np.isfinite(X.astype(np.float64)).all():
        raise DataError("'X' has NaN or infinite values.")
    _check_float32_range(X, "'X'")
    return X, y
