"""Data sets: built-in ones that ship with scikit-learn, and user ``.csv``/``.npz`` files."""

from core.data._dataset import BUILTIN, Dataset, DataSpec, list_datasets, load_dataset

__all__ = ["BUILTIN", "DataSpec", "Dataset", "list_datasets", "load_dataset"]
