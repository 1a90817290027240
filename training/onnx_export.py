"""Sequence classifiers as ONNX graphs run by ONNX Runtime: the quantize table's `onnx` (the
fp32 graph) and `onnx_int8` (ONNX Runtime's dynamic int8: int8 weights of every MatMul,
activations quantized per call, and uint8 embedding tables with one scale per table)
variants. ONNX Runtime is what a team shipping a student into an IDE or onto a laptop runs
instead of torch; these variants are scored and timed like the torch ones, so the table says
what the runtime costs or saves.

    python -m training.onnx_export FOLDER [--out DIR]   # a saved classifier -> model.onnx, model_int8.onnx
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import tempfile
import uuid
import warnings
import weakref
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from training.checks import OneLineParser, UsageError
from training.staging import publish, remove_stale, staging_path

ONNX_VARIANTS = ("onnx", "onnx_int8")
GRAPH_FILES = {"onnx": "model.onnx", "onnx_int8": "model_int8.onnx"}  # in a saved model's folder
OPSET = 17  # ONNX Runtime 1.31 runs opsets up to 23; 17 is what torch's TorchScript exporter knows best


class _Positional(nn.Module):
    """`model(**dict(zip(names, args))).logits`: the exporter passes inputs by position."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        out = self.model(**dict(zip(self.names, args, strict=True)))
        return out.logits if hasattr(out, "logits") else out


# Why a BiLSTM_soft has no graph: its forward packs the padded sequences (pack_padded_sequence),
# which torch's TorchScript exporter fails on (a C++ range error after a ~90-line IR dump)
BILSTM_UNTRACEABLE = "the TorchScript ONNX exporter cannot trace BiLSTM_soft's packed sequences"


def _dynamic_axes(names: tuple[str, ...]) -> dict:
    """Batch and sequence axes free; the two sides of a pair have their own lengths."""
    return {n: {0: "batch", 1: "seq_b" if n.endswith("_b") else "seq"} for n in names} | {"logits": {0: "batch"}}


def export_onnx(model: nn.Module, example: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write `model` (a classifier called with keyword tensors, e.g. a student, a BiLSTM_soft or
    the teacher) as an fp32 ONNX graph traced on `example` (B, S) tensors; CPU, eval mode.
    RuntimeError when the exporter cannot trace it."""
    names = tuple(example)
    # eval mode on the wrapper too: the exporter restores the wrapper's mode afterwards, and a
    # fresh module is in training mode, which would leave `model`'s dropout on
    wrapped = _Positional(model.cpu(), names).eval()
    args = tuple(example[n].cpu() for n in names)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(wrapped, args, str(path), input_names=list(names), output_names=["logits"],
                              dynamic_axes=_dynamic_axes(names), opset_version=OPSET, dynamo=False)
    except Exception as err:  # the exporter raises many types; the row records it as an error
        raise RuntimeError(f"ONNX export failed: {type(err).__name__}: {err}") from err
    return Path(path)


@contextlib.contextmanager
def _ort_errors(what: str):
    """ONNX Runtime's and onnx's exceptions derive from Exception, not RuntimeError: re-raise
    them as RuntimeError, which a quantize row records instead of failing its trial."""
    try:
        yield
    except RuntimeError:
        raise
    except Exception as err:
        raise RuntimeError(f"{what}: {type(err).__name__}: {err}") from err


def _replace_from(source: Path, target: Path) -> None:
    """Copy `source` over `target` atomically: a reader sees the old file or the new one."""
    staging = staging_path(target)
    try:
        shutil.copyfile(source, staging)
        publish(staging, target)
    except OSError as err:
        raise RuntimeError(f"cannot write {target}: {err}") from err
    finally:
        staging.unlink(missing_ok=True)


def _session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: not a warning per unused initializer
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return options


def quantize_onnx(src: Path, dst: Path) -> Path:
    """ONNX Runtime's dynamic int8 of `src` into `dst` (MatMul weights int8, embedding tables
    uint8), after its basic graph optimisations: they fold the exporter's Identity copies of
    weights a pair model's two encodes share, which the quantizer would otherwise keep in fp32
    beside their int8 copies. RuntimeError when ONNX Runtime refuses the graph."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = dst.with_name(dst.stem + ".folded.onnx")
    options = _session_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    # quantize_dynamic logs a pre-processing hint through the root logger (which, unconfigured,
    # would also get a stderr handler): silenced for the call
    disabled = logging.root.manager.disable  # the caller's own level, restored after
    logging.disable(max(disabled, logging.WARNING))
    try:
        with _ort_errors("ONNX int8 quantization failed"):
            ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
            quantize_dynamic(str(folded), str(dst), weight_type=QuantType.QInt8)
    finally:
        logging.disable(disabled)
        folded.unlink(missing_ok=True)
    return dst


def _work_dir() -> Path:
    """A new folder for one object's graphs in the temp folder, named as a staging path of this
    process, so that the next one made removes those of killed processes (a killed trial
    left a teacher's 90 MB graph and its int8 copy behind every time)."""
    root = Path(tempfile.gettempdir())
    remove_stale(root, "onnx-*")
    work = staging_path(root / f"onnx-{uuid.uuid4().hex[:12]}")
    work.mkdir()
    return work


class OnnxClassifier(nn.Module):
    """`model` exported to ONNX (and, for `onnx_int8`, quantized), run by ONNX Runtime on the
    CPU. Called like the torch model (keyword tensors), it returns an object whose `.logits`
    is a torch tensor, so `predict_logits` and the latency harness take it unchanged.

    The graph is traced on `example` (its input names; batch and sequence axes free). A call
    without `token_type_ids` where the graph has them gets zeros, as a BERT would (the latency
    harness's random inputs carry none). One session per torch thread count: the harness sets
    torch's count, and an ONNX Runtime session fixes its own when it starts (`prepare` opens
    it before the harness times anything). `size_bytes`: the
    graph file, weights included.
    """

    def __init__(self, model: nn.Module, variant: str, example: dict[str, torch.Tensor]):
        super().__init__()
        if variant not in ONNX_VARIANTS:
            raise ValueError(f"variant must be one of {ONNX_VARIANTS}, got {variant!r}")
        work = _work_dir()
        weakref.finalize(self, shutil.rmtree, work, ignore_errors=True)  # removed with this object
        path = export_onnx(model, example, work / "model.onnx")
        if variant == "onnx_int8":
            path = quantize_onnx(path, path.with_name("model_int8.onnx"))
        self.path, self.variant = path, variant
        self.size_bytes = path.stat().st_size
        self._sessions: dict[int, object] = {}
        # the graph's inputs: the exporter drops those the model never reads
        self.names = tuple(i.name for i in self._session().get_inputs())

    def save(self, folder: Path) -> Path:
        """Copy the graph (the one this object scored and timed) into `folder` as
        `model.onnx` / `model_int8.onnx`, atomically (staged, then renamed); RuntimeError
        when it cannot be written."""
        target = Path(folder) / GRAPH_FILES[self.variant]
        _replace_from(self.path, target)
        return target

    def prepare(self) -> None:
        """Open the session for torch's current thread count now (the latency harness calls
        it untimed, once it has set the count), so no timed call includes building it."""
        self._session()

    def _session(self):
        import onnxruntime as ort

        threads = torch.get_num_threads()
        if threads not in self._sessions:
            with _ort_errors("ONNX Runtime cannot load the graph"):
                self._sessions[threads] = ort.InferenceSession(
                    str(self.path), _session_options(threads), providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def forward(self, **inputs):
        if "token_type_ids" in self.names and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        missing = [n for n in self.names if n not in inputs]
        if missing:
            raise RuntimeError(f"ONNX graph needs inputs {list(self.names)}, missing {missing}")
        feed = {n: inputs[n].detach().cpu().numpy() for n in self.names}
        with _ort_errors("ONNX Runtime run failed"):
            (logits,) = self._session().run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def _tracing_example(config, seq_len: int) -> dict[str, torch.Tensor]:
    """Two rows of `seq_len` random tokens a side, the second half padding, so the padding
    path is traced; `token_type_ids` too for a one-sequence BERT (its pair segments), which
    the graph must then take as an input."""
    from training.evaluate import random_inputs

    pair = config.model_type == "pair-encoder"  # a bi-encoder: two inputs
    encoder = config.encoder if pair else config.to_dict()
    example = random_inputs(encoder["vocab_size"], seq_len, pair=pair, batch=2)
    half = max(1, seq_len // 2)
    for ids, mask in (("input_ids", "attention_mask"), ("input_ids_b", "attention_mask_b")):
        if ids in example:
            example[ids][1, half:] = encoder.get("pad_token_id") or 0
            example[mask][1, half:] = 0
    if not pair and encoder.get("type_vocab_size", 1) > 1:
        example["token_type_ids"] = torch.zeros_like(example["input_ids"])
    return example


def export_folder(folder: str | Path, out: str | Path | None = None, seq_len: int = 64) -> list[Path]:
    """A saved classifier folder (a student, the fine-tuned teacher: what
    `AutoModelForSequenceClassification` loads) -> `model.onnx` and `model_int8.onnx` in `out`
    (default: the folder). ValueError for a folder that is not such a model or a `seq_len`
    its position table cannot hold; RuntimeError when the export fails."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from training.onnx_infer import usable_positions  # imports onnxruntime: only when exporting

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        hint = f" (a BiLSTM_soft folder: {BILSTM_UNTRACEABLE})" if (folder / "bilstm_config.json").is_file() else ""
        raise ValueError(f"{folder}: no config.json, not a saved transformers classifier{hint}")
    try:  # the config first: a bad --seq-len is refused before the weights load
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        encoder = config.encoder if config.model_type == "pair-encoder" else config.to_dict()
        positions = usable_positions(encoder)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{folder}: cannot read the classifier's config: {err}") from None
    if not 1 <= seq_len <= positions:
        raise ValueError(f"--seq-len: must be in [1, {positions}] for this model, got {seq_len}")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{folder}: cannot load the classifier: {err}") from None
    out = Path(out) if out is not None else folder
    out.mkdir(parents=True, exist_ok=True)
    # both graphs made aside first: a failure leaves the folder's files as they were
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as work:
        fp32 = export_onnx(model, _tracing_example(model.config, seq_len), Path(work) / GRAPH_FILES["onnx"])
        int8 = quantize_onnx(fp32, Path(work) / GRAPH_FILES["onnx_int8"])
        for made in (fp32, int8):
            _replace_from(made, out / made.name)
    return [out / fp32.name, out / int8.name]


def _error(err: Exception, status: int) -> int:
    print(f"python -m training.onnx_export: error: {' '.join(str(err).split())}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Export a saved folder; bad input: one stderr line, exit 2; a failed export: exit 1."""
    parser = OneLineParser(prog="python -m training.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a saved classifier folder (a distill row's model_dir)")
    parser.add_argument("--out", help="where to write model.onnx and model_int8.onnx (default: the folder)")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens a side of the tracing input")
    try:
        args = parser.parse_args(argv)
        paths = export_folder(args.folder, args.out, args.seq_len)
    except (UsageError, ValueError, OSError) as err:
        return _error(err, 2)
    except RuntimeError as err:
        return _error(err, 1)
    for path in paths:
        print(f"{path}  {path.stat().st_size / 1e6:.3f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
