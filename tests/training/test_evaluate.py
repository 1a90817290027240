import time

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from search.space import Arch, teacher_spec
from training.evaluate import (
    accuracy,
    classifier_latency,
    codebert_arch_calls,
    codebert_arch_latency,
    f1_score,
    head_models,
    interleaved_latency_ms,
    latency_ms,
    serialized_size_bytes,
)
from training.models import build_student

torch.set_num_threads(1)


def test_accuracy_and_f1():
    preds, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert accuracy(preds, labels) == pytest.approx(3 / 5)
    # class 1: tp=2 fp=1 fn=1 -> 2*2/(4+1+1)
    assert f1_score(preds, labels) == pytest.approx(4 / 6)
    assert f1_score([0, 0], [0, 0]) == 0.0  # no positives predicted or present
    # macro over 3 classes, all correct
    assert f1_score([0, 1, 2], [0, 1, 2], num_labels=3) == pytest.approx(1.0)
    # class 0: tp=1 fp=1 fn=0 -> 2/3; class 1: tp=1 fp=0 fn=1 -> 2/3; class 2: 1; every class counts
    assert f1_score([0, 0, 1, 2], [0, 1, 1, 2], num_labels=3) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])


def test_serialized_size_counts_each_tensor_once():
    lin = torch.nn.Linear(10, 20)  # 220 float32 values
    size = serialized_size_bytes(lin)
    assert 220 * 4 <= size < 220 * 4 + 512  # + safetensors JSON header
    tied = torch.nn.Module()
    tied.a = torch.nn.Linear(10, 20)
    tied.b = torch.nn.Linear(10, 20)
    tied.b.weight = tied.a.weight  # shared: stored once
    assert 240 * 4 <= serialized_size_bytes(tied) < 240 * 4 + 512  # 200 + 20 + 20 values
    halves = torch.nn.Module()  # two views of one storage, at different offsets: both stored
    whole = torch.zeros(2, 100)
    halves.register_buffer("a", whole[0])
    halves.register_buffer("b", whole[1])
    assert 200 * 4 <= serialized_size_bytes(halves) < 200 * 4 + 512


class FakeClock:
    """time.perf_counter for the harness: each call of `work` advances it by the next of
    `durations_ms`, so the harness's statistics are checked against known durations."""

    def __init__(self, durations_ms):
        self.now, self.durations = 0.0, list(durations_ms)

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += self.durations.pop(0) / 1e3


def test_latency_harness_reports_median_and_p90_of_the_timed_runs_only(monkeypatch):
    runs = [7.0, 3.0, 1.0, 9.0, 5.0] * 4 + [100.0]  # 21 timed calls, in ms
    clock = FakeClock([1000.0, 1000.0] + runs)  # two slow warm-up calls, never counted
    monkeypatch.setattr(time, "perf_counter", clock)
    stats = latency_ms(clock.work, warmup=2, runs=21, threads=1)
    monkeypatch.undo()
    assert clock.durations == []  # warm-up + runs calls, no more
    assert stats == {"median_ms": pytest.approx(5.0), "p90_ms": pytest.approx(9.0), "runs": 21, "threads": 1}
    # distinct durations 1..20 ms: the nearest rank of 0.9 is the 18th (ceil(0.9 x 20))
    clock = FakeClock([float(ms) for ms in range(20, 0, -1)])
    monkeypatch.setattr(time, "perf_counter", clock)
    stats = latency_ms(clock.work, warmup=0, runs=20, threads=1)
    monkeypatch.undo()
    assert (stats["median_ms"], stats["p90_ms"]) == (pytest.approx(10.5), pytest.approx(18.0))
    # 26 runs: the nearest rank is ceil(23.4) = 24 (numpy's "nearest" over 25 steps took the 23rd)
    clock = FakeClock([float(ms) for ms in range(26, 0, -1)])
    monkeypatch.setattr(time, "perf_counter", clock)
    stats = latency_ms(clock.work, warmup=0, runs=26, threads=1)
    monkeypatch.undo()
    assert stats["p90_ms"] == pytest.approx(24.0)
    with pytest.raises(ValueError):
        latency_ms(lambda: None, runs=5)


def test_latency_prepare_runs_once_untimed_at_the_measured_thread_count(monkeypatch):
    """One-off setup (an ONNX Runtime session is built for a thread count) never lands in
    the timed runs, even without warm-up."""
    runs = [4.0] * 20
    clock = FakeClock([5000.0] + runs)  # prepare's slow setup, then the timed calls
    seen_threads = []

    def prepare():
        seen_threads.append(torch.get_num_threads())
        clock.work()

    monkeypatch.setattr(time, "perf_counter", clock)
    stats = latency_ms(clock.work, warmup=0, runs=20, threads=2, prepare=prepare)
    monkeypatch.undo()
    assert clock.durations == [] and seen_threads == [2]
    assert stats["median_ms"] == pytest.approx(4.0) and stats["p90_ms"] == pytest.approx(4.0)


class DriftingClock:
    """time.perf_counter on a machine that slows down: the n-th call of any `work` function
    (n counted over all of them, warm-up included) takes its base time * (1 + drift * n)."""

    def __init__(self, drift: float):
        self.now, self.calls, self.drift = 0.0, 0, drift

    def __call__(self) -> float:
        return self.now

    def work(self, base_ms: float):
        def call():
            self.now += base_ms * (1 + self.drift * self.calls) / 1e3
            self.calls += 1
        return call


def test_interleaved_rounds_keep_a_drifting_machine_out_of_the_ratio(monkeypatch):
    """Timed one after the other, the second model bears the slowdown (a 5x ratio reads 6x);
    in alternated, mirrored blocks both bear it alike."""
    ratio, calls = {}, {}
    for rounds in (1, 4):
        clock = DriftingClock(drift=0.01)
        monkeypatch.setattr(time, "perf_counter", clock)
        stats = interleaved_latency_ms({"student": clock.work(1.0), "teacher": clock.work(5.0)},
                                       warmup=2, runs=20, threads=1, rounds=rounds)
        monkeypatch.undo()
        assert stats["student"]["runs"] == stats["teacher"]["runs"] == 20
        ratio[rounds] = stats["teacher"]["median_ms"] / stats["student"]["median_ms"]
        calls[rounds] = clock.calls
    assert ratio[1] > 5.9
    assert ratio[4] == pytest.approx(5.0, rel=1e-3)
    # warm-up: 2 calls before a model's first block, 1 before each later one
    assert calls[1] == 2 * (2 + 20) and calls[4] == 2 * (2 + 3 + 20)


def test_interleaved_prepares_every_model_first_and_drops_one_that_fails():
    order = []

    def failing():
        order.append("b")
        if order.count("b") == 3:
            raise RuntimeError("no kernel")

    stats = interleaved_latency_ms({"a": lambda: order.append("a"), "b": failing}, warmup=1, runs=20,
                                   prepare={"a": lambda: order.append("prep-a"), "b": lambda: order.append("prep-b")},
                                   tolerate=(RuntimeError,))
    assert order[:2] == ["prep-a", "prep-b"]
    assert isinstance(stats["b"]["error"], RuntimeError) and stats["a"]["runs"] == 20
    with pytest.raises(RuntimeError, match="no kernel"):  # not tolerated: raised
        order.clear()
        interleaved_latency_ms({"b": failing}, runs=20)
    def no_session():
        raise RuntimeError("cannot open the session")

    stats = interleaved_latency_ms({"a": lambda: None, "onnx": lambda: None}, runs=20, tolerate=(RuntimeError,),
                                   prepare={"onnx": no_session})
    assert "cannot open" in str(stats["onnx"]["error"]) and stats["a"]["runs"] == 20  # its row's error
    for rounds in (0, 21):
        with pytest.raises(ValueError, match="rounds"):
            interleaved_latency_ms({"a": lambda: None}, runs=20, rounds=rounds)


def test_latency_restores_thread_count():
    before = torch.get_num_threads()
    latency_ms(lambda: None, runs=20, threads=2)
    assert torch.get_num_threads() == before


def test_classifier_latency_times_one_inference_forward_at_the_given_shape():
    model = BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64)).train()
    seen = []
    model.register_forward_hook(lambda m, args, kwargs, out: seen.append(
        (tuple(kwargs["input_ids"].shape), m.training, torch.is_inference_mode_enabled())), with_kwargs=True)
    stats = classifier_latency(model, 100, seq_len=32, warmup=2, runs=20, threads=1)
    assert seen == [((1, 32), False, True)] * 22  # batch 1, eval mode, no autograd: warm-up + runs
    assert stats["runs"] == 20 and stats["threads"] == 1 and stats["median_ms"] <= stats["p90_ms"]


def test_codebert_architecture_latency():
    stats = codebert_arch_latency(seq_len=8, runs=20, warmup=1, threads=1)
    assert stats["median_ms"] <= stats["p90_ms"] and stats["runs"] == 20


def test_codebert_architecture_latency_of_a_separately_encoded_pair():
    # a bi-encoder student encodes both inputs: CodeBERT is timed doing the same
    stats = codebert_arch_latency(seq_len=8, runs=20, warmup=1, threads=1, pair=True)
    assert stats["median_ms"] <= stats["p90_ms"] and stats["runs"] == 20
    calls = codebert_arch_calls(seq_len=8, pairs=(True, False))
    pair, single = calls[True](), calls[False]()
    assert len(pair) == 2 and len(single) == 1  # a timed pair call encodes both sides
    assert not torch.equal(pair[0].logits, pair[1].logits)  # two different inputs, not one twice


@pytest.mark.parametrize("head", ["sequence", "pair_cosine", "pair_concat"])
def test_head_models_are_the_students_the_search_prices_with_that_head(head):
    # the latency model's shapes are timed as these: the parameters the search counts for the
    # head, and the input format it reads (one sequence, or a pair's two sides)
    from search import cost
    from search.space import Arch, teacher_spec

    teacher, archs = teacher_spec("minilm-l6"), [Arch(1, 32, 2, 64, 1000), Arch(2, 48, 4, 96, 2000)]
    models = head_models(archs, teacher, head)
    assert list(models) == ["student-0", "student-1"]
    for (model, vocab), arch in zip(models.values(), archs, strict=True):
        assert vocab == arch.vocab
        assert sum(p.numel() for p in model.parameters()) == cost.params(arch, teacher, head=head)
        pair = head != "sequence"
        inputs = {"input_ids": torch.ones(1, 4, dtype=torch.long)}
        if pair:
            inputs["input_ids_b"] = torch.ones(1, 4, dtype=torch.long)
        assert model.eval()(**inputs).logits.shape == (1, 2)
    with pytest.raises(ValueError, match="head must be"):
        head_models(archs, teacher, "pair_mean")
    # the references read the students' input format: CodeBERT as the paper's clone model for pairs
    codebert = teacher_spec("codebert-base")
    refs = head_models([], teacher, head, references=True)
    assert list(refs) == ["teacher-arch", "codebert-arch"]
    ref_head = {"teacher-arch": head, "codebert-arch": "sequence" if head == "sequence" else "pair_concat"}
    for name, family in (("teacher-arch", teacher), ("codebert-arch", codebert)):
        model, vocab = refs[name]
        assert vocab == family.arch().vocab
        assert sum(p.numel() for p in model.parameters()) == cost.params(family.arch(), family, head=ref_head[name])


def test_random_inputs_of_a_vocabulary_of_five_or_fewer_use_its_ids():
    """Ids are drawn from 5 up (past BERT's special tokens); a vocabulary of 5 or fewer was an
    error (`bench latency` with such a student crashed after timing the others)."""
    from training.evaluate import random_inputs

    for vocab in (1, 5, 6):
        ids = random_inputs(vocab, 8, pair=True)["input_ids_b"]
        assert ids.shape == (1, 8) and int(ids.max()) < vocab


def test_reported_threads_are_the_ones_timed_at():
    """E05: latency_ms(threads=2) in a process set to 1 thread reports 2."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert latency_ms(lambda: None, runs=20, threads=2)["threads"] == 2
        assert latency_ms(lambda: None, runs=20)["threads"] == 1 == torch.get_num_threads()  # restored
    finally:
        torch.set_num_threads(before)


def test_codebert_takes_every_usable_position_and_refuses_one_more():
    """E09: seq_len = CodeBERT's usable positions (512) is timed, 513 refused."""
    from training.evaluate import codebert_arch_calls

    usable = teacher_spec("codebert-base").usable_positions
    assert set(codebert_arch_calls(seq_len=usable)) == {False}
    with pytest.raises(ValueError, match="usable positions"):
        codebert_arch_calls(seq_len=usable + 1)


def test_a_batched_classifier_call_times_that_many_rows():
    """E14: classifier_call(batch=3) times a forward pass over 3 inputs (bench latency's
    pairs_per_s divides the batch by this time)."""
    from training.evaluate import classifier_call

    model = build_student(Arch(1, 16, 2, 32, 300), teacher_spec("minilm-l6"), 2, "separate", pair_head="cosine")
    fn, _ = classifier_call(model, 300, seq_len=8, pair=True, batch=3)
    with torch.no_grad():
        assert fn().logits.shape == (3, 2)
