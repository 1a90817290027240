"""Code-to-text model: cached decoding equals the full forward pass, beam 1 equals greedy,
the model overfits a handful of pairs, prepare_seq2seq caches by key."""

import hashlib
import itertools
import json
import os
import pickle
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from training.data import DataConfig, PairText, data_fingerprint
from training.finetune import cache_fields
from training.models import TeacherConfig
from training.seq2seq import (
    NOT_IN_KEY,
    SEQ2SEQ_VERSION,
    Seq2Seq,
    Seq2SeqConfig,
    artifacts_key,
    batch_stream,
    bleu_of,
    collate,
    extra_train_pairs,
    fine_tune,
    generate,
    load_seq2seq,
    make_optimizer,
    prepare_seq2seq,
    tenths,
    token_nll,
    tokenize_pairs,
    train_steps,
    training_splits,
)

torch.set_num_threads(1)


def _examples(tiny, tok, cfg):
    pairs = [PairText(c, d) for c, d in tiny.PAIRS]
    return tokenize_pairs(pairs, tok, cfg), [d for _, d in tiny.PAIRS]


def test_cached_decoding_matches_full_forward(seq2seq_teacher, tiny):
    model, tok = tiny.model(seq2seq_teacher)
    model.eval()
    src, mask, tgt = collate(_examples(tiny, tok, tiny.config())[0], model.pad_id)
    with torch.no_grad():
        state = model.start(src, mask)
        h = model._embed(tgt[:, :-1], 0)
        for layer, kv in zip(model.decoder, state["kv"], strict=True):
            h = layer(h, kv, state["mask"])
        full = model._logits(h).log_softmax(-1)  # (B, T-1, V)
        state = model.start(src, mask)
        steps = torch.stack([model.step(state, tgt[:, t : t + 1]) for t in range(tgt.size(1) - 1)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_target_positions_continue_where_the_prefix_ended(family, tiny):
    """A target chunk after `start` tokens is embedded at the positions the encoder's own
    embeddings give those tokens in the whole sequence (RoBERTa counts from pad + 1)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(family, vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=40, pad_token_id=1)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(config).eval()
    model = Seq2Seq(encoder, tiny.config(), bos_id=0, eos_id=2, pad_id=1).eval()
    tokens = torch.randint(3, 50, (2, 9))
    whole = encoder.embeddings(input_ids=tokens)  # (B, T, W), numbered by the encoder itself
    with torch.no_grad():
        assert torch.allclose(model._embed(tokens, 0), whole, atol=1e-6)
        assert torch.allclose(model._embed(tokens[:, 4:5], 4), whole[:, 4:5], atol=1e-6)
        assert not torch.allclose(model._embed(tokens[:, 4:5], 0), whole[:, 4:5], atol=1e-6)


def test_output_projection_is_tied(seq2seq_teacher, tiny):
    model, _ = tiny.model(seq2seq_teacher)
    assert model.lm_head.weight is model.encoder.get_input_embeddings().weight


def test_overfits_a_handful_of_pairs_and_beam1_is_greedy(seq2seq_teacher, tiny):
    cfg = tiny.config()
    model, tok = tiny.model(seq2seq_teacher, cfg)
    examples, refs = _examples(tiny, tok, cfg)
    before, nll_before = bleu_of(model, tok, examples, refs, cfg), token_nll(model, examples, cfg)
    opt, sched = make_optimizer(model, cfg, cfg.train_steps)
    loss = train_steps(model, batch_stream(examples, cfg.batch_size, 0), cfg.train_steps, opt, sched, cfg)
    greedy = bleu_of(model, tok, examples, refs, cfg)
    beam = bleu_of(model, tok, examples, refs, cfg, beam=3)
    assert before < 20 and greedy > 60 and beam > 60, (before, greedy, beam, loss)
    assert token_nll(model, examples, cfg) < nll_before / 4
    src, mask, _ = collate(examples, model.pad_id)
    assert model.beam_search(src, mask, cfg.target_len, beam=1) == model.greedy(src, mask, cfg.target_len)



def _poisoned_from(call: int, model: Seq2Seq):
    """`model`'s forward with its loss turned NaN from the `call`-th training call on."""
    forward, calls = model.forward, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = forward(*args, **kwargs)
        return loss * float("nan") if len(calls) >= call else loss
    return poisoned


def test_a_non_finite_loss_stops_training_before_its_step(seq2seq_teacher, tiny):
    cfg = tiny.config()
    model, tok = tiny.model(seq2seq_teacher, cfg)
    examples, _ = _examples(tiny, tok, cfg)
    opt, sched = make_optimizer(model, cfg, cfg.train_steps)
    batches = batch_stream(examples, cfg.batch_size, 0)
    train_steps(model, batches, 2, opt, sched, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.forward = _poisoned_from(2, model)
    with pytest.raises(FloatingPointError, match=r"^repair, step 2 of 5: loss is nan \(training diverged"):
        train_steps(model, batches, 5, opt, sched, cfg, desc="repair")
    after = model.state_dict()
    # one clean step ran; the poisoned one never reached the weights
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_an_infinite_gradient_with_a_finite_loss_is_caught_after_the_steps(seq2seq_teacher, tiny):
    cfg = tiny.config()
    model, tok = tiny.model(seq2seq_teacher, cfg)
    examples, _ = _examples(tiny, tok, cfg)
    opt, sched = make_optimizer(model, cfg, cfg.train_steps)
    name, weight = next((n, p) for n, p in model.named_parameters() if n.startswith("decoder."))
    weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    with pytest.raises(FloatingPointError, match=r"after step 1: weight .+ is not finite"):
        train_steps(model, batch_stream(examples, cfg.batch_size, 0), 1, opt, sched, cfg)


def test_a_diverged_fine_tuning_is_never_cached(seq2seq_teacher, seq2seq_data, tiny, tmp_path, monkeypatch):
    cfg = tiny.config(train_steps=20)
    data, teacher = DataConfig(path=seq2seq_data), TeacherConfig(name=seq2seq_teacher)
    forward = Seq2Seq.forward
    monkeypatch.setattr(Seq2Seq, "forward", lambda self, *a, **k: forward(self, *a, **k) * float("nan"))
    with pytest.raises(FloatingPointError, match=r"code-to-text fine-tuning, tenth 1, step 1 of 2: loss is nan"):
        prepare_seq2seq(cfg, data, teacher, tmp_path / "work")
    monkeypatch.setattr(Seq2Seq, "forward", forward)
    art = prepare_seq2seq(cfg, data, teacher, tmp_path / "work")  # trained anew, not read back
    assert art.metrics["train_loss"] == art.metrics["train_loss"]  # not NaN
    assert all(torch.isfinite(v).all() for v in load_file(art.finetuned_path).values())
    # a diverged model cached before this check (its meta.json records a NaN loss) is fine-tuned again
    meta = Path(art.model_dir) / "meta.json"
    meta.write_text(meta.read_text().replace(json.dumps(art.metrics["train_loss"]), "NaN", 1))
    assert prepare_seq2seq(cfg, data, teacher, tmp_path / "work").metrics["train_loss"] == art.metrics["train_loss"]
    assert "NaN" not in meta.read_text()
    meta.write_text(meta.read_text().replace(json.dumps(art.metrics["train_loss"]), "Infinity", 1))  # nor an infinite one
    assert prepare_seq2seq(cfg, data, teacher, tmp_path / "work").metrics["train_loss"] == art.metrics["train_loss"]
    assert "Infinity" not in meta.read_text()


def test_reuse_only_reads_the_cached_model_and_never_fine_tunes(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    from training.finetune import NotCached

    cfg = tiny.config(train_steps=2)
    data, teacher = DataConfig(path=seq2seq_data), TeacherConfig(name=seq2seq_teacher)
    with pytest.raises(NotCached, match=f"no fine-tuned code-to-text model cached in {tmp_path.resolve()}/work/seq2seq-"):
        prepare_seq2seq(cfg, data, teacher, tmp_path / "work", reuse_only=True)
    assert not any((tmp_path / "work").glob("seq2seq-*"))
    art = prepare_seq2seq(cfg, data, teacher, tmp_path / "work")
    assert prepare_seq2seq(cfg, data, teacher, tmp_path / "work", reuse_only=True).model_dir == art.model_dir


def test_bf16_training_steps_learn_and_keep_fp32_weights(seq2seq_teacher, tiny):
    cfg = replace(tiny.config(), precision="bf16")
    model, tok = tiny.model(seq2seq_teacher, cfg)
    examples, _ = _examples(tiny, tok, cfg)
    nll_before = token_nll(model, examples, cfg)
    linear = next(m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear))
    dtypes = set()
    hook = linear.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
    opt, sched = make_optimizer(model, cfg, cfg.train_steps)
    train_steps(model, batch_stream(examples, cfg.batch_size, 0), cfg.train_steps, opt, sched, cfg)
    hook.remove()
    assert dtypes == {torch.bfloat16}  # the steps ran under bf16 autocast
    assert token_nll(model, examples, cfg) < nll_before / 4  # as the fp32 overfitting test
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="precision"):
        replace(cfg, precision="fp16")
    # an fp32 model's cache key is what it was before the field existed; bf16 is another model
    data, teacher = DataConfig(), TeacherConfig()
    assert artifacts_key(cfg, data, teacher) != artifacts_key(replace(cfg, precision="fp32"), data, teacher)

def test_auto_precision_prepares_the_model_of_the_precision_it_runs_in(seq2seq_teacher, seq2seq_data, tiny,
                                                                         tmp_path, monkeypatch):
    """On a CPU without native bf16, "auto" fine-tunes in fp32 and is the fp32 model's cache entry;
    the artifacts keep the setting (a trial elsewhere resolves it on its own device)."""
    import training.finetune

    monkeypatch.setattr(training.finetune, "native_bf16", lambda device_type: False)
    cfg = tiny.config(train_steps=4)
    data, teacher = DataConfig(path=seq2seq_data), TeacherConfig(name=seq2seq_teacher)
    auto = prepare_seq2seq(replace(cfg, precision="auto"), data, teacher, tmp_path / "work")
    assert auto.key == artifacts_key(cfg, data, teacher) and auto.config.precision == "auto"
    assert json.loads((Path(auto.model_dir) / "meta.json").read_text())["config"]["precision"] == "fp32"
    assert prepare_seq2seq(cfg, data, teacher, tmp_path / "work").model_dir == auto.model_dir


def _extra_set(path: Path, tiny) -> Path:
    """Three new pairs spread over the splits, one reusing a task function, one a task summary."""
    code, doc = tiny.PAIRS[0]
    rows = [(f"def g{i} ( ) : return {i}", f"return the number {i}", split)
            for i, split in enumerate(("train", "valid", "test"))]
    rows += [(code, "a new summary", "train"), ("def h ( ) : pass", doc, "test")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"path": f"x{i}.py", "code_tokens": c.split(), "docstring_tokens": d.split(),
                                        "partition": s}) + "\n" for i, (c, d, s) in enumerate(rows)))
    return path


def test_extra_train_pairs_drop_held_out_texts_and_cap(tiny, tmp_path):
    held = [PairText(c, d) for c, d in tiny.PAIRS]
    cfg = tiny.config(train_extra=(str(_extra_set(tmp_path / "extra.jsonl", tiny)),))
    extra = extra_train_pairs(cfg, held)
    assert extra == [PairText(f"def g{i} ( ) : return {i}", f"return the number {i}") for i in range(3)]
    capped = extra_train_pairs(replace(cfg, max_train_extra=2), held)
    assert len(capped) == 2 and set(capped) <= set(extra)


def test_train_extra_joins_fine_tuning_under_a_content_key(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    data, teacher = DataConfig(path=seq2seq_data), TeacherConfig(name=seq2seq_teacher)
    base = tiny.config(train_steps=10)
    cfg = replace(base, train_extra=(str(_extra_set(tmp_path / "a" / "extra.jsonl", tiny)),))
    art = prepare_seq2seq(cfg, data, teacher, tmp_path / "work")
    assert art.metrics["train_examples"] == len(tiny.PAIRS) + 3  # the task's train split + 3 new pairs
    moved = replace(cfg, train_extra=(str(_extra_set(tmp_path / "b" / "extra.jsonl", tiny)),))
    assert artifacts_key(moved, data, teacher) == art.key  # same content elsewhere: the same model
    moved_file = tmp_path / "b" / "extra.jsonl"
    moved_file.write_text(moved_file.read_text().replace("number", "numeral"))
    assert artifacts_key(moved, data, teacher) != art.key
    assert len({art.key, artifacts_key(base, data, teacher), artifacts_key(replace(cfg, max_train_extra=2), data, teacher)}) == 3


def test_prepare_seq2seq_fine_tunes_once_and_reuses(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    cfg = tiny.config(train_steps=30)
    data = DataConfig(path=seq2seq_data)
    teacher = TeacherConfig(name=seq2seq_teacher)
    art = prepare_seq2seq(cfg, data, teacher, tmp_path / "work")
    assert Path(art.model_dir).is_absolute() and Path(art.finetuned_path).exists()
    assert art.metrics["train_examples"] == len(tiny.PAIRS)
    written = Path(art.finetuned_path).stat().st_mtime_ns
    again = pickle.loads(pickle.dumps(prepare_seq2seq(cfg, data, teacher, tmp_path / "work")))
    assert again == art and Path(art.finetuned_path).stat().st_mtime_ns == written  # reused, not re-trained
    other = prepare_seq2seq(tiny.config(train_steps=31), data, teacher, tmp_path / "work")
    assert other.key != art.key
    fine, _ = load_seq2seq(art.model_dir, cfg)
    pre, _ = load_seq2seq(art.model_dir, cfg, weights="pretrained")
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(fine.state_dict()[name], pre.state_dict()[name])
    assert fine.lm_head.weight is fine.encoder.get_input_embeddings().weight


def test_the_cache_key_leaves_out_only_what_fine_tuning_never_reads(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    """`beam` shapes the pruning and quantization rows' beam BLEU, not the fine-tuned model or
    its metrics (fine-tuning scores greedy BLEU): another beam reuses the model. Every other
    field changes the key."""
    data, teacher = DataConfig(path=seq2seq_data), TeacherConfig(name=seq2seq_teacher)
    cfg = tiny.config(train_steps=10)
    art = prepare_seq2seq(cfg, data, teacher, tmp_path / "work")
    written = Path(art.finetuned_path).stat().st_mtime_ns
    beam7 = prepare_seq2seq(replace(cfg, beam=7), data, teacher, tmp_path / "work")
    assert beam7.key == art.key and beam7.metrics == art.metrics and beam7.config.beam == 7
    assert Path(art.finetuned_path).stat().st_mtime_ns == written  # reused, not re-trained
    # ... because fine-tuning at another beam computes the same weights and metrics
    runs = []
    for beam in (1, 7):
        model, tok = tiny.model(seq2seq_teacher, replace(cfg, beam=beam))
        metrics = fine_tune(model, tok, training_splits(cfg, data), replace(cfg, beam=beam))
        clock_free = {k: v for k, v in metrics.items() if k != "train_seconds"}
        clock_free["curve"] = [{k: v for k, v in c.items() if k != "seconds"} for c in metrics["curve"]]
        runs.append((model.state_dict(), clock_free))
    assert runs[0][1] == runs[1][1]
    assert all(torch.equal(v, runs[1][0][k]) for k, v in runs[0][0].items())
    changed = {"decoder_layers": 1, "decoder_ffn": 32, "dropout": 0.2, "source_len": 16, "target_len": 10,
               "lr": 1e-3, "decoder_lr_scale": 2.0, "weight_decay": 0.1, "adam_eps": 1e-6, "max_grad_norm": 0.5,
               "warmup_steps": 2, "batch_size": 3, "train_steps": 11, "eval_batch_size": 4, "eval_examples": 3,
               "seed": 1, "precision": "bf16"}
    # a new field must be placed: in the key (here) or out of it (NOT_IN_KEY); the extra data
    # is keyed by content (test_train_extra_joins_fine_tuning_under_a_content_key)
    assert {f.name for f in fields(Seq2SeqConfig)} == {*changed, *NOT_IN_KEY, "train_extra", "max_train_extra"}
    for name, value in changed.items():
        assert artifacts_key(replace(cfg, **{name: value}), data, teacher) != art.key, name


def test_a_killed_fine_tunings_staging_folder_is_removed(seq2seq_teacher, seq2seq_data, tiny, stale, tmp_path):
    work = tmp_path / "work"
    dead = stale.staged(work / "seq2seq-0123456789abcdef", stale.exited_pid())
    live = stale.staged(work / "seq2seq-0123456789abcdef", os.getppid())  # another process, alive
    art = prepare_seq2seq(tiny.config(train_steps=2), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), work)
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in work.iterdir()) == sorted([Path(art.model_dir).name, live.name])


def test_tenths_cut_the_steps_into_at_most_ten_near_equal_chunks():
    assert tenths(1400) == [140] * 10
    assert tenths(25) == [3] * 5 + [2] * 5
    assert tenths(7) == [1] * 7 and tenths(0) == []


def test_fine_tuning_curve_checks_each_tenth_without_changing_the_weights(seq2seq_teacher, tiny):
    """The curve's validation checks run in eval mode and draw no random numbers: with dropout
    on, fine_tune ends on the same weights as one uninterrupted run of the same steps."""
    cfg = tiny.config(train_steps=25, dropout=0.1, decoder_lr_scale=0.5)
    pairs = [PairText(c, d) for c, d in tiny.PAIRS]
    torch.manual_seed(0)
    model, tok = tiny.model(seq2seq_teacher, cfg)
    torch.manual_seed(0)
    plain, _ = tiny.model(seq2seq_teacher, cfg)
    torch.manual_seed(1)
    metrics = fine_tune(model, tok, {"train": pairs, "valid": pairs}, cfg)
    torch.manual_seed(1)
    opt, sched = make_optimizer(plain, cfg, cfg.train_steps)
    batches = batch_stream(tokenize_pairs(pairs, tok, cfg), cfg.batch_size, cfg.seed)
    loss = train_steps(plain, batches, cfg.train_steps, opt, sched, cfg)
    for name, value in plain.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert metrics["train_loss"] == pytest.approx(loss)
    assert (metrics["precision"], metrics["emulated"]) == (cfg.precision, None) == ("fp32", None)
    curve = metrics["curve"]
    assert [c["epoch"] for c in curve] == list(range(1, 11))
    assert [c["steps"] for c in curve] == [3, 6, 9, 12, 15, 17, 19, 21, 23, 25]
    assert curve[-1]["valid_nll"] == pytest.approx(token_nll(model, tokenize_pairs(pairs, tok, cfg), cfg))
    assert curve[-1]["valid_nll"] < curve[0]["valid_nll"]  # lr 1e-2 on the pairs it validates on
    # each tenth's own mean loss: weighted by its steps they make the run's mean
    sizes = tenths(cfg.train_steps)
    assert sum(c["train_loss"] * n for c, n in zip(curve, sizes, strict=True)) / cfg.train_steps == pytest.approx(loss)
    # the encoder's lr (linear decay from cfg.lr, no warm-up), not the decoder's (x decoder_lr_scale)
    assert cfg.warmup_steps == 0 and cfg.decoder_lr_scale != 1
    assert [c["lr"] for c in curve] == pytest.approx([cfg.lr * (25 - c["steps"]) / 25 for c in curve])


def test_loss_is_mean_token_nll_and_ignores_padding(seq2seq_teacher, tiny):
    """forward() projects only real target positions: its loss equals the mean NLL of the
    full projection over non-pad gold tokens, and extra padding changes nothing."""
    model, tok = tiny.model(seq2seq_teacher)
    model.eval()
    src, mask, tgt = collate(_examples(tiny, tok, tiny.config())[0], model.pad_id)
    assert (tgt == model.pad_id).any()  # the batch really is padded
    with torch.no_grad():
        loss = model(src, mask, tgt)
        state = model.start(src, mask)
        h = model._embed(tgt[:, :-1], 0)
        for layer, kv in zip(model.decoder, state["kv"], strict=True):
            h = layer(h, kv, state["mask"])
        logp = model._logits(h).log_softmax(-1)  # (B, T-1, V)
        gold = tgt[:, 1:]
        nll = -logp.gather(-1, gold[..., None])[..., 0]
        real = gold != model.pad_id
        reference = nll[real].sum() / real.sum()
        padded = torch.cat([tgt, torch.full((tgt.size(0), 3), model.pad_id)], 1)
        torch.testing.assert_close(loss, reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(src, mask, padded), loss, atol=1e-5, rtol=1e-5)


def test_optimizer_step_equals_plain_adamw(seq2seq_teacher, tiny):
    """make_optimizer's (fused) AdamW makes the same update as the reference implementation,
    encoder at lr and decoder at lr * decoder_lr_scale."""
    cfg = tiny.config(lr=1e-3, decoder_lr_scale=4.0, weight_decay=0.01)
    model, tok = tiny.model(seq2seq_teacher, cfg)
    twin, _ = tiny.model(seq2seq_teacher, cfg)
    twin.load_state_dict(model.state_dict())
    opt, _ = make_optimizer(model, cfg, total_steps=10)
    enc = {id(p) for p in twin.encoder.parameters()}
    params = list(twin.parameters())
    ref = torch.optim.AdamW(
        [{"params": [p for p in params if id(p) in enc], "lr": cfg.lr},
         {"params": [p for p in params if id(p) not in enc], "lr": cfg.lr * cfg.decoder_lr_scale}],
        eps=cfg.adam_eps, weight_decay=cfg.weight_decay, foreach=False,
    )
    src, mask, tgt = collate(_examples(tiny, tok, cfg)[0], model.pad_id)
    model.eval(), twin.eval()
    for _ in range(2):
        for m, o in ((model, opt), (twin, ref)):
            o.zero_grad()
            m(src, mask, tgt).backward()
            o.step()
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        if name.endswith("_k.bias"):  # a key bias shifts all scores of a query alike: its gradient is
            continue  # rounding noise, which Adam's normalisation scales up to +-lr either way
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(model.decoder[0].ffn_in.weight, tiny.model(seq2seq_teacher, cfg)[0].decoder[0].ffn_in.weight)


def test_distinct_fraction_flags_a_constant_summary():
    from training.seq2seq import distinct_fraction

    assert distinct_fraction(["return the value ."] * 4) == 0.25
    assert distinct_fraction(["a", "b", "a", "c"]) == 0.75
    assert distinct_fraction([]) == 0.0


def test_round_warmup_overrides_the_fine_tuning_warmup():
    """A short pruning round must not inherit a warm-up longer than itself."""
    from training.seq2seq import Seq2SeqConfig, make_optimizer

    model = torch.nn.Module()
    model.encoder = torch.nn.Linear(2, 2)
    model.head = torch.nn.Linear(2, 2)
    cfg = Seq2SeqConfig(lr=1e-3, decoder_lr_scale=2.0, warmup_steps=50)
    inherited, _ = make_optimizer(model, cfg, 16)
    own, _ = make_optimizer(model, cfg, 16, warmup_steps=0)
    assert [g["lr"] for g in inherited.param_groups] == pytest.approx([1e-3 / 50, 2e-3 / 50])
    assert [g["lr"] for g in own.param_groups] == pytest.approx([1e-3, 2e-3])


def test_token_nll_weighs_every_reference_token_alike(seq2seq_teacher, tiny):
    """token_nll is the NLL summed over all reference tokens / their count, whatever the
    batching: not a mean of per-batch means (references differ in length)."""
    model, tok = tiny.model(seq2seq_teacher)
    examples, _ = _examples(tiny, tok, tiny.config())
    assert len({len(t) for _, t in examples}) > 1
    with torch.no_grad():
        per_example = [(float(model(*collate([e], model.pad_id))), len(e[1]) - 1) for e in examples]
    reference = sum(nll * n for nll, n in per_example) / sum(n for _, n in per_example)
    for batch in (1, 3, len(examples)):
        assert token_nll(model, examples, tiny.config(eval_batch_size=batch)) == pytest.approx(reference, rel=1e-5)


def _copy_fresh(folder: Path, to: Path) -> Path:
    """A copy whose files have new times, as a fresh clone or download has."""
    shutil.copytree(folder, to, copy_function=shutil.copy)
    return to


def test_the_cache_key_follows_the_teacher_folders_files_not_its_path(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    """A teacher folder whose weights, config.json or tokenizer were replaced in place is another
    model; the same files in another folder are the same one (as data, keyed by content)."""
    data, cfg = DataConfig(path=seq2seq_data), tiny.config()

    def key_of(folder) -> str:
        return artifacts_key(cfg, data, TeacherConfig(name=str(folder)))

    key = key_of(seq2seq_teacher)
    assert key_of(_copy_fresh(Path(seq2seq_teacher), tmp_path / "elsewhere" / "teacher")) == key
    weights = _copy_fresh(Path(seq2seq_teacher), tmp_path / "weights")
    tensors = load_file(weights / "model.safetensors")
    name = sorted(tensors)[0]
    save_file(tensors | {name: tensors[name] + 1}, weights / "model.safetensors", metadata={"format": "pt"})
    config = _copy_fresh(Path(seq2seq_teacher), tmp_path / "config")
    (config / "config.json").write_text((config / "config.json").read_text().replace('"hidden_dropout_prob": 0.1',
                                                                                     '"hidden_dropout_prob": 0.2'))
    tokenizer = _copy_fresh(Path(seq2seq_teacher), tmp_path / "tokenizer")
    (tokenizer / "tokenizer.json").write_text((tokenizer / "tokenizer.json").read_text().replace('"add"', '"sum"'))
    assert len({key, key_of(weights), key_of(config), key_of(tokenizer)}) == 4


def test_a_hub_teachers_cache_key_is_what_it_was(seq2seq_data, tiny):
    data, cfg, hub = DataConfig(path=seq2seq_data), tiny.config(), TeacherConfig(name="microsoft/codebert-base")
    fields_ = {k: v for k, v in cache_fields(cfg).items() if k not in ("train_extra", "max_train_extra", *NOT_IN_KEY)}
    before = json.dumps([SEQ2SEQ_VERSION, fields_, {"name": hub.name}, data_fingerprint(data)], sort_keys=True)
    assert artifacts_key(cfg, data, hub) == hashlib.sha256(before.encode()).hexdigest()[:16]


class _Markov:
    """A decoder whose next-token probabilities depend on the last token alone (`rows[last]`;
    ids: 0 bos, 1 eos, 2 A, 3 B): greedy and beam search on it are worked out by hand."""

    bos_id, eos_id = 0, 1
    reorder = staticmethod(Seq2Seq.reorder)

    def __init__(self, rows):
        self.table = torch.tensor(rows).log()

    def start(self, src, mask):
        return {"kv": [], "mask": mask[:, None, None, :].bool(), "cache": [], "t": 0}

    def step(self, state, tokens):
        state["t"] += 1
        return self.table[tokens[:, -1]]


ONE_SOURCE = torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long)


def test_beam_search_finds_what_greedy_misses():
    # A first (0.55) then never likely to end; B first (0.45) then ends at once (0.95): B wins
    toy = _Markov([[1e-9, 1e-4, 0.55, 0.45 - 1e-4], [0.25] * 4, [1e-9, 0.3, 0.35, 0.35], [1e-9, 0.95, 0.025, 0.025]])
    assert Seq2Seq.beam_search(toy, *ONE_SOURCE, 10, 3) == [[3]]
    assert Seq2Seq.greedy(toy, *ONE_SOURCE, 4) == [[2, 2, 2]]  # max_len - 1 tokens after bos


def test_beam_search_that_never_ends_is_cut_as_greedy_is():
    toy = _Markov([[1e-9, 1e-9, 0.6, 0.4], [0.25] * 4, [1e-9, 1e-9, 0.7, 0.3], [1e-9, 1e-9, 0.2, 0.8]])
    assert Seq2Seq.beam_search(toy, *ONE_SOURCE, 4, 2) == Seq2Seq.greedy(toy, *ONE_SOURCE, 4) == [[2, 2, 2]]


def test_source_padding_changes_no_encoder_memory(seq2seq_teacher, tiny):
    model, tok = tiny.model(seq2seq_teacher)
    model.eval()
    examples = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS], tok, tiny.config())
    src, mask, _ = collate(examples, model.pad_id)
    with torch.no_grad():
        batch = model.start(src, mask)["kv"][0][0]
        for i, example in enumerate(examples):
            alone = model.start(*collate([example], model.pad_id)[:2])["kv"][0][0]
            torch.testing.assert_close(batch[i, :, :len(example[0])], alone[0], atol=1e-5, rtol=1e-5)


def test_batch_stream_drops_the_partial_batch():
    assert all(len(b) == 3 for b in itertools.islice(batch_stream(list(range(7)), 3, 0), 4))


def test_training_mode_is_restored_after_each_after_step(seq2seq_teacher, tiny):
    cfg = tiny.config()
    model, tok = tiny.model(seq2seq_teacher, cfg)
    examples = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS], tok, cfg)
    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    optimizer, schedule = make_optimizer(model, cfg, 3)
    train_steps(model, batch_stream(examples, cfg.batch_size, 0), 3, optimizer, schedule, cfg,
                after_step=lambda i: model.eval())  # pruning's evaluations leave the model in eval
    assert modes == [True] * 3


def test_a_dropout_of_one_is_refused():
    with pytest.raises(ValueError, match="dropout"):
        Seq2SeqConfig(dropout=1.0)


def test_generate_decodes_with_the_beam_it_is_given(seq2seq_teacher, tiny, monkeypatch):
    cfg = tiny.config(beam=7)
    model, tok = tiny.model(seq2seq_teacher, cfg)
    examples = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS], tok, cfg)
    beams = []
    monkeypatch.setattr(model, "beam_search", lambda s, m, n, beam: beams.append(beam) or [[] for _ in range(len(s))])
    generate(model, tok, examples, cfg, beam=2)
    assert beams == [2]
