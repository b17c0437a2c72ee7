"""Data sets: built-in ones that ship with scikit-learn, and user ``.csv``/``.npz`` files.

User files are taken as given (``normalize=True`` asks for standardization) and their sizes
are checked against the STUDIO_MAX_DATA_* limits before loading (``core.limits``).
"""

from core.data._dataset import (
    BUILTIN,
    BUILTIN_SIZES,
    NO_PREPROCESSING,
    Dataset,
    DataSpec,
    apply_preprocessing,
    class_mapping,
    class_order_warning,
    dataset_from_spec,
    fed_to,
    list_datasets,
    load_dataset,
    npz_headers,
    read_csv_frame,
    read_npz,
    spec_inputs,
    split_sizes,
)

__all__ = [
    "BUILTIN",
    "BUILTIN_SIZES",
    "NO_PREPROCESSING",
    "DataSpec",
    "Dataset",
    "apply_preprocessing",
    "class_mapping",
    "class_order_warning",
    "dataset_from_spec",
    "fed_to",
    "list_datasets",
    "load_dataset",
    "npz_headers",
    "read_csv_frame",
    "read_npz",
    "spec_inputs",
    "split_sizes",
]
