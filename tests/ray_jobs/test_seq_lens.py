"""Sequence lengths above the teacher's position table are refused before any work.

The limits are exact: the models run at each limit and fail one token above it (checked
here on tiny BERT and RoBERTa models), so the check refuses only what would crash.
"""

import pytest
import torch
from transformers import AutoModel

from ray_jobs import compress, prune
from ray_jobs.config import load_config, resolve_config_path
from ray_jobs.errors import ConfigError
from search.space import Arch, Teacher, teacher_spec
from training.models import build_student, student_config
from training.seq2seq import Seq2SeqConfig, build_seq2seq

CODEBERT, MINILM = teacher_spec("codebert-base"), teacher_spec("minilm-l6")


def test_usable_positions_follow_the_family():
    assert CODEBERT.usable_positions == 512  # 514 rows, positions start at 2
    assert MINILM.usable_positions == 512  # BERT: every row


def _smoke(tmp_path, *overrides):
    return load_config(resolve_config_path("smoke"), [f"results_dir={tmp_path}", *overrides])


@pytest.mark.parametrize(("job", "override", "key", "limit"), [
    (compress, "finetune.max_seq_len=1000", "finetune.max_seq_len", 512),
    (compress, "distill.max_seq_len=513", "distill.max_seq_len", 512),
    (compress, "distill.latency_seq_len=600", "distill.latency_seq_len", 512),
    (compress, "search.seq_len=100000", "search.seq_len", 512),  # trained a 45 MB "3 MB" student
    (prune, "seq2seq.source_len=513", "seq2seq.source_len", 512),
    (prune, "seq2seq.target_len=514", "seq2seq.target_len", 513),
])
def test_a_length_above_the_teachers_positions_names_key_and_limit(tmp_path, job, override, key, limit):
    cfg = _smoke(tmp_path, override)
    for teacher in (CODEBERT, MINILM):
        message = rf"^{key}: \d+ is above {limit}, the most that teacher '{teacher.name}' allows"
        with pytest.raises(ConfigError, match=message):
            compress.check_seq_lens(teacher, job.seq_lens(cfg, teacher))
    at_limit = override.split("=")[0] + f"={limit}"
    compress.check_seq_lens(CODEBERT, job.seq_lens(_smoke(tmp_path, at_limit), CODEBERT))


@pytest.mark.parametrize(("command", "override", "key"), [
    ("compress", "finetune.max_seq_len=1000", "finetune.max_seq_len"),
    ("compress", "distill.max_seq_len=513", "distill.max_seq_len"),
    ("compress", "search.seq_len=100000", "search.seq_len"),
    ("prune", "seq2seq.source_len=600", "seq2seq.source_len"),
])
def test_the_jobs_refuse_it_before_ray_starts(tmp_path, capsys, monkeypatch, command, override, key):
    from ray_jobs import sweep
    from ray_jobs.__main__ import main

    def no_ray(cfg):
        raise AssertionError("Ray started before the sequence lengths were checked")

    monkeypatch.setattr(sweep, "init_ray", no_ray)
    rc = main([command, "--config", "smoke", f"results_dir={tmp_path / 'res'}", override])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: {key}: ") and "minilm-l6" in err, err
    assert not (tmp_path / "res").exists()


def _tiny_teacher(family: str) -> Teacher:
    return Teacher(name=f"tiny-{family}", family=family, layers=1, hidden=8, heads=2, ffn=16, vocab=60,
                   max_positions=18, type_vocab=1)


def _runs(fn) -> bool:
    try:
        with torch.no_grad():
            fn()
    except (IndexError, RuntimeError):  # a lookup past the position table; BERT's buffers
        # of token types and positions are the table's size, so expanding them fails first
        return False
    return True


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_the_limits_are_exact(family):
    """At each limit the teacher, a student (its table is the teacher's size) and the
    code-to-text model run; one token more fails inside the model."""
    teacher = _tiny_teacher(family)
    limit = teacher.usable_positions
    torch.manual_seed(0)
    encoder = AutoModel.from_config(student_config(teacher.arch(), teacher)).eval()
    student = build_student(Arch(1, 8, 2, 16, 60), teacher).eval()

    def ids(n: int) -> torch.Tensor:
        return torch.randint(5, 60, (1, n))

    for model in (encoder, student):
        assert _runs(lambda m=model: m(input_ids=ids(limit)))
        assert not _runs(lambda m=model: m(input_ids=ids(limit + 1)))

    class Tok:  # the ids Seq2Seq takes from a tokenizer
        cls_token_id, sep_token_id = 2, 3
        pad_token_id = encoder.config.pad_token_id

    target_limit = prune.seq_lens(load_config(None, []), teacher)["seq2seq.target_len"][1]
    assert target_limit == limit + 1
    src = ids(4)
    mask = torch.ones_like(src)
    for target_len, ok in ((target_limit, True), (target_limit + 1, False)):
        model = build_seq2seq(encoder, Tok, Seq2SeqConfig(decoder_layers=1, decoder_ffn=16,
                                                          target_len=target_len)).eval()
        assert _runs(lambda m=model, t=target_len: m(src, mask, ids(t))) is ok
        assert _runs(lambda m=model, t=target_len: m.greedy(src, mask, t, stop=False)) is ok


@pytest.mark.parametrize(("overrides", "key"), [
    (["distill.latency_seq_len=600"], "distill.latency_seq_len"),
    (["distill.max_seq_len=1000"], "distill.max_seq_len"),  # timed at max_seq_len when unset
])
def test_the_codebert_architecture_timed_beside_students_bounds_the_latency_length(tmp_path, overrides, key):
    """A teacher with more positions (UniXcoder's 1026) passes `seq_lens` at 600, but the
    CodeBERT-base architecture reads 512: it was timed on 512 tokens against students on 600,
    and the speed-up called "the same settings"."""
    from training.evaluate import codebert_arch_calls

    with pytest.raises(ConfigError, match=rf"^{key}: \d+ is above 512, the most the CodeBERT-base "
                                          "architecture timed beside each student reads"):
        compress.check_codebert_length(_smoke(tmp_path, *overrides))
    compress.check_codebert_length(_smoke(tmp_path, *overrides, "distill.measure_codebert=false"))
    compress.check_codebert_length(_smoke(tmp_path, *overrides, "distill.latency_seq_len=512"))
    with pytest.raises(ValueError, match="seq_len: 513 is above 512"):
        codebert_arch_calls(seq_len=513)
