"""Fixtures for the code-to-text tests (seq2seq, prune, quantize; owner: pruning helper):
a word-level BERT vocabulary, a randomly initialised 2-layer BERT saved as a teacher folder,
a CodeXGLUE jsonl data set; and the staging paths a killed writer leaves (`stale`). The suite
imports test modules with --import-mode=importlib, so shared helpers reach them as fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from training.seq2seq import Seq2SeqConfig, build_seq2seq
from training.staging import pid_space, staging_path

PAIRS = [
    ("def add ( a , b ) : return a + b", "add two numbers"),
    ("def read ( path ) : return open ( path ) . read ( )", "read a file"),
    ("def mean ( xs ) : return sum ( xs ) / len ( xs )", "average of a list"),
    ("def first ( xs ) : return xs [ 0 ]", "return the first item"),
    ("def last ( xs ) : return xs [ - 1 ]", "return the last item"),
    ("def upper ( s ) : return s . upper ( )", "convert a string to upper case"),
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_teacher(folder: Path, hidden: int = 32) -> str:
    """A random BertModel (2 layers) + word-level tokenizer saved as a teacher folder."""
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for code, doc in PAIRS for w in f"{code} {doc}".lower().split()})
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(SPECIALS + words)})
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=len(SPECIALS) + len(words), hidden_size=hidden, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=64))
    enc.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def write_data(path: Path, rotated: str | None = None) -> str:
    """CodeXGLUE jsonl; every pair in train, valid and test (so overfitting shows in BLEU).
    `rotated`: that split's docstrings moved one pair on and cut by their last word, so that
    what a model scores on it differs from what it scores on the others (a figure computed on
    the wrong split shows), and its outputs differ from its references, in length too (BLEU
    with hypotheses and references swapped shows)."""
    lines = []
    for split in ("train", "valid", "test"):
        for i, (code, doc) in enumerate(PAIRS):
            if split == rotated:
                doc = " ".join(PAIRS[(i + 1) % len(PAIRS)][1].split()[:-1])
            lines.append(json.dumps({"path": f"{split}{i}.py", "code_tokens": code.split(),
                                     "docstring_tokens": doc.split(), "partition": split}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def tiny_config(**overrides) -> Seq2SeqConfig:
    fields = dict(decoder_layers=2, decoder_ffn=64, dropout=0.0, source_len=32, target_len=12, beam=3,
                  lr=1e-2, batch_size=6, train_steps=120, eval_batch_size=8, seed=0)
    return Seq2SeqConfig(**{**fields, **overrides})


def tiny_model(folder: str, cfg: Seq2SeqConfig | None = None):
    """(Seq2Seq, tokenizer) around the teacher folder's encoder."""
    enc = BertModel.from_pretrained(folder)
    tok = BertTokenizerFast.from_pretrained(folder)
    return build_seq2seq(enc, tok, cfg or tiny_config()), tok


@pytest.fixture(scope="session")
def seq2seq_teacher(tmp_path_factory) -> str:
    """Folder of the tiny random teacher (loadable by training.models.load_encoder)."""
    return write_teacher(tmp_path_factory.mktemp("seq2seq_teacher"))


@pytest.fixture(scope="session")
def seq2seq_data(tmp_path_factory) -> str:
    return write_data(tmp_path_factory.mktemp("seq2seq_data") / "pairs.jsonl")


@pytest.fixture(scope="session")
def seq2seq_data_new_test(tmp_path_factory) -> str:
    """`seq2seq_data` with test's docstrings rotated: a memorised model scores high on valid, low on test."""
    return write_data(tmp_path_factory.mktemp("seq2seq_data_new_test") / "pairs.jsonl", rotated="test")


@pytest.fixture
def decoded_beams(monkeypatch):
    """spy(module) -> the list the beam of each `generate` call `module` makes is appended to
    (a memorised model decodes the same with a beam as greedily: the call shows the beam)."""
    from training.seq2seq import generate

    def spy(module) -> list[int]:
        beams = []

        def generate_spy(*args, beam=1, **kwargs):
            beams.append(beam)
            return generate(*args, beam=beam, **kwargs)

        monkeypatch.setattr(module, "generate", generate_spy)
        return beams

    return spy


@pytest.fixture
def tiny():
    """The helpers above: tiny.config(**overrides), tiny.model(folder, cfg), tiny.PAIRS."""
    return SimpleNamespace(config=tiny_config, model=tiny_model, PAIRS=PAIRS)


def exited_pid() -> int:
    """The pid of a process that has exited."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def staged(final: Path, pid: int, space: str | None = None, folder: bool = True) -> Path:
    """A half-written staging path of `final` (a folder, or a file), named as process `pid`
    names it (in the pid space `space`: this machine's by default)."""
    assert pid != os.getpid() and space != pid_space()
    ours = staging_path(final)
    path = ours.with_name(ours.name.replace(f"-{pid_space()}-{os.getpid()}", f"-{space or pid_space()}-{pid}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        path.mkdir()
        (path / "part").write_bytes(b"half written")
    else:
        path.write_bytes(b"half written")
    return path


@pytest.fixture
def stale():
    """Staging paths that killed writers leave: stale.staged(final, pid[, space, folder]),
    stale.exited_pid(); os.getppid() is a live process other than this one."""
    return SimpleNamespace(staged=staged, exited_pid=exited_pid)
