"""Pruning: the prunable set, exact pruned fractions per method and scope, global versus
layer-wise, rewinding, zeros that survive training, lottery-ticket rounds with resume."""

import copy
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_model

from training import prune as prune_module
from training.bleu import codexglue_bleu, corpus_bleu
from training.data import DataConfig, PairText, code_to_text_splits, evaluation_subset
from training.models import TeacherConfig
from training.prune import (
    METHODS,
    PruneConfig,
    RoundSelector,
    apply_masks,
    check_prunes_some_but_not_all,
    compute_masks,
    generation_latency,
    load_round,
    masked_gradients,
    measured_sparsity,
    nominal_sparsity,
    prunable_sizes,
    prunable_weights,
    rewind,
    run_schedule,
    schedules,
)
from training.seq2seq import (
    Seq2Seq,
    batch_stream,
    generate,
    load_seq2seq,
    make_optimizer,
    prepare_seq2seq,
    token_nll,
    tokenize_pairs,
    train_steps,
)

torch.set_num_threads(1)

ENCODER_SUFFIXES = {
    "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
    "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight",
}


def _ones(weights):
    return {n: torch.ones(w.shape, dtype=torch.bool) for n, w in weights.items()}


def test_prunable_set_per_scope(seq2seq_teacher, tiny):
    model, _ = tiny.model(seq2seq_teacher)
    enc, dec, both = (prunable_weights(model, s) for s in ("encoder", "decoder", "all"))
    assert len(enc) == 2 * 6 and all(n.startswith("encoder.encoder.layer.") for n in enc)
    assert {n.split(".", 4)[4] for n in enc} == ENCODER_SUFFIXES
    assert len(dec) == 2 * 10 and all(n.startswith("decoder.") for n in dec)
    assert both == {**enc, **dec}
    assert not any("lm_head" in n or "embeddings" in n or "bias" in n or "pooler" in n for n in both)
    with pytest.raises(ValueError, match="scope"):
        prunable_weights(model, "pooler")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scope", ["encoder", "decoder", "all"])
def test_exact_pruned_fractions(seq2seq_teacher, tiny, method, scope):
    model, _ = tiny.model(seq2seq_teacher)
    weights = prunable_weights(model, scope)
    total = sum(w.numel() for w in weights.values())
    masks = _ones(weights)
    for target in (0.3, 0.5):  # two rounds: the second mask nests in the first
        new = compute_masks(weights, masks, target, method, seed=1)
        assert all(bool((new[n] <= masks[n]).all()) for n in weights)
        masks = new
        apply_masks(weights, masks)
        zeros = {n: int((w == 0).sum()) for n, w in weights.items()}
        if method.endswith("global"):  # one count over the whole set
            assert sum(zeros.values()) == round(target * total)
        else:  # the same fraction of every matrix
            assert zeros == {n: round(target * w.numel()) for n, w in weights.items()}
    assert measured_sparsity(weights.values()) == pytest.approx(0.5, abs=len(weights) / total)


def test_global_and_layerwise_differ_on_one_small_matrix(seq2seq_teacher, tiny):
    model, _ = tiny.model(seq2seq_teacher)
    weights = prunable_weights(model, "encoder")
    small = "encoder.encoder.layer.0.attention.self.query.weight"
    with torch.no_grad():
        weights[small].mul_(1e-3)  # far below every other weight
    glob = compute_masks(weights, _ones(weights), 0.2, "l1-global")
    layer = compute_masks(weights, _ones(weights), 0.2, "l1-layerwise")
    frac = {n: 1 - m.float().mean().item() for n, m in glob.items()}
    assert frac[small] == 1.0  # one threshold: the small matrix goes first, entirely
    assert max(v for n, v in frac.items() if n != small) < 0.2
    assert all(1 - m.float().mean().item() == pytest.approx(0.2, abs=1e-3) for m in layer.values())
    # L1 keeps the largest magnitudes inside each matrix
    w = weights["encoder.encoder.layer.1.output.dense.weight"]
    m = layer["encoder.encoder.layer.1.output.dense.weight"]
    assert w[~m].abs().max() <= w[m].abs().min()


def test_rewind_restores_the_whole_model_and_keeps_zeros(seq2seq_teacher, tiny, tmp_path):
    """Lottery tickets rewind every tensor, not only the pruned matrices: a bias, a LayerNorm
    and the unpruned decoder come back too (they kept the previous round's repairs)."""
    model, _ = tiny.model(seq2seq_teacher)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape))
    save_model(model, str(tmp_path / "checkpoint.safetensors"))
    checkpoint = load_file(str(tmp_path / "checkpoint.safetensors"))
    with torch.no_grad():  # the round's repairs moved everything
        for p in model.parameters():
            p.add_(1.0)
    weights = prunable_weights(model, "encoder")
    masks = compute_masks(weights, _ones(weights), 0.4, "random-global", seed=3)
    apply_masks(weights, masks)
    rewind(model, weights, masks, tmp_path / "checkpoint.safetensors")
    state = model.state_dict()
    for n, w in weights.items():
        assert torch.equal(w[masks[n]], checkpoint[n][masks[n]])
        assert bool((w[~masks[n]] == 0).all())
    others = [n for n in checkpoint if n not in weights]
    assert any("bias" in n for n in others) and any(n.startswith("decoder.") for n in others)
    for n in others:
        assert torch.equal(state[n], checkpoint[n]), n


def test_repair_gradients_of_pruned_entries_are_zero(seq2seq_teacher, tiny):
    """Clipping measures the survivors' gradients only, and AdamW keeps no moment for a
    pruned entry (the optimizer state of a pruned weight stays exactly 0)."""
    cfg = tiny.config(train_steps=3)
    model, tok = tiny.model(seq2seq_teacher, cfg)
    weights = prunable_weights(model, "encoder")
    masks = compute_masks(weights, _ones(weights), 0.5, "random-global", seed=1)
    apply_masks(weights, masks)
    examples = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS], tok, cfg)
    opt, sched = make_optimizer(model, cfg, 3)
    with masked_gradients(weights, masks):
        train_steps(model, batch_stream(examples, 3, 0), 3, opt, sched, cfg,
                    after_step=lambda _: apply_masks(weights, masks))
    for n, w in weights.items():
        moments = opt.state[w]
        assert bool((moments["exp_avg"][~masks[n]] == 0).all()) and bool((moments["exp_avg_sq"][~masks[n]] == 0).all())
        assert bool((moments["exp_avg"][masks[n]] != 0).any())
    assert all(not w._backward_hooks for w in weights.values())  # removed on leaving


def test_prunable_sizes_from_the_dimensions_are_the_models(seq2seq_teacher, tiny):
    model, _ = tiny.model(seq2seq_teacher)
    enc = model.encoder.config
    dims = dict(layers=enc.num_hidden_layers, hidden=enc.hidden_size, ffn=enc.intermediate_size,
                decoder_layers=len(model.decoder), decoder_ffn=model.decoder[0].ffn_in.out_features)
    for scope in ("encoder", "decoder", "all"):
        assert prunable_sizes(scope, **dims) == [w.numel() for w in prunable_weights(model, scope).values()]


def test_each_round_is_timed_beside_the_dense_model(seq2seq_teacher, tiny, monkeypatch):
    """One alternated call times the round's model and the dense one: round 0 compares the
    dense model with its copy; a pruned round that is twice as slow reads 0.5x."""
    from training import evaluate
    from training.prune import round_latencies

    model, tok = tiny.model(seq2seq_teacher)
    dense = copy.deepcopy(model)
    test = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS], tok, tiny.config())
    seen = {}

    def fake(fns, **kw):  # the harness's contract: name -> latency_ms dict, names as given
        seen.update(fns)
        return {"round": {"median_ms": 20.0, "p90_ms": 25.0}, "dense": {"median_ms": 10.0, "p90_ms": 11.0}}

    monkeypatch.setattr(evaluate, "interleaved_latency_ms", fake)
    lat = round_latencies(model, dense, test, 4, runs=20, threads=1)
    assert lat == {"latency_ms": 20.0, "latency_p90_ms": 25.0, "dense_latency_ms": 10.0, "speedup_vs_dense": 0.5}
    assert set(seen) == {"round", "dense"}
    monkeypatch.undo()
    real = round_latencies(model, dense, test, 4, runs=20, threads=1)
    assert real["latency_ms"] > 0 and real["dense_latency_ms"] > 0
    assert real["speedup_vs_dense"] == real["dense_latency_ms"] / real["latency_ms"]


def test_schedules_that_prune_nothing_or_everything_are_refused():
    weights = [100, 10]  # 110 weights, matrices of 100 and 10
    check_prunes_some_but_not_all(weights, 2, 0.25, "original", "l1-global")  # 28, then 55
    with pytest.raises(ValueError, match="prunes every weight of a set of 110"):
        check_prunes_some_but_not_all(weights, 8, 0.9, "remaining", "l1-global")  # 1 - 0.1^8: round() is 110
    with pytest.raises(ValueError, match="prunes every weight of a matrix of 10"):
        check_prunes_some_but_not_all(weights, 2, 0.8, "remaining", "l1-layerwise")  # 0.96 of 10: 10
    with pytest.raises(ValueError, match="prunes no weight in round 1"):
        check_prunes_some_but_not_all(weights, 1, 1e-4, "original", "l1-global")


def test_pruned_weights_stay_zero_through_training(seq2seq_teacher, tiny):
    cfg = tiny.config(train_steps=5)
    model, tok = tiny.model(seq2seq_teacher, cfg)
    weights = prunable_weights(model, "all")
    masks = compute_masks(weights, _ones(weights), 0.5, "l1-global")
    apply_masks(weights, masks)
    before = {n: w.detach().clone() for n, w in weights.items()}
    examples = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS], tok, cfg)
    opt, sched = make_optimizer(model, cfg, 5)
    train_steps(model, batch_stream(examples, 3, 0), 5, opt, sched, cfg, after_step=lambda _: apply_masks(weights, masks))
    for n, w in weights.items():
        assert bool((w[~masks[n]] == 0).all())
    assert any(not torch.equal(w, before[n]) for n, w in weights.items())


def test_nominal_sparsity_rules():
    assert nominal_sparsity(3, 0.1, "original") == pytest.approx(0.3)
    assert nominal_sparsity(10, 0.1, "remaining") == pytest.approx(1 - 0.9**10)  # 65.1%
    with pytest.raises(ValueError):
        nominal_sparsity(1, 0.1, "total")


def test_schedules_grid():
    cfg = PruneConfig(methods=("l1-global", "random-layerwise"), rewinds=("finetuned",), selections=("pick_best",),
                      batch_sizes=(8, 16), rounds=(2,))
    grid = schedules(cfg)
    assert len(grid) == 4 and len({s["schedule"] for s in grid}) == 4
    with pytest.raises(ValueError, match="rewind"):
        schedules(PruneConfig(rewinds=("start",)))


def test_run_schedule_reports_rounds_and_resumes(seq2seq_teacher, seq2seq_data_new_test, tiny, tmp_path,
                                                 decoded_beams):
    """Test's docstrings differ from valid's (the model memorised valid's): each test figure is
    recomputed on test, each valid one on valid, so a figure computed on the other split fails.
    A memorised model decodes the same with a beam as greedily, so the beam is checked by what
    the decodes were asked for."""
    beams = decoded_beams(prune_module)
    art = prepare_seq2seq(tiny.config(train_steps=60), DataConfig(path=seq2seq_data_new_test),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    cfg = PruneConfig(methods=("l1-global",), rewinds=("finetuned",), selections=("pick_best",), batch_sizes=(6,),
                      rounds=(1,), iterations_per_round=4, rate=0.25, eval_every=2, valid_subset=4,
                      test_subset=4, beam=2, lr=1e-3)
    sched = schedules(cfg)[0]
    rows = []
    run_schedule(sched, art, cfg, tmp_path / "trial", report=rows.append, origin={"node_id": "n1", "device": "cpu"})
    assert [r["round"] for r in rows] == [0, 1]
    assert [(r["node_id"], r["device"]) for r in rows] == [("n1", "cpu")] * 2 and rows[0]["time"] <= rows[1]["time"]
    assert beams.count(2) == 2 * len(rows)  # each round: valid and test BLEU with the beam of 2
    assert rows[0]["sparsity"] == 0.0 and rows[1]["sparsity"] == pytest.approx(0.25, abs=1e-3)
    assert rows[1]["iterations"] == 4 and len(json.loads(rows[1]["valid_checks"])) == 2
    assert rows[1]["sparse_size_bytes"] < rows[1]["dense_size_bytes"] == rows[0]["dense_size_bytes"]
    # "as saved": the saved state's bytes (the tied lm_head's name in its header included)
    assert rows[1]["dense_size_bytes"] == (tmp_path / "trial" / "round_001" / "state.safetensors").stat().st_size
    # the row scores the round's saved model: its test and valid BLEU, greedy and beam, regenerated
    model, _ = load_round(tmp_path / "trial", 1, art)
    _, tok = load_seq2seq(art.model_dir, art.config)
    splits, scored = code_to_text_splits(art.data), {}
    for split in ("test", "valid"):
        pairs = evaluation_subset(splits[split], 4)
        examples, refs = tokenize_pairs(pairs, tok, art.config), [p.target for p in pairs]
        scored[split] = examples
        for beam, kind in ((1, "greedy"), (2, "beam")):
            hyps = generate(model, tok, examples, art.config, beam=beam)
            assert rows[1][f"{split}_bleu_{kind}"] == codexglue_bleu(hyps, refs), (split, kind)
            if (split, kind) == ("test", "greedy"):
                assert rows[1]["test_corpus_bleu_greedy"] == corpus_bleu(hyps, refs)
    assert rows[1]["valid_bleu_greedy"] > rows[1]["test_bleu_greedy"]  # the splits really differ here
    assert rows[1]["test_nll"] == token_nll(model, scored["test"], art.config) > token_nll(model, scored["valid"], art.config)
    assert rows[1]["model_sparsity"] == measured_sparsity(model.parameters()) < rows[1]["sparsity"]
    weights = prunable_weights(model, "encoder")
    stored = sum(int((w != 0).sum()) * w.element_size() + -(-w.numel() // 8) - w.numel() * w.element_size()
                 for w in weights.values())  # each matrix: its nonzero values and a 1-bit mask, not its dense bytes
    assert rows[1]["sparse_size_bytes"] == rows[1]["dense_size_bytes"] + stored
    assert rows[1]["beam"] == 2 and rows[1]["latency_ms"] <= rows[1]["latency_p90_ms"]
    assert rows[0]["n_test"] == rows[1]["n_test"] == len(scored["test"]) == 4
    # one sentence for every function, the same floor for every round (test's references here
    # are not the model's memorised ones, so that floor is above its greedy BLEU)
    assert rows[0]["test_bleu_constant"] == rows[1]["test_bleu_constant"] > 0
    # Re-run with one more round in the same folder: rounds 0-1 re-reported as saved (where and
    # when they ran included, not the rerun's node), round 2 run.
    again = []
    run_schedule({**sched, "rounds": 2}, art, cfg, tmp_path / "trial", report=again.append, origin={"node_id": "n2"})
    assert again[:2] == rows and again[2]["round"] == 2 and again[2]["node_id"] == "n2"
    assert again[2]["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_a_diverged_repair_names_its_round_and_method(seq2seq_teacher, seq2seq_data, tiny, tmp_path, monkeypatch):
    art = prepare_seq2seq(tiny.config(train_steps=20), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    cfg = PruneConfig(methods=("random-global",), rewinds=("finetuned",), selections=("pick_best",), batch_sizes=(6,),
                      rounds=(1,), iterations_per_round=4, rate=0.25, eval_every=2, valid_subset=4, test_subset=4)
    forward = Seq2Seq.forward
    # training steps only: round 0 and the checks score in eval mode
    monkeypatch.setattr(Seq2Seq, "forward", lambda self, *a, **k: forward(self, *a, **k) * (float("nan") if self.training else 1))
    rows = []
    with pytest.raises(FloatingPointError, match=r"^round 1 \(random-global\): pruning repair, iterations 1-2, "
                                                 r"step 1 of 2: loss is nan"):
        run_schedule(schedules(cfg)[0], art, cfg, tmp_path / "trial", report=rows.append)
    assert [r["round"] for r in rows] == [0]  # no row for the diverged round


class Interrupted(Exception):
    """What a killed trial does to run_schedule: it stops between two rounds."""


# readings of the clock differ in any two runs (a round's row records when it ended: `time`)
CLOCK = ("train_seconds", "latency_ms", "latency_p90_ms", "dense_latency_ms", "speedup_vs_dense", "time")


def _computed(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in CLOCK}


def test_a_resumed_schedule_computes_what_an_uninterrupted_one_does(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    """Dropout (the decoder's and the encoder's) draws from torch's global generator: resumed
    after round 1, round 2 must draw the masks an uninterrupted run draws there."""
    art = prepare_seq2seq(tiny.config(train_steps=60, dropout=0.1), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    cfg = PruneConfig(methods=("random-global",), rewinds=("none",), selections=("pick_best_nostop",),
                      batch_sizes=(6,), rounds=(2,), iterations_per_round=4, rate=0.25, eval_every=2,
                      valid_subset=4, test_subset=4, beam=2, lr=1e-3)
    sched = schedules(cfg)[0]
    whole = []
    run_schedule(sched, art, cfg, tmp_path / "whole", report=whole.append)

    def stop_after_round_1(row):
        if row["round"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_schedule(sched, art, cfg, tmp_path / "resumed", report=stop_after_round_1)
    assert not (tmp_path / "resumed" / "round_002").exists()
    resumed = []
    run_schedule(sched, art, cfg, tmp_path / "resumed", report=resumed.append)
    assert [r["round"] for r in resumed] == [0, 1, 2] and resumed[2]["loss"] > 0
    assert [_computed(r) for r in resumed] == [_computed(r) for r in whole]  # losses, NLL, BLEU, checks
    states = [load_file(str(tmp_path / run / "round_002" / "state.safetensors")) for run in ("whole", "resumed")]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_schedules_of_a_sweep_are_paired(seq2seq_teacher, seq2seq_data, tiny, tmp_path, monkeypatch):
    """Common random numbers: random masks, batch order and dropout depend on the round and
    prune.seed, not the schedule. L1 and random repair on the same batches, and a schedule of 2
    rounds computes the one-round schedule's round 1 before its second."""
    art = prepare_seq2seq(tiny.config(train_steps=60, dropout=0.1), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    cfg = PruneConfig(methods=("random-global", "l1-global"), rewinds=("none",), selections=("pick_best_nostop",),
                      batch_sizes=(6,), rounds=(1, 2), iterations_per_round=4, rate=0.25, eval_every=2,
                      valid_subset=4, test_subset=4, beam=2, lr=1e-3)
    grid = {(s["method"], s["rounds"]): s for s in schedules(cfg)}
    drawn, dropout_seeds = {}, {}
    repair = prune_module.fine_tune_round

    def recording_dropout(ctx, masks, schedule, cfg_, seed):  # the generator a repair starts from
        dropout_seeds.setdefault(schedule["method"], []).append(torch.initial_seed())
        return repair(ctx, masks, schedule, cfg_, seed)

    monkeypatch.setattr(prune_module, "fine_tune_round", recording_dropout)

    def recording(method):
        def stream(examples, batch_size, seed):
            for batch in batch_stream(examples, batch_size, seed):
                drawn.setdefault(method, []).append(batch)
                yield batch
        return stream

    rows = {}
    for method, rounds in (("random-global", 1), ("random-global", 2), ("l1-global", 1)):
        monkeypatch.setattr("training.prune.batch_stream", recording(method))
        run_schedule(grid[method, rounds], art, cfg, tmp_path / f"{method}{rounds}",
                     report=lambda row, key=(method, rounds): rows.setdefault(key, []).append(row))
    schedule_keys = {"schedule", "rounds", "method"}

    def computed(row):
        return {k: v for k, v in _computed(row).items() if k not in schedule_keys}

    assert [computed(r) for r in rows["random-global", 2][:2]] == [computed(r) for r in rows["random-global", 1]]
    assert rows["random-global", 1][1]["loss"] > 0
    assert rows["random-global", 2][2]["round"] == 2
    assert drawn["l1-global"] == drawn["random-global"][:len(drawn["l1-global"])]
    assert len(drawn["l1-global"]) == 4
    # dropout is seeded per round (an early stop in one schedule's round 1 would otherwise shift
    # its round 2's draws): the same seed for round r in every schedule, another for each round
    one_round, two_rounds = dropout_seeds["random-global"][:1], dropout_seeds["random-global"][1:]
    assert dropout_seeds["l1-global"] == one_round == two_rounds[:1] and two_rounds[1] != two_rounds[0]


def test_rewind_restores_the_chosen_checkpoints_surviving_weights(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    """At a learning rate too small to move a weight, round 1's surviving prunable weights are
    the rewind target's: the state before fine-tuning (pretrained) or after it (finetuned)."""
    art = prepare_seq2seq(tiny.config(train_steps=60), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    cfg = PruneConfig(methods=("l1-global",), rewinds=("pretrained", "finetuned"), selections=("pick_last",),
                      batch_sizes=(6,), rounds=(1,), iterations_per_round=2, rate=0.5, eval_every=2,
                      valid_subset=2, test_subset=2, beam=2, lr=1e-12)
    checkpoints = {"pretrained": load_file(art.pretrained_path), "finetuned": load_file(art.finetuned_path)}
    for sched in schedules(cfg):
        run_schedule(sched, art, cfg, tmp_path / sched["rewind"], report=lambda row: None)
        model, masks = load_round(tmp_path / sched["rewind"], 1, art)
        weights = prunable_weights(model, "encoder")
        target, other = (checkpoints[k] for k in sorted(checkpoints, key=lambda k: k != sched["rewind"]))
        for n, w in weights.items():
            assert bool((w[~masks[n]] == 0).all())
            torch.testing.assert_close(w[masks[n]], target[n][masks[n]], atol=1e-6, rtol=0)
        assert any(not torch.allclose(w[masks[n]], other[n][masks[n]], atol=1e-3) for n, w in weights.items())
        state = model.state_dict()  # the tensors outside the pruned set are the target's too
        for n in target.keys() - weights.keys():
            torch.testing.assert_close(state[n], target[n], atol=1e-6, rtol=0, msg=n)


def test_a_killed_rounds_staging_folder_is_removed_on_the_next_run(seq2seq_teacher, seq2seq_data, tiny, stale,
                                                                   tmp_path):
    art = prepare_seq2seq(tiny.config(train_steps=60), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    cfg = PruneConfig(methods=("l1-global",), rewinds=("none",), selections=("pick_last",), batch_sizes=(6,),
                      rounds=(1,), iterations_per_round=2, rate=0.5, eval_every=2, valid_subset=2,
                      test_subset=2, beam=2)
    trial = tmp_path / "trial"
    dead = stale.staged(trial / "round_001", stale.exited_pid())
    live = stale.staged(trial / "round_001", os.getppid())  # another process, alive
    elsewhere = stale.staged(trial / "round_001", stale.exited_pid(), space="0" * 8)  # a pid of another machine
    run_schedule(schedules(cfg)[0], art, cfg, trial, report=lambda row: None)
    assert not dead.exists() and live.exists() and elsewhere.exists()
    assert sorted(p.name for p in trial.iterdir()) == sorted(["round_000", "round_001", live.name, elsewhere.name])


def test_select_by_nll_keeps_the_round_model_with_the_lowest_valid_nll(seq2seq_teacher, seq2seq_data, tiny, tmp_path):
    art = prepare_seq2seq(tiny.config(train_steps=60), DataConfig(path=seq2seq_data),
                          TeacherConfig(name=seq2seq_teacher), tmp_path / "work")
    cfg = PruneConfig(methods=("random-global",), rewinds=("pretrained",), selections=("pick_best_nostop",),
                      batch_sizes=(6,), rounds=(1,), iterations_per_round=6, rate=0.5, eval_every=2,
                      valid_subset=4, test_subset=4, beam=2, lr=1e-3, select_by="nll")
    rows = []
    run_schedule(schedules(cfg)[0], art, cfg, tmp_path / "trial", report=rows.append)
    checks = json.loads(rows[1]["valid_checks"])
    assert len(checks) == 3 and rows[1]["select_by"] == "nll"
    model, _ = load_round(tmp_path / "trial", 1, art)
    _, tok = load_seq2seq(art.model_dir, art.config)
    valid = tokenize_pairs(evaluation_subset(code_to_text_splits(art.data)["valid"], 4), tok, art.config)
    assert token_nll(model, valid, art.config) == pytest.approx(min(checks), rel=1e-5)
    with pytest.raises(ValueError, match="select_by: .loss. not in"):
        PruneConfig(select_by="loss")


def _observe(selection, scores):
    sel = RoundSelector(selection)
    return [sel.observe(x) for x in scores]


def test_round_selection_rules():
    scores = [1.0, 3.0, 2.0, 2.5, 1.5, 4.0]  # 1.5 is worse than both 2.5 and 2.0: stop there
    keeps, stops = zip(*_observe("pick_best", scores), strict=True)
    assert stops.index(True) == 4 and keeps[:5] == (True, True, False, False, False)
    keeps, stops = zip(*_observe("pick_last", scores), strict=True)
    assert stops.index(True) == 4 and not any(keeps)  # the model it stops on is the selection
    keeps, stops = zip(*_observe("pick_best_nostop", scores), strict=True)
    assert not any(stops) and keeps == (True, True, False, False, False, True)
    # worse than only the previous check is no stop
    assert not any(stop for _, stop in _observe("pick_last", [1.0, 2.0, 1.5, 1.8, 1.6]))
    with pytest.raises(ValueError, match="selection"):
        RoundSelector("pick_first")


def test_generation_latency_times_fixed_work_on_the_first_test_example(seq2seq_teacher, tiny, monkeypatch):
    model, tok = tiny.model(seq2seq_teacher)
    test = tokenize_pairs([PairText(c, d) for c, d in tiny.PAIRS[1:]], tok, tiny.config())
    calls, greedy = [], Seq2Seq.greedy

    def spy(self, src, src_mask, max_len, stop=True):
        calls.append((src.tolist(), max_len, stop))
        return greedy(self, src, src_mask, max_len, stop)

    monkeypatch.setattr(Seq2Seq, "greedy", spy)
    stats = generation_latency(model, test, 12, runs=20, threads=1)
    assert stats["runs"] == 20 and stats["median_ms"] <= stats["p90_ms"]
    assert calls == [([test[0][0]], 12, False)] * 21  # one warm-up, 20 timed; all target_len - 1 steps
    with pytest.raises(ValueError, match="test split is empty"):
        generation_latency(model, [], 12, runs=20, threads=1)
