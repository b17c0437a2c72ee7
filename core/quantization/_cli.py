"""``studio quantize``: quantize a run folder or model file and write DIR/report.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Add the ``quantize`` verb; ``--method`` choices are read from the registry."""
    from core.cli import add_common, add_output_name, config_default
    from core.quantization._config import (
        CALIBRATIONS,
        QUANT_TYPES,
        TORCH_BACKENDS,
        OrtInt4Config,
        OrtStaticInt8Config,
        TorchQatInt8Config,
    )

    def method_default(cls: type, name: str) -> str:
        return f"(default: {config_default(cls, name)})"
    from core.quantization._check import method_kinds_help
    from core.registry import list_methods

    p = subparsers.add_parser(
        "quantize", help="quantize a model (INT8 / FP16 / BF16 / INT4) and measure it",
        description="Quantize a model and time it side by side with its FP32 baseline.")
    p.add_argument("--model", required=True, type=Path,
                   help="run folder written by studio, .onnx, TorchScript .pt or .pt2")
    p.add_argument("--method", required=True, choices=list_methods("quantization"),
                   help=method_kinds_help())
    add_output_name(p)
    p.add_argument("--calibration", choices=CALIBRATIONS, default=None,
                   help="ort-static-int8 calibration "
                        f"{method_default(OrtStaticInt8Config, 'calibration')}")
    p.add_argument("--calibration-size", type=int, default=None,
                   help="rows of the TRAIN split used to calibrate (default 256, or all "
                   "when fewer)")
    p.add_argument("--per-channel", action="store_true", default=None,
                   help="ort-static-int8 / torch-*: one scale per output channel (default: "
                   "per tensor)")
    p.add_argument("--quant-types", choices=QUANT_TYPES, default=None,
                   help="ort-static-int8 activation/weight types "
                        f"{method_default(OrtStaticInt8Config, 'quant_types')}")
    p.add_argument("--quantize-conv", action="store_true", default=None,
                   help="ort-dynamic-int8: quantize convolutions too (ConvInteger, often slower)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                   help="INT8 in 7 bits where a CPU without VNNI would saturate (adds of "
                   "uint8 x int8 pairs in 16 bits): ort-static-int8 / ort-dynamic-int8 "
                   "quantize weights to 7 bits (default: on, for U8S8, unless this CPU has INT8 "
                   "dot-product instructions), torch-*-int8 activations to 7 bits (default: "
                   "on); --no-reduce-range keeps full 8 bits")
    p.add_argument("--block-size", type=int, default=None,
                   help=f"ort-int4 block size {method_default(OrtInt4Config, 'block_size')}")
    p.add_argument("--asymmetric", action="store_true", default=None,
                   help="ort-int4: asymmetric blocks (with zero points)")
    p.add_argument("--backend", choices=TORCH_BACKENDS, default=None,
                   help="torch-static-int8 / torch-qat-int8 kernel library "
                        f"{method_default(TorchQatInt8Config, 'backend')}")
    p.add_argument("--epochs", type=int, default=None,
                   help="torch-qat-int8 fine-tune epochs "
                        f"{method_default(TorchQatInt8Config, 'epochs')}")
    p.add_argument("--lr", type=float, default=None,
                   help=f"torch-qat-int8 learning rate {method_default(TorchQatInt8Config, 'lr')}")
    p.add_argument("--no-compile", dest="compile", action="store_false", default=None,
                   help="torch-* INT8: time the program uncompiled (much slower, no compile "
                        "wait; default: torch.compile, unless STUDIO_TORCH_COMPILE=0)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="max validation accuracy drop; keeps the most sensitive layers in "
                        "float (default: none, every layer quantized)")
    p.add_argument("--keep-float", dest="exclude", nargs="+", default=None, metavar="LAYER",
                   help="layers kept in float (mixed precision by layer): a layer's name as "
                        "the sensitivity report lists it, or its module's (e.g. features.0) "
                        "(default: none)")
    p.add_argument("--sensitivity", action="store_true", default=None,
                   help="measure the accuracy change of quantizing each layer alone")
    add_common(p, data_default=None)
    p.set_defaults(func=_cmd_quantize)


def _cmd_quantize(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.errors import InvalidParameterError
    from core.quantization._verb import make_config, quantize

    if not args.model.exists():
        raise InvalidParameterError(
            "model", "a run folder or model file (train one first: studio train --model cnn "
            "--data digits --out DIR)", str(args.model))
    options = {
        "calibration": args.calibration, "calibration_size": args.calibration_size,
        "per_channel": args.per_channel, "quant_types": args.quant_types,
        "quantize_conv": args.quantize_conv, "block_size": args.block_size,
        "symmetric": False if args.asymmetric else None, "backend": args.backend,
        "epochs": args.epochs, "lr": args.lr, "compile": args.compile,
        "reduce_range": args.reduce_range, "tolerance": args.tolerance,
        "sensitivity": args.sensitivity, "seed": args.seed, "exclude": args.exclude,
    }
    config = make_config(args.method, options)
    data = args.data
    if data is not None:
        from core.data import load_dataset

        data = load_dataset(data, label_column=args.label_column, seed=args.seed,
                            normalize=args.normalize)
    result = quantize(args.model, data, config, out_dir=args.out,
                      callbacks=progress_callbacks("quantize"),
                      measure_options={"threads": args.threads},
                      output_name=args.output_name)
    print_summary(result.report, args.out)
    kept = (result.report.get("quantization") or {}).get("kept_float")
    if kept:
        print(f"kept in float: {', '.join(kept)}")
    return args.out
