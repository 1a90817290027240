"""Sequence classifiers as ONNX graphs run by ONNX Runtime: the quantize table's `onnx` (the
fp32 graph) and `onnx_int8` (ONNX Runtime's dynamic int8: int8 weights of every MatMul and
LSTM, activations quantized per call, and uint8 embedding tables with one scale per table)
variants. ONNX Runtime is what a team shipping a student into an IDE or onto a laptop runs
instead of torch; these variants are scored and timed like the torch ones, so the table says
what the runtime costs or saves.

    python -m training.onnx_export FOLDER [--out DIR]   # a saved classifier -> model.onnx, model_int8.onnx
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
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
from training.staging import check_writable_folder, publish, remove_stale, staging_path

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


def _unshare_lstm_weights(path: Path) -> None:
    """Give each LSTM node of the graph at `path` its own copy of weights it shares with an
    earlier one (in place). A pair BiLSTM_soft reads both inputs with one LSTM: four nodes,
    two weight sets. ONNX Runtime's LSTM quantizer rewrites a node's weight initializers in
    place, so the next node sharing them read them transposed: the int8 graph's margins
    correlated 0.01 with the fp32 graph's. Each copy is int8 after quantizing, so the graph
    holds the LSTM's weights twice at a quarter of their fp32 bytes each."""
    import onnx

    model = onnx.load(str(path))
    if not any(n.op_type == "LSTM" for n in model.graph.node):
        return  # a student's or the teacher's graph: nothing shared by LSTM nodes, nothing rewritten
    initializers = {t.name: t for t in model.graph.initializer}
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if node.op_type != "LSTM":
            continue
        for i, name in enumerate(node.input):
            if name not in initializers:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__node{index}"  # the node's position: unique in the graph
                model.graph.initializer.append(copy)
                node.input[i] = copy.name
            seen.add(name)
    onnx.save(model, str(path))


def quantize_onnx(src: Path, dst: Path) -> Path:
    """ONNX Runtime's dynamic int8 of `src` into `dst` (MatMul and LSTM weights int8,
    embedding tables uint8), after its basic graph optimisations: they fold the exporter's
    Identity copies of weights a pair model's two encodes share, which the quantizer would
    otherwise keep in fp32 beside their int8 copies (LSTM nodes then get their own copies:
    `_unshare_lstm_weights`). RuntimeError when ONNX Runtime refuses the graph."""
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
            _unshare_lstm_weights(folded)
            # reduce_range: 7-bit weights. Without VNNI (AVX2 only, most laptops) ONNX Runtime's
            # u8 x s8 kernel (VPMADDUBSW) saturates on 8-bit ones: a BiLSTM_soft graph's int8
            # margins correlated 0.980 with torch's there, 0.9995 with reduce_range (a 2-core AMD
            # EPYC without AVX-512, 2026-12-07); the graph is shipped, so it must hold on any CPU
            quantize_dynamic(str(folded), str(dst), weight_type=QuantType.QInt8, reduce_range=True)
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


def _tracing_example(vocab: int, pad_id: int, pair: bool, seq_len: int,
                     token_types: bool = False) -> dict[str, torch.Tensor]:
    """Two rows of `seq_len` random tokens a side, the second half padding, so the padding
    path is traced; `token_types` adds `token_type_ids` (a one-sequence BERT's pair
    segments), which the graph must then take as an input."""
    from training.evaluate import random_inputs

    example = random_inputs(vocab, seq_len, pair=pair, batch=2)
    half = max(1, seq_len // 2)
    for ids, mask in (("input_ids", "attention_mask"), ("input_ids_b", "attention_mask_b")):
        if ids in example:
            example[ids][1, half:] = pad_id
            example[mask][1, half:] = 0
    if token_types:
        example["token_type_ids"] = torch.zeros_like(example["input_ids"])
    return example


def _check_seq_len(seq_len: int, positions: int | None) -> None:
    """ValueError naming --seq-len unless it is in [1, positions] (>= 1 without a position table)."""
    if seq_len < 1 or (positions is not None and seq_len > positions):
        bound = f"be in [1, {positions}]" if positions is not None else "be >= 1"
        raise ValueError(f"--seq-len: must {bound} for this model, got {seq_len}")


def _transformers_classifier(folder: Path, seq_len: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(model, tracing example) of a saved transformers classifier (a student, the teacher)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from training.onnx_infer import usable_positions  # imports onnxruntime: only when exporting

    try:  # the config first: a bad --seq-len is refused before the weights load
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        pair = config.model_type == "pair-encoder"  # a bi-encoder: two inputs
        encoder = config.encoder if pair else config.to_dict()
        positions = usable_positions(encoder)
        if positions is not None and not isinstance(positions, int):
            raise TypeError(f"max_position_embeddings {positions!r} is not a whole number")
    except _load_errors() as err:  # a config of null, a field of the wrong type
        raise ValueError(f"{folder}: cannot read the classifier's config: {type(err).__name__}: {err}") from None
    _check_seq_len(seq_len, positions)
    try:
        with _quiet_transformers():  # its load report (dozens of lines) would bury the one-line error
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                folder, trust_remote_code=True, output_loading_info=True)
    except (*_load_errors(), RuntimeError) as err:  # damaged weights, shapes other than the config's
        raise ValueError(f"{folder}: cannot load the classifier: {type(err).__name__}: {_first_line(err)}") from None
    missing = loading["missing_keys"] or loading["mismatched_keys"]
    if missing:  # transformers initialised them at random: a graph of untrained weights
        names = sorted(str(m[0] if isinstance(m, tuple) else m) for m in missing)
        raise ValueError(f"{folder}: not a trained classifier: no saved weights for {len(names)} parameter(s) "
                         f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    model.eval()
    example = _tracing_example(encoder["vocab_size"], encoder.get("pad_token_id") or 0, pair, seq_len,
                               token_types=not pair and encoder.get("type_vocab_size", 1) > 1)
    return model, example


@functools.cache  # an except clause evaluates it only when something was raised
def _load_errors() -> tuple[type[BaseException], ...]:
    """What reading a saved folder raises for a bad folder: damaged safetensors, a config
    field of the wrong type (transformers' strict config classes), a config that is not a
    mapping."""
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError

    return OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError, StrictDataclassError


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" on stderr, before a one-line error
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _bilstm_classifier(folder: Path, seq_len: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(model, tracing example) of a saved BiLSTM_soft folder (bilstm_config.json)."""
    from safetensors import SafetensorError

    from training.models import BiLSTMSoft

    _check_seq_len(seq_len, None)  # no position table: any length
    try:
        model = BiLSTMSoft.from_pretrained(folder)
        config = model.config
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"{folder}: cannot load the BiLSTM_soft: {type(err).__name__}: {err}") from None
    return model, _tracing_example(config["vocab"], config["pad_id"], config["pair"], seq_len)


def export_folder(folder: str | Path, out: str | Path | None = None, seq_len: int = 64) -> list[Path]:
    """A saved classifier folder (a student, the fine-tuned teacher: what
    `AutoModelForSequenceClassification` loads; or a BiLSTM_soft baseline's) -> `model.onnx`
    and `model_int8.onnx` in `out` (default: the folder). ValueError for a folder that is not
    such a model or a `seq_len` its position table cannot hold; RuntimeError when the export
    fails."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        model, example = _transformers_classifier(folder, seq_len)
    elif (folder / "bilstm_config.json").is_file():
        model, example = _bilstm_classifier(folder, seq_len)
    else:
        raise ValueError(f"{folder}: no config.json or bilstm_config.json, not a saved classifier")
    out = Path(out) if out is not None else folder
    try:
        check_writable_folder(out)  # before the export: exit 2, not a failed export
    except OSError as err:
        raise ValueError(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    # both graphs made aside first: a failure leaves the folder's files as they were
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as work:
        fp32 = export_onnx(model, example, Path(work) / GRAPH_FILES["onnx"])
        int8 = quantize_onnx(fp32, Path(work) / GRAPH_FILES["onnx_int8"])
        _replace_pair(fp32, int8, out)
    return [out / fp32.name, out / int8.name]


def _replace_pair(fp32: Path, int8: Path, out: Path) -> None:
    """Put both graphs in `out` as a pair: both copied beside their names first, then renamed;
    if the second rename fails the first graph's earlier file is put back, so the folder never
    holds graphs of two exports."""
    targets = [(fp32, out / fp32.name), (int8, out / int8.name)]
    staged, backup = [], staging_path(out / f"{fp32.name}.previous")
    try:
        for made, target in targets:
            staged.append(staging_path(target))
            shutil.copyfile(made, staged[-1])
        if (out / fp32.name).is_file():  # the earlier graph, kept until the pair is in place
            try:
                os.link(out / fp32.name, backup)
            except OSError:  # a file system without hard links
                shutil.copyfile(out / fp32.name, backup)
        publish(staged[0], targets[0][1])
        try:
            publish(staged[1], targets[1][1])
        except OSError:
            if backup.exists():  # the earlier fp32 graph back beside the earlier int8 one
                os.replace(backup, targets[0][1])
            else:  # none before: the new one goes, rather than sit beside an earlier int8 graph
                targets[0][1].unlink(missing_ok=True)
            raise
    except OSError as err:
        raise RuntimeError(f"cannot write the graphs to {out}: {err}") from err
    finally:
        for path in (*staged, backup):
            path.unlink(missing_ok=True)


def _error(err: Exception, status: int) -> int:
    print(f"python -m training.onnx_export: error: {' '.join(str(err).split())}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Export a saved folder; bad input: one stderr line, exit 2; a failed export: exit 1."""
    parser = OneLineParser(prog="python -m training.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a saved classifier folder (a distill row's model_dir, "
                                           "a student's, the teacher's or a BiLSTM_soft's)")
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
