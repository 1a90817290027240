import time

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from training.evaluate import (
    accuracy,
    classifier_latency,
    codebert_arch_latency,
    f1_score,
    latency_ms,
    serialized_size_bytes,
)

torch.set_num_threads(1)


def test_accuracy_and_f1():
    preds, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert accuracy(preds, labels) == pytest.approx(3 / 5)
    # class 1: tp=2 fp=1 fn=1 -> 2*2/(4+1+1)
    assert f1_score(preds, labels) == pytest.approx(4 / 6)
    assert f1_score([0, 0], [0, 0]) == 0.0  # no positives predicted or present
    # macro over 3 classes, all correct
    assert f1_score([0, 1, 2], [0, 1, 2], num_labels=3) == pytest.approx(1.0)
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


def test_latency_harness_is_sane():
    stats = latency_ms(lambda: time.sleep(0.002), warmup=1, runs=20, threads=1)
    assert stats["runs"] == 20 and stats["threads"] == 1
    assert 2.0 <= stats["median_ms"] <= stats["p90_ms"] < 200
    with pytest.raises(ValueError):
        latency_ms(lambda: None, runs=5)


def test_latency_restores_thread_count():
    before = torch.get_num_threads()
    latency_ms(lambda: None, runs=20, threads=2)
    assert torch.get_num_threads() == before


def test_bigger_model_is_slower_at_same_settings():
    def bert(layers, hidden):
        return BertForSequenceClassification(BertConfig(
            vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
            intermediate_size=4 * hidden, max_position_embeddings=64))
    torch.manual_seed(0)
    small = classifier_latency(bert(1, 16), 100, seq_len=32, runs=20, threads=1)
    big = classifier_latency(bert(4, 256), 100, seq_len=32, runs=20, threads=1)
    assert small["median_ms"] < big["median_ms"]


def test_codebert_architecture_latency():
    stats = codebert_arch_latency(seq_len=8, runs=20, warmup=1, threads=1)
    assert 0 < stats["median_ms"] <= stats["p90_ms"]


def test_codebert_architecture_latency_of_a_separately_encoded_pair():
    # a bi-encoder student encodes both inputs: CodeBERT is timed doing the same
    stats = codebert_arch_latency(seq_len=8, runs=20, warmup=1, threads=1, pair=True)
    assert 0 < stats["median_ms"] <= stats["p90_ms"] and stats["runs"] == 20
