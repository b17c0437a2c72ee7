"""Federated clients: seeded synthetic clients, or a data set partitioned the same ways.

Label skew is a Dirichlet(alpha) draw of each client's class proportions (``alpha=None``
is IID, stratified), feature skew a per-client offset added to every sample, and quantity
skew a log-normal spread of per-client sample counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from core.errors import DataError, InvalidParameterError, check_range

__all__ = ["ClientSet", "generate_synthetic_clients", "partition_dataset"]


@dataclass
class ClientSet:
    """Per-client train and local-test arrays, plus a global test set for the server.

    ``X_train[i]``/``y_train[i]`` is client i's training data; ``X_local[i]``/``y_local[i]``
    its own held-out data (same distribution), used for per-client (adapted) accuracy.
    """

    X_train: list[np.ndarray]
    y_train: list[np.ndarray]
    X_local: list[np.ndarray]
    y_local: list[np.ndarray]
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_clients(self) -> int:
        return len(self.y_train)

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(y) for y in self.y_train], dtype=np.int64)

    def label_histogram(self) -> np.ndarray:
        """``[clients, classes]`` counts of training labels."""
        return np.stack([np.bincount(y, minlength=self.num_classes) for y in self.y_train])

    def stats(self) -> dict[str, Any]:
        """Summary statistics of the partition (sizes and label skew)."""
        hist = self.label_histogram().astype(np.float64)
        props = hist / np.maximum(hist.sum(1, keepdims=True), 1)
        counts = self.counts
        return {
            "num_clients": self.num_clients,
            "samples_min": int(counts.min()), "samples_max": int(counts.max()),
            "samples_mean": float(counts.mean()), "samples_total": int(counts.sum()),
            "mean_classes_per_client": float((hist > 0).sum(1).mean()),
            "mean_max_class_share": float(props.max(1).mean()),
            **self.info,
        }

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """All clients' training data in one array (for centralised comparisons)."""
        return np.concatenate(self.X_train), np.concatenate(self.y_train)


def _check_common(num_clients: Any, samples_per_client: Any, num_classes: int,
                  alpha: Any, feature_shift: Any, quantity_skew: Any,
                  local_test_fraction: Any) -> None:
    check_range("num_clients", num_clients, low=1, kind=int)
    check_range("samples_per_client", samples_per_client, low=1, kind=int)
    if alpha is None and samples_per_client < num_classes:
        raise InvalidParameterError(
            "samples_per_client",
            f"at least the number of classes ({num_classes}) for a stratified IID split "
            "(or give a Dirichlet alpha for a non-IID split)", samples_per_client)
    if alpha is not None:
        check_range("alpha", alpha, low=0, low_inclusive=False)
    check_range("feature_shift", feature_shift, low=0)
    check_range("quantity_skew", quantity_skew, low=0, high=3)
    check_range("local_test_fraction", local_test_fraction, low=0, high=1, high_inclusive=False)


def _client_sizes(rng: np.random.Generator, num_clients: int, samples_per_client: int,
                  quantity_skew: float, minimum: int) -> np.ndarray:
    if quantity_skew <= 0:
        return np.full(num_clients, samples_per_client, dtype=np.int64)
    raw = rng.lognormal(0.0, quantity_skew, num_clients)
    sizes = np.round(samples_per_client * raw / raw.mean()).astype(np.int64)
    return np.maximum(sizes, max(minimum, 1))


def _label_counts(rng: np.random.Generator, n: int, props: np.ndarray | None,
                  num_classes: int) -> np.ndarray:
    """Class counts for one client: stratified when IID, multinomial under label skew."""
    if props is None:
        counts = np.full(num_classes, n // num_classes, dtype=np.int64)
        extra = rng.choice(num_classes, n - counts.sum(), replace=False)
        counts[extra] += 1
        return counts
    return rng.multinomial(n, props).astype(np.int64)


def _proportions(rng: np.random.Generator, num_clients: int, num_classes: int,
                 alpha: float | None) -> np.ndarray | None:
    if alpha is None:
        return None
    props = rng.dirichlet(np.full(num_classes, float(alpha)), size=num_clients)
    # Dirichlet draws with tiny alpha can underflow to NaN rows; give those one class.
    bad = ~np.isfinite(props).all(1)
    if bad.any():
        props[bad] = np.eye(num_classes)[rng.integers(0, num_classes, bad.sum())]
    return props


def _labels_from_counts(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    y = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(y)
    return y.astype(np.int64)


def generate_synthetic_clients(
    num_clients: int,
    samples_per_client: int,
    input_dim: int,
    num_classes: int,
    *,
    alpha: float | None = None,
    feature_shift: float = 0.0,
    quantity_skew: float = 0.0,
    local_test_fraction: float = 0.25,
    test_size: int = 1000,
    class_sep: float = 1.5,
    clusters_per_class: int = 2,
    seed: int = 0,
) -> ClientSet:
    """Seeded synthetic clients of a ``num_classes``-class task in ``input_dim`` features.

    Every class is a mixture of Gaussian clusters shared by all clients. ``alpha=None`` gives
    IID clients with stratified labels; ``alpha > 0`` draws each client's class mix from
    Dirichlet(alpha) (small alpha: few classes per client). ``feature_shift`` adds a
    per-client offset (std ``feature_shift``) to its features; ``quantity_skew`` spreads
    per-client sample counts (log-normal sigma). The global test set is IID and unshifted.
    """
    check_range("input_dim", input_dim, low=1, kind=int)
    check_range("num_classes", num_classes, low=2, kind=int)
    _check_common(num_clients, samples_per_client, num_classes, alpha, feature_shift,
                  quantity_skew, local_test_fraction)
    check_range("test_size", test_size, low=1, kind=int)
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, class_sep, (num_classes, clusters_per_class, input_dim))
    props = _proportions(rng, num_clients, num_classes, alpha)
    sizes = _client_sizes(rng, num_clients, samples_per_client, quantity_skew,
                          1 if alpha is not None else num_classes)
    shifts = rng.normal(0.0, feature_shift, (num_clients, input_dim)) if feature_shift else None

    def sample(labels: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
        cluster = rng.integers(0, clusters_per_class, len(labels))
        X = centers[labels, cluster] + rng.normal(0.0, 1.0, (len(labels), input_dim))
        if shift is not None:
            X = X + shift
        return X.astype(np.float32)

    Xtr, ytr, Xlo, ylo = [], [], [], []
    for i in range(num_clients):
        p = None if props is None else props[i]
        shift = None if shifts is None else shifts[i]
        y = _labels_from_counts(rng, _label_counts(rng, int(sizes[i]), p, num_classes))
        n_local = max(1, int(round(sizes[i] * local_test_fraction))) if local_test_fraction else 0
        yl = _labels_from_counts(rng, _label_counts(rng, n_local, p, num_classes))
        Xtr.append(sample(y, shift))
        ytr.append(y)
        Xlo.append(sample(yl, shift))
        ylo.append(yl)
    y_test = _labels_from_counts(rng, _label_counts(rng, test_size, None, num_classes))
    X_test = sample(y_test, None)
    info = {"source": "synthetic", "alpha": alpha, "feature_shift": feature_shift,
            "quantity_skew": quantity_skew, "seed": seed}
    return ClientSet(Xtr, ytr, Xlo, ylo, X_test, y_test.astype(np.int64), num_classes,
                     (input_dim,), info)


class _Pool:
    """Per-class index pools consumed without replacement, reshuffled when exhausted."""

    def __init__(self, y: np.ndarray, num_classes: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.by_class = [np.flatnonzero(y == c) for c in range(num_classes)]
        self.order = [rng.permutation(ix) for ix in self.by_class]
        self.pos = [0] * num_classes
        self.reused = 0

    def take(self, c: int, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if len(self.by_class[c]) == 0:
            raise DataError(f"Class {c} has no samples to give to a client.")
        out: list[np.ndarray] = []
        while n > 0:
            if self.pos[c] >= len(self.order[c]):
                self.order[c] = self.rng.permutation(self.by_class[c])
                self.pos[c] = 0
                self.reused += 1
            k = min(n, len(self.order[c]) - self.pos[c])
            out.append(self.order[c][self.pos[c]:self.pos[c] + k])
            self.pos[c] += k
            n -= k
        return np.concatenate(out)


def partition_dataset(
    data: Any,
    num_clients: int,
    samples_per_client: int | None = None,
    *,
    alpha: float | None = None,
    feature_shift: float = 0.0,
    quantity_skew: float = 0.0,
    local_test_fraction: float = 0.25,
    seed: int = 0,
) -> ClientSet:
    """Partition a ``core.data.Dataset`` across clients, with the same skews as the synthetic.

    Clients draw their training rows from the train split and their local test rows from the
    validation split (test split if there is none); the server's global test set is the test
    split. With ``samples_per_client=None`` the train split is shared out (about
    ``len(train) // num_clients`` each); when clients ask for more rows than the split holds,
    rows are reused and ``info["reused_pools"]`` says how often a class pool was recycled.
    """
    X, y = data.split("train")
    Xv, yv = data.split("val")
    if len(yv) == 0:
        Xv, yv = data.split("test")
    K = int(data.num_classes)
    if samples_per_client is None:
        check_range("num_clients", num_clients, low=1, kind=int)
        samples_per_client = max(1, len(y) // num_clients)
    _check_common(num_clients, samples_per_client, K, alpha, feature_shift, quantity_skew,
                  local_test_fraction)
    rng = np.random.default_rng(seed)
    props = _proportions(rng, num_clients, K, alpha)
    sizes = _client_sizes(rng, num_clients, samples_per_client, quantity_skew,
                          1 if alpha is not None else K)
    present = np.bincount(y, minlength=K) > 0
    if props is not None and not present.all():
        props = props * present
        props = props / np.maximum(props.sum(1, keepdims=True), 1e-12)
    train_pool, local_pool = _Pool(y, K, rng), _Pool(yv, K, rng)
    local_present = np.bincount(yv, minlength=K) > 0
    shape = tuple(X.shape[1:])
    shifts = rng.normal(0.0, feature_shift, (num_clients, *shape)) if feature_shift else None
    Xtr, ytr, Xlo, ylo = [], [], [], []
    for i in range(num_clients):
        p = None if props is None else props[i]
        counts = _label_counts(rng, int(sizes[i]), p, K)
        if p is None and not present.all():
            counts = _label_counts(rng, int(sizes[i]), present / present.sum(), K)
        ix = np.concatenate([train_pool.take(c, int(counts[c])) for c in range(K)])
        ix = ix[rng.permutation(len(ix))]
        n_local = max(1, int(round(sizes[i] * local_test_fraction))) if local_test_fraction else 0
        lp = p if p is not None else np.full(K, 1.0 / K)
        lp = lp * local_present
        lp = lp / lp.sum() if lp.sum() > 0 else local_present / local_present.sum()
        lcounts = rng.multinomial(n_local, lp)
        jx = np.concatenate([local_pool.take(c, int(lcounts[c])) for c in range(K)])
        shift = 0.0 if shifts is None else shifts[i].astype(np.float32)
        Xtr.append((X[ix] + shift).astype(np.float32))
        ytr.append(y[ix].astype(np.int64))
        Xlo.append((Xv[jx] + shift).astype(np.float32))
        ylo.append(yv[jx].astype(np.int64))
    Xt, yt = data.split("test")
    info = {"source": getattr(data, "name", "dataset"), "alpha": alpha,
            "feature_shift": feature_shift, "quantity_skew": quantity_skew, "seed": seed,
            "reused_pools": train_pool.reused}
    return ClientSet(Xtr, ytr, Xlo, ylo, Xt.astype(np.float32), yt.astype(np.int64), K,
                     shape, info)


def padded(arrays: Sequence[np.ndarray], dtype: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged per-client arrays into ``[clients, max_n, ...]`` plus their lengths."""
    n = np.array([len(a) for a in arrays], dtype=np.int64)
    nmax = max(int(n.max(initial=0)), 1)
    first = arrays[0]
    out = np.zeros((len(arrays), nmax, *first.shape[1:]), dtype=dtype or first.dtype)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out, n
