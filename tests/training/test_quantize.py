"""Quantization: fp16 / int8 / int8 with an fp32 output projection on unpruned and pruned
models; rows carry BLEU, size and latency (or the reason a variant could not run)."""

import json

import pytest
import torch
from torch import nn

from training.data import DataConfig, code_to_text_splits
from training.models import TeacherConfig
from training.prune import PruneConfig, prunable_linears, prunable_weights, run_schedule, schedules
from training.quantize import QuantizeConfig, quantize_model, quantize_rows, stored_sparsity
from training.seq2seq import Seq2Seq, load_seq2seq, prepare_seq2seq, tokenize_pairs

torch.set_num_threads(1)


def test_stored_sparsity_counts_the_int8_integers_that_are_zero(seq2seq_teacher, tiny):
    model, _ = tiny.model(seq2seq_teacher)
    with torch.no_grad():  # one encoder matrix of a spread that int8 keeps, plus a sixth far below its step
        w = model.encoder.encoder.layer[0].attention.self.query.weight
        w.copy_(torch.linspace(-1, 1, w.numel()).view(w.shape))
        w.view(-1)[: w.numel() // 6] = 1e-6
    int8 = quantize_model(model, "int8")
    linears = prunable_linears(int8, "encoder")
    assert len(linears) == len(prunable_weights(model, "encoder"))  # found although no longer nn.Linear
    zeros = {n: int((m.weight().int_repr() == 0).sum()) for n, m in linears.items()}
    query = "encoder.encoder.layer.0.attention.self.query"
    assert zeros[query] >= w.numel() // 6
    total = sum(m.weight().numel() for m in linears.values())
    assert stored_sparsity(int8, "encoder") == pytest.approx(sum(zeros.values()) / total)
    assert stored_sparsity(model, "encoder") == 0.0  # fp32: the exact zeros, none here


def test_variants_quantize_the_right_layers(seq2seq_teacher, tiny):
    model, _ = tiny.model(seq2seq_teacher)
    int8 = quantize_model(model, "int8")
    keep = quantize_model(model, "int8_fp32_head")
    assert type(int8.lm_head) is not nn.Linear and type(int8.decoder[0].self_q) is not nn.Linear
    assert type(keep.lm_head) is nn.Linear and type(keep.decoder[0].self_q) is not nn.Linear
    assert keep.lm_head.weight is keep.encoder.get_input_embeddings().weight  # still tied, fp32
    assert quantize_model(model, "fp16").dense.weight.dtype == torch.float16
    assert type(model.lm_head) is nn.Linear  # the original is untouched
    with pytest.raises(ValueError):
        quantize_model(model, "int4")


def test_quantize_rows_score_the_test_split_as_their_columns_say(seq2seq_teacher, seq2seq_data_new_test, tiny,
                                                                  tmp_path, monkeypatch, decoded_beams):
    """On test references the model did not memorise (so hypotheses and references differ, in
    length too): each row's greedy BLEU and sacrebleu corpus BLEU recomputed from the fp32
    model's outputs, `bleu_kept` its variant's BLEU over fp32's, and one beam decode per
    variant (a memorised model decodes the same greedily, so the beam is checked by the call)."""
    import training.quantize
    from training.bleu import codexglue_bleu, corpus_bleu
    from training.seq2seq import generate

    art = prepare_seq2seq(tiny.config(train_steps=100), DataConfig(path=seq2seq_data_new_test),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    beams = decoded_beams(training.quantize)
    rows = quantize_rows(art, QuantizeConfig(beam=2, variants=("fp32", "fp16", "int8")))
    assert beams.count(2) == len(rows) == 3 and {r["beam"] for r in rows} == {2}
    model, tok = load_seq2seq(art.model_dir, art.config)
    test = code_to_text_splits(art.data)["test"]
    hyps, refs = generate(model, tok, tokenize_pairs(test, tok, art.config), art.config), [p.target for p in test]
    fp32 = rows[0]
    assert fp32["variant"] == "fp32" and fp32["bleu_greedy"] == codexglue_bleu(hyps, refs)
    assert fp32["corpus_bleu_greedy"] == corpus_bleu(hyps, refs) != corpus_bleu(refs, hyps)
    for r in rows:
        assert r["bleu_kept"] == r["bleu_greedy"] / fp32["bleu_greedy"]
    # the tiny model's variants all decode alike: one that lost half its BLEU keeps 0.5, not 2
    real_row = training.quantize.variant_row

    def half_for_fp16(model, variant, *args, **kwargs):
        row, q = real_row(model, variant, *args, **kwargs)
        return (row | {"bleu_greedy": row["bleu_greedy"] / 2} if variant == "fp16" else row), q

    monkeypatch.setattr(training.quantize, "variant_row", half_for_fp16)
    halved = quantize_rows(art, QuantizeConfig(beam=1, variants=("fp32", "fp16")))
    assert [r["bleu_kept"] for r in halved] == [1.0, 0.5]


def test_quantize_rows_unpruned_and_pruned(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    art = prepare_seq2seq(tiny.config(train_steps=100), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    pcfg = PruneConfig(methods=("l1-global",), rewinds=("none",), selections=("pick_last",), batch_sizes=(6,),
                       rounds=(1,), iterations_per_round=2, rate=0.5, eval_every=2, valid_subset=2,
                       test_subset=2, beam=2)
    run_schedule(schedules(pcfg)[0], art, pcfg, tmp_path / "trial", report=lambda row: None)
    state = tmp_path / "trial" / "round_001" / "state.safetensors"
    rows = quantize_rows(art, QuantizeConfig(beam=1), pruned={"l1": state})
    assert [(r["model"], r["variant"]) for r in rows] == [
        (m, v) for m in ("unpruned", "l1") for v in ("fp32", "fp16", "int8", "int8_fp32_head")
    ]
    by = {(r["model"], r["variant"]): r for r in rows}
    assert by["unpruned", "fp32"]["sparsity"] == 0.0 and by["l1", "int8"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert by["unpruned", "fp32"]["bleu_greedy"] > 50  # the tiny model memorised its pairs
    assert by["unpruned", "fp32"]["bleu_kept"] == 1.0
    # memorised pairs: low NLL; half the encoder pruned with 2 steps of repair: higher
    assert by["unpruned", "fp32"]["nll"] < 0.5 and by["l1", "fp32"]["nll"] > by["unpruned", "fp32"]["nll"]
    assert by["unpruned", "int8"]["nll"] == pytest.approx(by["unpruned", "fp32"]["nll"], rel=0.1)
    # every variant runs on this CPU (fp16 too: torch has CPU half kernels): no row holds an error
    assert [r["error"] for r in rows] == [None] * len(rows)
    for r in rows:
        assert r["size_bytes"] > 0 and r["latency_ms"] <= r["latency_p90_ms"] and r["distinct_greedy"] > 0
        # each model's variants timed against its fp32 in one call (one device here)
        assert (r["latency_threads"], r["latency_runs"]) == (1, 20)
        assert r["speedup_vs_fp32"] == pytest.approx(by[r["model"], "fp32"]["latency_ms"] / r["latency_ms"])
    assert by["l1", "fp32"]["speedup_vs_fp32"] == 1.0
    for variant in ("fp16", "int8", "int8_fp32_head"):  # the memorised pairs survive each
        assert by["unpruned", variant]["bleu_kept"] == pytest.approx(1.0, abs=0.1), variant
    assert by["unpruned", "int8"]["size_bytes"] < by["unpruned", "fp32"]["size_bytes"]
    assert by["unpruned", "fp32"]["corpus_bleu_greedy"] > 30  # sacrebleu's corpus BLEU beside it
    assert {r["n_test"] for r in rows} == {len(code_to_text_splits(art.data)["test"])}  # no test_subset: all
    assert {r["device"] for r in rows} == {"cpu"}
    # the zeros each variant stores: fp32 holds the pruning's; int8 rounds small weights to 0 too
    assert by["l1", "fp32"]["stored_sparsity"] == by["l1", "fp32"]["sparsity"]
    assert by["unpruned", "int8"]["stored_sparsity"] > 0.0 == by["unpruned", "int8"]["sparsity"]
    assert by["l1", "int8"]["stored_sparsity"] >= by["l1", "int8"]["sparsity"]
    # each pruned model's sparsity is counted over its own schedule's scope
    wide = quantize_rows(art, QuantizeConfig(variants=("fp32",), beam=1), pruned={"l1": state}, scopes={"l1": "all"})
    assert 0.0 < wide[1]["sparsity"] < by["l1", "fp32"]["sparsity"]
    assert [r["scope"] for r in wide] == ["encoder", "all"] and by["l1", "int8"]["scope"] == "encoder"
    # the pruned models alone (a resumed job whose unpruned rows exist)
    alone = quantize_rows(art, QuantizeConfig(variants=("fp32",), beam=1), pruned={"l1": state}, unpruned=False)
    assert [(r["model"], r["nll"]) for r in alone] == [("l1", by["l1", "fp32"]["nll"])]


def test_prune_rounds_and_quantize_rows_time_generation_on_the_same_input(seq2seq_teacher, tiny, tmp_path,
                                                                           monkeypatch):
    """A schedule's rounds and the quantize rows (every model, every variant) time greedy
    generation on one input, the first test example whatever each config's test_subset: source
    length sets the encoder's and the cross-attention's cost. Here the test split is the valid
    split rotated by one, so the first example of each has another source length."""
    pairs = tiny.PAIRS
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(
        json.dumps({"path": f"{split}{i}.py", "code_tokens": code.split(), "docstring_tokens": doc.split(),
                    "partition": split})
        for split, order in (("train", pairs), ("valid", pairs), ("test", pairs[1:] + pairs[:1]))
        for i, (code, doc) in enumerate(order)) + "\n")
    art = prepare_seq2seq(tiny.config(train_steps=2), DataConfig(path=str(data)),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    _, tok = load_seq2seq(art.model_dir, art.config)
    splits = code_to_text_splits(art.data)
    first_test, first_valid = (tokenize_pairs(splits[s][:1], tok, art.config)[0][0] for s in ("test", "valid"))
    assert len(first_test) != len(first_valid)
    timed, greedy = [], Seq2Seq.greedy

    def spy(self, src, src_mask, max_len, stop=True):
        if not stop:  # the latency harness's fixed-work generation (scoring stops at eos)
            timed.append(src.tolist())
        return greedy(self, src, src_mask, max_len, stop)

    monkeypatch.setattr(Seq2Seq, "greedy", spy)
    pcfg = PruneConfig(methods=("l1-global",), rewinds=("none",), selections=("pick_last",), batch_sizes=(6,),
                       rounds=(1,), iterations_per_round=2, rate=0.5, eval_every=2, valid_subset=2,
                       test_subset=3, beam=2)
    run_schedule(schedules(pcfg)[0], art, pcfg, tmp_path / "trial", report=lambda row: None)
    in_prune = len(timed)
    state = tmp_path / "trial" / "round_001" / "state.safetensors"
    quantize_rows(art, QuantizeConfig(variants=("fp32", "int8"), test_subset=2, beam=1), pruned={"l1": state})
    # each round: itself and the dense model, 20 runs each in 4 alternated blocks, each block
    # after an untimed call (24 calls a model); each model's quantize rows the same, its
    # variants alternated with each other
    assert in_prune == 2 * 2 * 24 and len(timed) == in_prune + 4 * 24
    assert all(t == [first_test] for t in timed)


# ---------------------------------------------------------------- classifiers (compression job)


def _classifiers():
    from search.space import Arch, teacher_spec
    from training.models import BiLSTMSoft, build_student

    torch.manual_seed(0)
    student = build_student(Arch(2, 32, 4, 64, 200), teacher_spec("minilm-l6"), pair_mode="separate",
                            pad_token_id=0, pair_head="cosine").eval()
    return {"student": student, "bilstm": BiLSTMSoft(200, embed=24, hidden=24, dense=32, pair=True).eval()}


def _pair_inputs():
    from training.evaluate import random_inputs

    return random_inputs(200, 12, pair=True, batch=16, seed=1)


@pytest.mark.parametrize("name", ["student", "bilstm"])
def test_int8_classifier_quantizes_linear_and_lstm_and_stays_close(name):
    from training.quantize import quantize_classifier, saved_size_bytes

    model = _classifiers()[name]
    int8 = quantize_classifier(model, "int8")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and not [m for m in int8.modules() if type(m) is nn.Linear]  # every Linear swapped
    assert not [m for m in int8.modules() if type(m) is nn.LSTM]
    assert all(type(m) is nn.Linear for m in model.modules() if m in linears)  # the original is untouched
    assert saved_size_bytes(int8) < saved_size_bytes(model)
    inputs = _pair_inputs()
    with torch.no_grad():
        ref, got = model(**inputs).logits, int8(**inputs).logits
    assert not torch.equal(ref, got)  # int8 weights really changed the arithmetic ...
    assert torch.allclose(ref, got, atol=0.05 * ref.abs().max().item() + 1e-3)  # ... by little


@pytest.mark.parametrize("name", ["student", "bilstm"])
def test_int8_emb_also_quantizes_the_embedding_tables(name):
    from training.quantize import quantize_classifier, saved_size_bytes

    model = _classifiers()[name]
    int8, emb = quantize_classifier(model, "int8"), quantize_classifier(model, "int8_emb")
    tables = {n: type(m) for n, m in emb.named_modules() if "Embedding" in type(m).__name__}
    assert {n for n, t in tables.items() if t is nn.Embedding} == (
        {"encoder.embeddings.token_type_embeddings"} if name == "student" else set())  # 2 rows, see why there
    assert [t for t in tables.values() if t is not nn.Embedding]  # the others are int8 lookups
    assert saved_size_bytes(emb) < saved_size_bytes(int8)
    inputs = _pair_inputs()
    with torch.no_grad():
        ref, got = model(**inputs).logits, emb(**inputs).logits
    assert torch.allclose(ref, got, atol=0.05 * ref.abs().max().item() + 1e-3)


def test_half_classifiers_cast_every_weight_and_unknown_variants_are_refused():
    from training.quantize import quantize_classifier

    model = _classifiers()["student"]
    for variant, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        assert {p.dtype for p in quantize_classifier(model, variant).parameters()} == {dtype}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="int4"):
        quantize_classifier(model, "int4")


def test_classifier_variant_rows_compare_each_variant_with_fp32():
    from training.quantize import classifier_variant_rows

    model = _classifiers()["student"]
    accuracy = {torch.float32: 0.8, torch.bfloat16: 0.6}
    latency = {torch.float32: 10.0, torch.bfloat16: 4.0}

    def dtype(q):
        return next(q.parameters()).dtype

    def time(built):  # every variant that scored, timed against each other
        assert list(built) == ["fp32", "bf16", "fp16"]
        return {v: {"error": RuntimeError("no half kernel")} if dtype(q) == torch.float16 else
                {"median_ms": latency[dtype(q)], "p90_ms": 2 * latency[dtype(q)], "runs": 20, "threads": 1}
                for v, q in built.items()}

    rows = classifier_variant_rows(model, ("bf16", "fp16"), lambda q: {"accuracy": accuracy.get(dtype(q), 0.7),
                                                                     "f1": 0.5}, time)
    by = {r["variant"]: r for r in rows}
    assert [r["variant"] for r in rows] == ["fp32", "bf16", "fp16"]
    assert by["fp32"]["accuracy_kept"] == 1.0 and by["fp32"]["speedup_vs_fp32"] == 1.0
    assert by["bf16"]["accuracy_kept"] == pytest.approx(0.75) and by["bf16"]["speedup_vs_fp32"] == 2.5
    assert by["bf16"]["size_bytes"] < by["fp32"]["size_bytes"] and by["bf16"]["latency_p90_ms"] == 8.0
    assert "no half kernel" in by["fp16"]["error"] and by["fp16"]["speedup_vs_fp32"] is None
    assert {r["device"] for r in rows} == {"cpu"}
    # how each variant was timed, as the prune job's rows say it (the summary read it from elsewhere)
    assert (by["bf16"]["latency_threads"], by["bf16"]["latency_runs"]) == (1, 20) and "latency_runs" not in by["fp16"]
