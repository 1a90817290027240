"""Sequence classifiers as ONNX graphs run by ONNX Runtime: the quantize table's `onnx` (the
fp32 graph) and `onnx_int8` (ONNX Runtime's dynamic int8: int8 weights of every MatMul,
activations quantized per call) variants. ONNX Runtime is what a team shipping a student into
an IDE or onto a laptop runs instead of torch; these variants are scored and timed like the
torch ones, so the table says what the runtime costs or saves.

    python -m training.onnx_export FOLDER [--out DIR]   # a saved student/teacher -> model.onnx, model_int8.onnx
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

ONNX_VARIANTS = ("onnx", "onnx_int8")
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


def quantize_onnx(src: Path, dst: Path) -> Path:
    """ONNX Runtime's dynamic int8 of `src` into `dst`, after its basic graph optimisations:
    they fold the exporter's Identity copies of weights a pair model's two encodes share,
    which the quantizer would otherwise keep in fp32 beside their int8 copies."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = dst.with_name(dst.stem + ".folded.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    quantize_dynamic(str(folded), str(dst), weight_type=QuantType.QInt8)
    folded.unlink()
    return dst


class OnnxClassifier(nn.Module):
    """`model` exported to ONNX (and, for `onnx_int8`, quantized), run by ONNX Runtime on the
    CPU. Called like the torch model (keyword tensors), it returns an object whose `.logits`
    is a torch tensor, so `predict_logits` and the latency harness take it unchanged.

    The graph is traced on `example` (its input names; batch and sequence axes free). A call
    without `token_type_ids` where the graph has them gets zeros, as a BERT would (the latency
    harness's random inputs carry none). One session per torch thread count: the harness sets
    torch's count, and an ONNX Runtime session fixes its own when it starts. `size_bytes`: the
    graph file, weights included.
    """

    def __init__(self, model: nn.Module, variant: str, example: dict[str, torch.Tensor]):
        super().__init__()
        if variant not in ONNX_VARIANTS:
            raise ValueError(f"variant must be one of {ONNX_VARIANTS}, got {variant!r}")
        self._dir = tempfile.TemporaryDirectory(prefix="onnx-")  # removed with this object
        path = export_onnx(model, example, Path(self._dir.name) / "model.onnx")
        if variant == "onnx_int8":
            path = quantize_onnx(path, path.with_name("model_int8.onnx"))
        self.path, self.names = path, tuple(example)
        self.size_bytes = path.stat().st_size
        self._sessions: dict[int, object] = {}

    def _session(self):
        import onnxruntime as ort

        threads = torch.get_num_threads()
        if threads not in self._sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.log_severity_level = 3  # errors only: not a warning per unused initializer
            self._sessions[threads] = ort.InferenceSession(str(self.path), options,
                                                           providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def forward(self, **inputs):
        if "token_type_ids" in self.names and "token_type_ids" not in inputs:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        missing = [n for n in self.names if n not in inputs]
        if missing:
            raise RuntimeError(f"ONNX graph needs inputs {list(self.names)}, missing {missing}")
        feed = {n: inputs[n].detach().cpu().numpy() for n in self.names}
        (logits,) = self._session().run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def export_folder(folder: str | Path, out: str | Path | None = None, seq_len: int = 64) -> list[Path]:
    """A saved classifier folder (a student, the fine-tuned teacher: what
    `AutoModelForSequenceClassification` loads) -> `model.onnx` and `model_int8.onnx` in `out`
    (default: the folder). Traced on `seq_len` random tokens a side."""
    from transformers import AutoModelForSequenceClassification

    from training.evaluate import random_inputs

    folder = Path(folder)
    out = Path(out) if out is not None else folder
    out.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    pair = model.config.model_type == "pair-encoder"  # a bi-encoder: two inputs
    vocab = model.config.encoder["vocab_size"] if pair else model.config.vocab_size
    example = random_inputs(vocab, seq_len, pair=pair)
    fp32 = export_onnx(model, example, out / "model.onnx")
    return [fp32, quantize_onnx(fp32, out / "model_int8.onnx")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a saved classifier folder (results_dir/students/...)")
    parser.add_argument("--out", help="where to write model.onnx and model_int8.onnx (default: the folder)")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens a side of the tracing input")
    args = parser.parse_args(argv)
    for path in export_folder(args.folder, args.out, args.seq_len):
        print(f"{path}  {path.stat().st_size / 1e6:.3f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
