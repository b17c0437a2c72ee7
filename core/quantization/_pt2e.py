"""torch INT8 through torchao's PT2E flow, and the compiled form users run it in.

export (batch dynamic) -> ``prepare_pt2e`` / ``prepare_qat_pt2e`` with ``X86InductorQuantizer``
-> calibrate or fine-tune -> ``convert_pt2e`` -> export again and save as ``torch.export``
``.pt2``. PT2E graphs are fast only once lowered by ``torch.compile`` (inductor, freezing):
uncompiled they run quantize/dequantize in float and are slower than FP32 (MEASURED.md), so
``CompiledProgram`` compiles the loaded program once per deployment batch size and thread count
and times the compile separately (latency is timed on the warm compiled graphs only).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import Any, Iterator, Sequence

from core.errors import StudioError, UnsupportedModelError

__all__ = ["HOW_TO_RUN", "compile_program", "export_program", "pt2e_quantize",
           "split_reused_modules"]

HOW_TO_RUN = ("import torch, torchao; torch._inductor.config.freezing = True; "
              "m = torch.compile(torch.export.load('model.pt2').module(), dynamic=False); "
              "with torch.inference_mode(): m(x)  # the first call per batch size and "
              "thread count compiles; time the later ones")
MODES = ("static", "dynamic", "qat")


@contextlib.contextmanager
def _torchao_import_quiet() -> Iterator[None]:
    """Importing torchao 0.18 on CPU logs one warning per GPU-only extension it cannot load
    ("Failed to load ..._C_mxfp8...") and one about its own Enum registration with torch's
    pytree: noise about torchao's build, not about the user's model."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before):
            lg.setLevel(level)


def _pt2e() -> Any:
    """torchao's PT2E entry points (imported lazily: torchao imports torch._dynamo)."""
    try:
        with _torchao_import_quiet(), warnings.catch_warnings():
            # torchao's import decorates with torch.jit.script_method (deprecated upstream; not
            # ours to fix, and nothing the studio scripts).
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated",
                                    category=DeprecationWarning)
            from torchao.quantization import pt2e
            from torchao.quantization.pt2e import quantize_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError:
        raise StudioError("torch INT8 methods need torchao (pip install 'torchao>=0.18'); "
                          "it is not installed.") from None
    return pt2e, quantize_pt2e, x86


def export_program(model: Any, example: Any, *, what: str = "the model") -> Any:
    """``torch.export`` with a dynamic batch axis; a clear error when the model cannot."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnsupportedModelError(
            f"torch.export could not export {what} with a dynamic batch ({why}). Write the "
            "forward without Python control flow on values and without the batch size as a "
            "number (x.flatten(1), not x.reshape(len(x), -1)), or use an ort-* method.") from None


def split_reused_modules(gm: Any, model: Any) -> int:
    """Give each call of a parameterless module used more than once (e.g. one ``nn.ReLU``
    applied after two convolutions) its own name, so X86InductorQuantizer sees one partition
    per call (else: "Input partition has more than one output node").

    Only provenance metadata changes (``nn_module_stack``, what the quantizer groups by; the
    export marks the k-th call ``@k``); the computation, so every output, stays the same.
    Returns the number of calls renamed.
    """
    renamed: set[tuple[str, str]] = set()
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if not stack:
            continue
        key, (fqn, cls) = list(stack.items())[-1]
        call = key.rpartition("@")[2] if "@" in key else ""
        if not call.isdigit() or _has_weights(model, fqn):
            continue
        node.meta["nn_module_stack"] = {**stack, key: (f"{fqn}@{call}", cls)}
        source = node.meta.get("source_fn_stack")
        if source:
            node.meta["source_fn_stack"] = [*source[:-1], (f"{source[-1][0]}@{call}",
                                                           source[-1][1])]
        renamed.add((fqn, call))
    return len(renamed)


def _has_weights(model: Any, fqn: str) -> bool:
    try:
        module = model.get_submodule(fqn)
    except AttributeError:
        return True  # unknown: leave it as it is
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _quantizer(x86: Any, mode: str, chosen: Sequence[str], excluded: Sequence[str],
               layerwise: bool, reduce_range: bool) -> Any:
    config = x86.get_default_x86_inductor_quantization_config(
        is_qat=mode == "qat", is_dynamic=mode == "dynamic", reduce_range=reduce_range)
    quantizer = x86.X86InductorQuantizer()
    if layerwise:  # only the chosen layers (e.g. per-layer sensitivity)
        for name in chosen:
            quantizer.set_module_name_qconfig(name, config)
        return quantizer
    if mode == "dynamic":  # Linear layers only (the global recipe would take convolutions)
        import torch

        quantizer.set_module_type_qconfig(torch.nn.Linear, config)
    else:
        quantizer.set_global(config)
    for name in excluded:  # kept in float
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def _drop_unused_weights(gm: Any) -> None:
    """convert_pt2e folds weights into INT8 constants; the float originals it leaves behind
    would double the saved file."""
    gm.graph.eliminate_dead_code()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            module = gm.get_submodule(owner) if owner else gm
            delattr(module, attr)
    gm.recompile()


def pt2e_quantize(model: Any, example: Any, *, mode: str, chosen: Sequence[str],
                  all_layers: Sequence[str], layerwise: bool = False, calibrate: Any = None,
                  fine_tune: Any = None, reduce_range: bool = True
                  ) -> tuple[Any, dict[str, Any]]:
    """The quantized ``ExportedProgram`` of ``model`` and what was done.

    ``calibrate(module)`` feeds calibration batches (static); ``fine_tune(module)`` trains the
    fake-quantized module in place (QAT). ``chosen`` layers are quantized; the others in
    ``all_layers`` stay float. ``layerwise``: only the chosen layers' own patterns (the
    global recipe, which also quantizes pooling and matmuls, otherwise).

    ``reduce_range``: activations in 7 bits (0..127). On a CPU without VNNI (AVX2, AVX-512
    without VNNI) oneDNN's INT8 kernels add pairs of uint8 x int8 products in 16 bits
    (vpmaddubsw), which saturate with full-range activations: the compiled program then lost
    up to 28 points that the reference graph kept (measured, README Quantization). 7 bits cost
    no measured accuracy and the same kernels run, so it is the default on every CPU (the
    artifact may be deployed on another one).
    """
    import torch

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    pt2e, qpt2e, x86 = _pt2e()
    model.train(mode == "qat")
    gm = export_program(model, example).module()
    renamed = split_reused_modules(gm, model)
    excluded = [name for name in all_layers if name not in chosen]
    quantizer = _quantizer(x86, mode, chosen, excluded, layerwise, reduce_range)
    if mode == "qat":
        prepared = qpt2e.prepare_qat_pt2e(gm, quantizer)
        pt2e.allow_exported_model_train_eval(prepared)  # the train loop calls .train()
        fine_tune(prepared)
        prepared.eval()
    else:
        prepared = qpt2e.prepare_pt2e(gm, quantizer)
        if calibrate is not None:
            with torch.no_grad():
                calibrate(prepared)
    converted = qpt2e.convert_pt2e(prepared)
    _drop_unused_weights(converted)
    program = export_program(converted, example, what="the quantized model")
    return program, {"reused_module_calls_split": renamed, "quantizer": "X86InductorQuantizer",
                     "flow": "torchao PT2E", "mode": mode, "reduce_range": reduce_range}


def compile_program(module: Any, *, input_shape: Sequence[int], batch_sizes: Sequence[int],
                    threads: int | Sequence[int] = 1) -> Any:
    """``module`` compiled by inductor (freezing) at each batch size and thread count, each
    compile timed (``.compile_s``, not part of any latency)."""
    counts = (threads,) if isinstance(threads, int) else tuple(threads)
    return _compiled_class()(module, input_shape=input_shape, batch_sizes=batch_sizes,
                             threads=counts)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _compiled_class() -> type:
    import torch

    class CompiledProgram(torch.nn.Module):
        """A loaded ``.pt2`` program run through ``torch.compile`` at fixed batch sizes and
        thread counts, as inference (``torch.inference_mode``).

        dynamo guards each compiled graph on the batch size, torch's thread count, grad mode
        and whether the input is an inference tensor; a call that misses every guard would
        silently recompile or (with recompiles off) run the plain graph. So every target
        (batch, threads) is compiled up front, calls run under ``fail_on_recompile``, and a
        call no compiled graph fits runs uncompiled and is counted in ``uncompiled_calls``.
        torchao's ``prepare_qat_pt2e`` (a strict ``torch.export``) drops every compiled graph
        in the process (measured): compile after any QAT run, or its calls are all counted.
        Other batch sizes are cut into chunks of the compiled sizes (the last one padded).
        ``compile_s`` holds seconds per batch size (``"64"``; ``"64@2t"`` for a later thread
        count); ``compile_error`` says why it runs uncompiled when inductor is unavailable.
        """

        def __init__(self, module: Any, *, input_shape: Sequence[int],
                     batch_sizes: Sequence[int], threads: Sequence[int]) -> None:
            super().__init__()
            self.program = module
            self.sizes = sorted({int(b) for b in batch_sizes})
            self.threads = list(dict.fromkeys(int(t) for t in threads)) or [1]
            self.compile_s: dict[str, float] = {}
            self.compile_error: str | None = None
            self.uncompiled_calls = 0
            self.first_miss: str | None = None
            # dynamic=False: a second batch size compiled with automatic dynamic shapes fails
            # in inductor 2.13's INT8 conv lowering (assert_size_stride); one graph per size.
            # Not a submodule: its weights are the program's (counted once).
            object.__setattr__(self, "_compiled", torch.compile(module, dynamic=False))
            _warm(self, tuple(input_shape))

        @property
        def compiled(self) -> bool:
            return self._compiled is not None

        forward = _forward

    return CompiledProgram


def _warm(cp: Any, shape: tuple[int, ...]) -> None:
    """Compile ``cp`` at every (thread count, batch size); None and the reason on failure."""
    import torch

    from core.measure._lock import torch_threads

    graphs = len(cp.threads) * len(cp.sizes)  # one graph each; dynamo keeps 8 by default
    limit = torch._dynamo.config.patch(recompile_limit=max(graphs, 8))
    try:
        with limit:
            _warm_all(cp, shape, torch_threads)
    except Exception as exc:  # no C compiler, or inductor cannot lower a pattern
        cp.compile_error = _first_line(exc)
        object.__setattr__(cp, "_compiled", None)


def _warm_all(cp: Any, shape: tuple[int, ...], torch_threads: Any) -> None:
    for n, threads in enumerate(cp.threads):
        with torch_threads(threads):  # inductor fixes the count in the code it generates
            for size in cp.sizes:
                key = str(size) if n == 0 else f"{size}@{threads}t"
                cp.compile_s[key] = _compile_one(cp._compiled, size, shape)


def _compile_one(compiled: Any, size: int, shape: tuple[int, ...]) -> float:
    """Seconds of the first (compiling) call at one batch size."""
    import torch

    start = time.perf_counter()
    # freezing (weights as constants, INT8 convs prepacked for oneDNN); as a torch.compile
    # option instead it fails on onednn.qconv_prepack (2.13).
    with torch._inductor.config.patch(freezing=True), torch.inference_mode(), \
            warnings.catch_warnings():
        # inductor 2.13's oneDNN lowering copies a tensor with torch.tensor() (its own code,
        # harmless): not the user's to act on.
        warnings.filterwarnings("ignore", message="To copy construct from a tensor",
                                category=UserWarning)
        # made inside inference_mode like the Predictor's inputs: an inference tensor
        compiled(torch.zeros(size, *shape))
    return round(time.perf_counter() - start, 3)


def _forward(cp: Any, x: Any) -> Any:
    import torch

    if cp._compiled is None or _flop_counting():
        return cp.program(x)
    with torch.inference_mode():
        if not x.is_inference():
            x = x.clone()  # an inference tensor, as the graphs were compiled for
        if len(x) in cp.sizes:
            return _run(cp, x)
        return _in_chunks(cp, x)


def _run(cp: Any, x: Any) -> Any:
    """One compiled call; the plain graph (counted) when no compiled graph's guards fit."""
    import torch

    try:
        with torch.compiler.set_stance("fail_on_recompile"):
            return cp._compiled(x)
    except RuntimeError as exc:
        if "fail_on_recompile" not in str(exc):
            raise
        if not cp.uncompiled_calls:  # the first miss's guard failures, to say why
            cp.first_miss = " ".join(str(exc).split("guard failure(s):")[-1].split())[:300]
    cp.uncompiled_calls += 1  # e.g. a thread count it was not compiled for
    return cp.program(x)


def _in_chunks(cp: Any, x: Any) -> Any:
    """A batch of another size as chunks of the compiled sizes (the last one padded)."""
    import torch

    n, big = len(x), cp.sizes[-1]
    parts = []
    for i in range(0, n, big):
        chunk = x[i : i + big]
        size = next(s for s in cp.sizes if s >= len(chunk))
        if size != len(chunk):
            pad = chunk[-1:].expand(size - len(chunk), *chunk.shape[1:])
            chunk = torch.cat([chunk, pad])
        parts.append(_run(cp, chunk)[: min(big, n - i)])
    return torch.cat(parts)


def _flop_counting() -> bool:
    """A dispatch mode (e.g. the MAC counter) is active: run the plain graph for it."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return _get_current_dispatch_mode() is not None
