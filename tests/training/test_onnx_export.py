"""ONNX variants of the classifiers: exported graphs run by ONNX Runtime give torch's logits on
inputs of other shapes and padding, int8 graphs are smaller and close, the rows record what
cannot be exported, and a saved student folder exports from the command line."""

import os

import onnx
import onnxruntime as ort
import pytest
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from search.space import Arch, teacher_spec
from training.finetune import pad_right
from training.models import BiLSTMSoft, build_student
from training.onnx_export import OnnxClassifier, _check_seq_len, export_folder, export_onnx, main
from training.quantize import classifier_variant_rows, quantize_classifier

torch.set_num_threads(1)
VOCAB = 300


def _student(pair_mode="separate", pair_head="cosine", ffn=64):
    torch.manual_seed(0)
    return build_student(Arch(2, 32, 2, ffn, VOCAB), teacher_spec("minilm-l6"), pair_mode=pair_mode,
                         pad_token_id=1, pair_head=pair_head).eval()


def _padded(rows: int, pair: bool, seed: int, max_len: int = 40, token_types: bool = False) -> dict:
    """`rows` inputs of random lengths 3..max_len, right-padded (the padding the exporter must not bake in)."""
    gen = torch.Generator().manual_seed(seed)

    def side(longest):
        lengths = torch.randint(3, longest + 1, (rows,), generator=gen)
        return pad_right([torch.randint(5, VOCAB, (int(n),), generator=gen).tolist() for n in lengths], 1)

    ids, mask = side(max_len)
    batch = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        batch["token_type_ids"] = (torch.arange(ids.shape[1]) >= ids.shape[1] // 2).long().expand_as(ids) * mask
    if pair:
        batch["input_ids_b"], batch["attention_mask_b"] = side(max_len // 2)
    return batch


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("pair_mode, pair_head", [("separate", "cosine"), ("separate", "concat"), ("joint", "concat")])
def test_onnx_graph_gives_torch_logits_on_other_shapes_and_padding(pair_mode, pair_head):
    model = _student(pair_mode, pair_head)
    pair = pair_mode == "separate"
    graph = OnnxClassifier(model, "onnx", _padded(2, pair, seed=0, token_types=not pair))
    for rows, seed, longest in ((7, 1, 40), (1, 2, 11), (3, 3, 64)):  # other batch sizes and lengths
        batch = _padded(rows, pair, seed, longest, token_types=not pair)
        assert graph(**batch).logits.shape == (rows, 2)
        torch.testing.assert_close(graph(**batch).logits, _logits(model, batch), atol=1e-4, rtol=1e-4)
    assert not model.training  # the export leaves the model in eval mode (a train-mode model drops out)


def test_onnx_int8_graph_is_smaller_and_close():
    model = _student(ffn=1024)  # 4/5 of the weights in MatMuls
    example = _padded(2, True, seed=0)
    fp32, int8 = OnnxClassifier(model, "onnx", example), OnnxClassifier(model, "onnx_int8", example)
    batch = _padded(16, True, seed=1)
    # the folding before quantization: without it the pair model's shared weights stay fp32
    # beside their int8 copies (a graph larger than fp32's)
    assert int8.size_bytes < 0.45 * fp32.size_bytes
    assert (int8(**batch).logits - _logits(model, batch)).abs().max() < 0.1
    assert not torch.equal(int8(**batch).logits, fp32(**batch).logits)  # really quantized
    graph = onnx.load(str(int8.path))
    stored = {t.name: t.data_type for t in graph.graph.initializer}
    # every MatMul by a weight is int8 (attention's activation-by-activation MatMuls stay fp32)
    assert any(n.op_type == "MatMulInteger" for n in graph.graph.node)
    assert not [n.name for n in graph.graph.node if n.op_type == "MatMul" and set(n.input) & set(stored)]
    tables = [n.input[0] for n in graph.graph.node if n.op_type == "Gather" and n.input[0] in stored]
    # the embedding lookups read quantized tables (uint8 with one scale each), not fp32 ones
    assert tables and {stored[t] for t in tables} == {onnx.TensorProto.UINT8}


def test_missing_token_type_ids_are_zeros_and_other_inputs_are_required():
    model = _student("joint")
    graph = OnnxClassifier(model, "onnx", _padded(2, False, seed=0, token_types=True))
    batch = _padded(4, False, seed=1)  # no token_type_ids: as the latency harness calls it
    torch.testing.assert_close(graph(**batch).logits, _logits(model, batch), atol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="missing \\['attention_mask'\\]"):
        graph(input_ids=batch["input_ids"])


def test_the_latency_harness_opens_the_session_before_timing(monkeypatch):
    """With no warm-up at another thread count, the session for that count is opened by
    `prepare` (untimed), not by the first timed call."""
    from training.evaluate import classifier_latency

    graph = OnnxClassifier(_student(), "onnx", _padded(2, True, seed=0))  # a session for 1 thread
    calls, prepare = [], graph.prepare

    def recorded():
        calls.append((torch.get_num_threads(), set(graph._sessions)))
        prepare()

    monkeypatch.setattr(graph, "prepare", recorded)
    classifier_latency(graph, VOCAB, seq_len=8, pair=True, warmup=0, runs=20, threads=2)
    assert calls == [(2, {1})]  # once, at 2 threads, before any session for 2 existed
    assert sorted(graph._sessions) == [1, 2]


def test_graph_folders_go_with_their_object_and_those_of_killed_processes_with_the_next(tmp_path, monkeypatch):
    import gc
    import subprocess
    import sys
    import tempfile

    from training.staging import pid_space

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = tmp_path / f".onnx-0123456789ab.tmp-{pid_space()}-{int(gone.stdout)}"  # a killed trial's
    alive = tmp_path / f".onnx-ba9876543210.tmp-{pid_space()}-{os.getpid()}"  # another object's, in use
    for folder in (killed, alive):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"graph")
    graph = OnnxClassifier(_student(), "onnx", _padded(2, True, seed=0))
    assert graph.path.parent.parent == tmp_path and graph.path.is_file()
    assert not killed.exists() and alive.exists()
    work = graph.path.parent
    del graph
    gc.collect()
    assert not work.exists()


def test_one_session_per_torch_thread_count():
    graph = OnnxClassifier(_student(), "onnx", _padded(2, True, seed=0))
    batch = _padded(2, True, seed=1)
    old = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            graph(**batch)
    finally:
        torch.set_num_threads(old)
    assert sorted(graph._sessions) == [1, 2]
    assert [s.get_session_options().intra_op_num_threads for _, s in sorted(graph._sessions.items())] == [1, 2]


class _Untraceable(torch.nn.Module):
    """A pair classifier with an op the TorchScript exporter has no ONNX form for (bessel_j0)."""

    def __init__(self):
        super().__init__()
        self.embedding, self.head = torch.nn.Embedding(VOCAB, 8), torch.nn.Linear(16, 2)

    def forward(self, input_ids, attention_mask=None, input_ids_b=None, attention_mask_b=None, **_):
        sides = [self.embedding(ids).mean(1) for ids in (input_ids, input_ids_b)]
        return SequenceClassifierOutput(logits=self.head(torch.special.bessel_j0(torch.cat(sides, -1))))


def test_rows_record_a_model_the_exporter_cannot_trace(tmp_path):
    """A model the exporter cannot trace: the row says so instead of failing the trial, and the
    other variants still get figures."""
    untraceable = _Untraceable().eval()
    example = _padded(2, True, seed=0)
    with pytest.raises(RuntimeError, match="ONNX export failed: UnsupportedOperatorError"):
        export_onnx(untraceable, example, tmp_path / "untraceable.onnx")
    with pytest.raises(ValueError, match="needs example inputs"):
        quantize_classifier(_student(), "onnx")
    (tmp_path / "untraceable.onnx").unlink(missing_ok=True)
    batch = _padded(8, True, seed=1)
    labels = torch.zeros(8, dtype=torch.long)
    (tmp_path / "model.onnx").write_bytes(b"an earlier attempt's graph")

    def score(q):
        return {"accuracy": float((_logits(q, batch).argmax(-1) == labels).float().mean()), "f1": 0.0}

    rows = classifier_variant_rows(untraceable, ("onnx", "int8"), score,
                                   lambda built: {v: {"median_ms": 1.0, "p90_ms": 1.0} for v in built},
                                   example=example, graph_dir=tmp_path)
    by = {r["variant"]: r for r in rows}
    assert "ONNX export failed" in by["onnx"]["error"] and by["onnx"]["accuracy_kept"] is None
    assert "\n" not in by["onnx"]["error"]  # one line: a table cell
    assert by["int8"]["error"] is None and by["int8"]["accuracy"] is not None
    # no graph kept for a variant that failed, nor an earlier attempt's beside this row
    assert list(tmp_path.iterdir()) == []


def test_a_graph_that_cannot_be_kept_or_timed_keeps_every_measured_figure(tmp_path, monkeypatch):
    """A full disk when the scored graph is saved: that row says so and keeps its figures, and
    every other row stays (before: the OSError ended the trial after its whole distillation).
    A timing error leaves the accuracy ratio, which both rows measured."""
    import errno

    model = _student()
    accuracies = iter([0.5, 0.25, 0.25])  # fp32, onnx, int8: scored in that order

    def score(q):
        return {"accuracy": next(accuracies), "f1": 0.0}

    def full_disk(self, folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(OnnxClassifier, "save", full_disk)
    timings = {"fp32": {"median_ms": 2.0, "p90_ms": 2.0}, "onnx": {"median_ms": 1.0, "p90_ms": 1.0},
               "int8": {"error": RuntimeError("timing failed")}}
    rows = classifier_variant_rows(model, ("onnx", "int8"), score, lambda built: {v: timings[v] for v in built},
                                   example=_padded(2, True, seed=0), graph_dir=tmp_path)
    by = {r["variant"]: r for r in rows}
    assert by["onnx"]["error"] == "graph not kept: OSError: [Errno 28] No space left on device"
    assert (by["onnx"]["latency_ms"], by["onnx"]["speedup_vs_fp32"], by["onnx"]["accuracy_kept"]) == (1.0, 2.0, 0.5)
    assert by["int8"]["error"] == "RuntimeError: timing failed" and by["int8"]["accuracy_kept"] == 0.5
    assert by["int8"]["speedup_vs_fp32"] is None and by["fp32"]["error"] is None
    assert {r["emulated"] for r in rows} == {None}  # no half precision among them


def test_a_bilstm_graph_gives_torch_logits_on_other_shapes_and_padding(tmp_path):
    """BiLSTM_soft runs its two directions over padded batches (no packed sequences): the graph
    traced on two rows reads other batch sizes, lengths and padding as torch does, in fp32 and
    int8, and the saved folder exports from the command line."""
    import onnxruntime as ort

    torch.manual_seed(0)
    bilstm = BiLSTMSoft(VOCAB, embed=16, hidden=12, dense=24, pad_id=1, pair=True).eval()
    graph = OnnxClassifier(bilstm, "onnx", _padded(2, True, seed=0))
    int8 = OnnxClassifier(bilstm, "onnx_int8", _padded(2, True, seed=0))
    for rows, seed, longest in ((7, 1, 40), (1, 2, 11), (3, 3, 64)):
        batch = _padded(rows, True, seed, longest)
        torch.testing.assert_close(graph(**batch).logits, _logits(bilstm, batch), atol=1e-5, rtol=1e-5)
    # int8: the four LSTM nodes (two inputs, two directions) share two weight sets, each node
    # quantized with its own copy; quantized in place and shared, the margins correlated 0.01
    batch = _padded(64, True, seed=5)
    margins = [logits[:, 1] - logits[:, 0] for logits in (_logits(bilstm, batch), int8(**batch).logits)]
    assert torch.corrcoef(torch.stack(margins))[0, 1] > 0.99
    assert int8.size_bytes < graph.size_bytes
    bilstm.save_pretrained(tmp_path / "bilstm")
    assert main([str(tmp_path / "bilstm"), "--seq-len", "9"]) == 0
    batch = _padded(4, True, seed=4)
    session = ort.InferenceSession(str(tmp_path / "bilstm" / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
    torch.testing.assert_close(torch.from_numpy(logits), _logits(bilstm, batch), atol=1e-5, rtol=1e-5)


def test_rows_of_a_student_size_the_graph_file_and_score_like_torch(tmp_path):
    model = _student()
    batch = _padded(32, True, seed=1)
    labels = _logits(model, batch).argmax(-1)  # fp32 torch scores 1.0 by construction

    def score(q):
        return {"accuracy": float((q(**batch).logits.argmax(-1) == labels).float().mean()), "f1": 0.0}

    rows = classifier_variant_rows(model, ("onnx", "onnx_int8"), score,
                                   lambda built: {v: {"median_ms": 1.0, "p90_ms": 2.0} for v in built},
                                   example=_padded(2, True, seed=0),
                                   graph_dir=tmp_path)
    by = {r["variant"]: r for r in rows}
    # the graphs the rows scored are kept, named as the export command names them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model_int8.onnx"]
    assert (tmp_path / "model_int8.onnx").stat().st_size == by["onnx_int8"]["size_bytes"]
    assert by["onnx"]["error"] is None and by["onnx"]["accuracy"] == 1.0
    assert by["onnx_int8"]["accuracy"] >= 0.9
    graph = quantize_classifier(model, "onnx", _padded(2, True, seed=0))
    assert by["onnx"]["size_bytes"] == graph.size_bytes == graph.path.stat().st_size
    # the graph holds every weight once (the pair model's two encodes share them): its weights
    # weigh what torch's state dict does; the file adds the graph (~0.1 MB, whatever the model's size)
    weights = sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(str(graph.path)).graph.initializer)
    state = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert weights == pytest.approx(state, rel=0.05) and by["onnx"]["size_bytes"] > weights


def test_onnx_runtime_errors_become_row_errors():
    """ONNX Runtime's exceptions are not RuntimeErrors: re-raised as one, a row records them."""
    graph = OnnxClassifier(_student(), "onnx", _padded(2, True, seed=0))
    graph.path.write_bytes(b"not a graph")
    graph._sessions.clear()
    with pytest.raises(RuntimeError, match="ONNX Runtime cannot load the graph"):
        graph(**_padded(2, True, seed=1))


def test_tracing_rows_pad_the_shorter_and_take_one_row_of_a_one_row_split():
    from training.distill import _tracing_rows

    encoded = {"input_ids": [[0, 5, 2], [0, 5, 6, 7, 8, 2], [0, 2]], "input_ids_b": [[0, 9, 2], [0, 2], [0, 9, 2]]}
    batch = _tracing_rows(encoded, pad_id=1)
    assert batch["input_ids"].tolist() == [[0, 5, 6, 7, 8, 2], [0, 2, 1, 1, 1, 1]]  # longest, shortest
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 0, 0, 0, 0]]
    one = _tracing_rows({"input_ids": [[0, 5, 2]], "input_ids_b": [[0, 2]]}, pad_id=1)
    assert one["input_ids"].shape == (1, 3)


@pytest.mark.parametrize("pair_mode", ["separate", "joint"])
def test_a_saved_student_folder_exports_from_the_command_line(tmp_path, capsys, pair_mode):
    import onnxruntime as ort

    model = _student(pair_mode)
    model.save_pretrained(tmp_path / "student")
    assert main([str(tmp_path / "student"), "--out", str(tmp_path / "onnx"), "--seq-len", "16"]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "model_int8.onnx" in printed
    # other rows and lengths than the trace, padded; a joint BERT's segment ids are an input
    batch = _padded(5, pair_mode == "separate", seed=5, token_types=pair_mode == "joint")
    for name, tolerance in (("model.onnx", 1e-4), ("model_int8.onnx", 0.1)):
        session = ort.InferenceSession(str(tmp_path / "onnx" / name), providers=["CPUExecutionProvider"])
        assert {i.name for i in session.get_inputs()} == set(batch)
        (logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
        assert abs(torch.from_numpy(logits) - _logits(model, batch)).max() < tolerance, name
    # by default beside the weights
    assert [p.name for p in export_folder(tmp_path / "student", seq_len=8)] == ["model.onnx", "model_int8.onnx"]
    assert (tmp_path / "student" / "model.onnx").is_file()


def test_command_line_refuses_bad_input_in_one_line(tmp_path, capsys):
    _student().save_pretrained(tmp_path / "student")
    capsys.readouterr()  # save_pretrained's progress bar
    bilstm = tmp_path / "bilstm"
    bilstm.mkdir()
    (bilstm / "bilstm_config.json").write_text("{}")
    for argv, message in (([str(tmp_path / "nowhere")], "no config.json or bilstm_config.json"),
                          ([str(bilstm)], "cannot load the BiLSTM_soft: TypeError"),
                          ([str(bilstm), "--seq-len", "0"], "--seq-len: must be >= 1"),
                          ([str(tmp_path / "student"), "--seq-len", "0"], "--seq-len: must be in [1, 512]"),
                          ([str(tmp_path / "student"), "--seq-len", "513"], "--seq-len: must be in [1, 512]"),
                          ([str(tmp_path / "student"), "--bogus"], "unrecognized arguments")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "student" / "model.onnx").exists()


def test_quantizing_keeps_the_callers_logging_level(tmp_path):
    import logging

    from training.onnx_export import export_onnx, quantize_onnx

    graph = export_onnx(_student(), _padded(2, True, seed=0), tmp_path / "model.onnx")
    logging.disable(logging.INFO)
    try:
        quantize_onnx(graph, tmp_path / "model_int8.onnx")
        assert logging.root.manager.disable == logging.INFO
    finally:
        logging.disable(logging.NOTSET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model_int8.onnx"]  # no temp left


def test_a_failed_export_leaves_the_folder_as_it_was(tmp_path, capsys, monkeypatch):
    import training.onnx_export as onnx_export

    _student().save_pretrained(tmp_path / "student")
    (tmp_path / "student" / "model.onnx").write_bytes(b"the graph the job kept")

    def fail(src, dst):
        raise RuntimeError("ONNX int8 quantization failed: no space left")

    monkeypatch.setattr(onnx_export, "quantize_onnx", fail)
    assert main([str(tmp_path / "student")]) == 1
    assert "no space left" in capsys.readouterr().err
    assert (tmp_path / "student" / "model.onnx").read_bytes() == b"the graph the job kept"
    assert not (tmp_path / "student" / "model_int8.onnx").exists()


def test_folders_that_are_not_trained_classifiers_are_refused_in_one_line(tmp_path, capsys):
    """A bare encoder (no classifier head) exported with a head transformers drew at random,
    exit 0; damaged weights and bad config fields were tracebacks."""
    import json

    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=80)
    BertModel(config).save_pretrained(tmp_path / "encoder")
    _student("joint").save_pretrained(tmp_path / "damaged")
    (tmp_path / "damaged" / "model.safetensors").write_bytes(b"\xff" * 64)
    _student("joint").save_pretrained(tmp_path / "null")
    (tmp_path / "null" / "config.json").write_text("null")
    _student("joint").save_pretrained(tmp_path / "typed")
    typed = json.loads((tmp_path / "typed" / "config.json").read_text())
    (tmp_path / "typed" / "config.json").write_text(json.dumps(typed | {"max_position_embeddings": "abc"}))
    _student("joint").save_pretrained(tmp_path / "ok")
    (tmp_path / "afile").write_text("")
    capsys.readouterr()
    for argv, message in (([str(tmp_path / "encoder")], "not a trained classifier: no saved weights for 2 parameter(s)"),
                          ([str(tmp_path / "damaged")], "cannot load the classifier"),
                          ([str(tmp_path / "null")], "cannot read the classifier's config"),
                          ([str(tmp_path / "typed")], "cannot read the classifier's config"),
                          ([str(tmp_path / "ok"), "--out", str(tmp_path / "afile" / "sub")], "--out")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not any((tmp_path / "encoder").glob("*.onnx"))


def test_the_two_graphs_are_replaced_as_a_pair(tmp_path, capsys):
    _student().save_pretrained(tmp_path / "student")
    (tmp_path / "student" / "model.onnx").write_bytes(b"the graph of the last export")
    (tmp_path / "student" / "model_int8.onnx").mkdir()  # its graph cannot be put in place
    assert main([str(tmp_path / "student")]) == 1
    assert "cannot write the graphs" in capsys.readouterr().err
    assert (tmp_path / "student" / "model.onnx").read_bytes() == b"the graph of the last export"
    assert sorted(p.name for p in (tmp_path / "student").iterdir() if "onnx" in p.name) == [
        "model.onnx", "model_int8.onnx"]  # no staged copies left
    (tmp_path / "student" / "model.onnx").unlink()  # no earlier fp32 graph: the new one does not stay
    assert main([str(tmp_path / "student")]) == 1
    assert not (tmp_path / "student" / "model.onnx").exists()


def _example():
    ids = torch.randint(5, VOCAB, (2, 8))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "input_ids_b": ids[:, :5],
            "attention_mask_b": torch.ones_like(ids[:, :5])}


def test_the_logits_batch_axis_is_free():
    graph = OnnxClassifier(_student(), "onnx", _example())
    assert graph._session().get_outputs()[0].shape[0] == "batch"


def test_int8_weights_are_signed():
    graph = OnnxClassifier(_student(), "onnx_int8", _example())
    model = onnx.load(str(graph.path))
    stored = {t.name: t.data_type for t in model.graph.initializer}
    types = {stored[n.input[1]] for n in model.graph.node if n.op_type == "MatMulInteger" and n.input[1] in stored}
    assert types == {onnx.TensorProto.INT8}


def test_a_sequence_length_at_the_bound_is_accepted():
    _check_seq_len(512, 512)
    with pytest.raises(ValueError):
        _check_seq_len(513, 512)


def test_a_roberta_joint_graph_takes_no_segment_ids(tmp_path):
    torch.manual_seed(0)
    build_student(Arch(2, 32, 2, 64, VOCAB), teacher_spec("codebert-base"), pair_mode="joint",
                  pad_token_id=1).eval().save_pretrained(tmp_path / "s")
    export_folder(tmp_path / "s", seq_len=8)
    session = ort.InferenceSession(str(tmp_path / "s" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"input_ids", "attention_mask"}


def test_half_precision_variants_say_whether_the_cpu_emulates_them():
    """The bf16 and fp16 rows carry `emulated` (training.models.emulated on the CPU they ran on),
    so a table reader can tell a slow conversion from what a CPU with the units gets."""
    from training.models import emulated

    model = _student()
    rows = classifier_variant_rows(model, ("bf16", "fp16", "int8"), lambda q: {"accuracy": 0.5, "f1": 0.0},
                                   lambda built: {v: {"median_ms": 1.0, "p90_ms": 1.0} for v in built})
    assert {r["variant"]: r["emulated"] for r in rows} == {
        "fp32": None, "bf16": emulated("bf16", "cpu"), "fp16": emulated("fp16", "cpu"), "int8": None}
    assert {r["error"] for r in rows} == {None}
