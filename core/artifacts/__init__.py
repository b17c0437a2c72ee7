"""Safe load/save/export of models, run folders with report.json, and download bundles."""

from core.artifacts._load import LoadedModel, check_onnx, detect_format, load_model
from core.artifacts._report import (
    SCHEMA,
    OutputFolderError,
    allow_overwrite,
    build_report,
    check_out_dir,
    clean_orphans,
    is_run_folder,
    make_bundle,
    model_card,
    new_run_id,
    ratios,
    read_report,
    speed_warnings,
    staging,
    write_report,
    write_run,
)
from core.artifacts._save import export_onnx, file_entry, save_model
from core.artifacts._trust import (
    UntrustedModelError,
    model_code_trusted,
    server_allows_model_code,
    trusted_model_code,
)

__all__ = [
    "SCHEMA",
    "LoadedModel",
    "UntrustedModelError",
    "OutputFolderError",
    "allow_overwrite",
    "build_report",
    "check_out_dir",
    "clean_orphans",
    "check_onnx",
    "detect_format",
    "export_onnx",
    "file_entry",
    "is_run_folder",
    "load_model",
    "make_bundle",
    "model_card",
    "model_code_trusted",
    "new_run_id",
    "ratios",
    "read_report",
    "save_model",
    "server_allows_model_code",
    "speed_warnings",
    "staging",
    "trusted_model_code",
    "write_report",
    "write_run",
]
