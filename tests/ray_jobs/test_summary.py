"""Summaries and the BLEU-versus-sparsity plot read the tables the jobs write."""

import pytest

from ray_jobs import results, summary


def _distill_rows():
    base = {"teacher_accuracy": 0.9, "teacher_size_mb": 90.0, "teacher_latency_ms": 40.0,
            "codebert_latency_ms": 400.0, "teacher_speedup_vs_codebert": 12.5, "latency_seq_len": 64,
            "latency_threads": 1}
    student = {**base, "trial_key": "student-0", "kind": "student", "layers": 6, "hidden": 80,
               "heads": 8, "ffn": 480, "vocab": 1000, "serialized_mb": 3.0, "accuracy": 0.88,
               "retention": 0.88 / 0.9, "latency_ms": 4.0, "speedup_vs_teacher": 10.0,
               "speedup_vs_codebert": 100.0, "best_epoch": 5, "epochs": 5}
    # a pair BiLSTM_soft has CodeBERT timed as a pair where the students may read one sequence
    bilstm = {**base, "codebert_latency_ms": 800.0, "trial_key": "bilstm-paper", "kind": "bilstm", "hidden": 300,
              "vocab": 5000, "serialized_mb": 9.0, "accuracy": 0.8, "retention": 0.8 / 0.9,
              "latency_ms": 2.0, "speedup_vs_teacher": 20.0, "speedup_vs_codebert": 200.0,
              "best_epoch": 3, "epochs": 5}
    return [student, bilstm]


def test_compress_summary_has_teacher_and_each_student(tmp_path):
    results.write_rows(tmp_path, "distill", "compress-x", _distill_rows())
    text = summary.compress_summary(str(tmp_path), "compress-x")
    lines = text.splitlines()
    assert lines[0].startswith("Compression (compress-x)") and "sequence 64" in lines[0]
    body = {ln.split()[0]: ln.split() for ln in lines[3:6]}
    assert set(body) == {"teacher", "student-0", "bilstm-paper"}
    assert body["teacher"][2:6] == ["90", "0.9", "1", "40"]  # size, accuracy, retention, ms
    # vs CodeBERT: its time in the teacher's format over the teacher's (not the students' format)
    assert body["teacher"][7] == "12.5"
    assert body["student-0"][-1] == "5/5" and body["bilstm-paper"][-1] == "3/5"  # kept_epoch
    assert "student-0 kept the last epoch, still improving" in text and "bilstm-paper kept" not in text
    assert "L6 H80 A8 D480 V1000" in text and "BiLSTM H300 V5000" in text
    assert "CodeBERT-base architecture at the same settings, in the students' input format: 400.0 ms" in text
    assert "distillation steps in" not in text  # rows that name no precision: no line
    results.write_rows(tmp_path, "distill", "compress-p", [{**r, "precision": "fp32"} for r in _distill_rows()])
    assert summary.compress_summary(str(tmp_path), "compress-p").endswith("\ndistillation steps in fp32")
    mixed = _distill_rows()
    mixed[0]["precision"], mixed[1]["precision"] = "bf16", "fp32"
    results.write_rows(tmp_path, "distill", "compress-m", mixed)
    assert summary.compress_summary(str(tmp_path), "compress-m").endswith(
        "\ndistillation steps in bf16 (student-0); fp32 (bilstm-paper)")
    results.write_rows(tmp_path, "distill", "compress-e", [{**r, "precision": "bf16", "emulated": True}
                                                           for r in _distill_rows()])
    assert summary.compress_summary(str(tmp_path), "compress-e").endswith("\ndistillation steps in bf16, emulated")
    assert summary.compress_summary(str(tmp_path / "none"), "compress-x") == "compress: no distill rows in compress-x"
    # a sweep without rows gets no teacher row that nothing measured
    assert summary.compress_summary(str(tmp_path), "compress-nope") == "compress: no distill rows in compress-nope"


def test_compress_summary_names_the_device_and_never_calls_one_epoch_still_improving(tmp_path):
    rows = [{**r, "device": "cuda"} for r in _distill_rows()]
    rows.append({**rows[1], "trial_key": "bilstm-budget", "best_epoch": 1, "epochs": 1})
    # the teacher timed in each trial: 40, 50 and 44 ms (CodeBERT 12.5x, 20x, 10x its time)
    for row, ms, vs in zip(rows, (40.0, 50.0, 44.0), (12.5, 20.0, 10.0), strict=True):
        row |= {"teacher_latency_ms": ms, "teacher_speedup_vs_codebert": vs}
    results.write_rows(tmp_path, "distill", "compress-x", rows)
    text = summary.compress_summary(str(tmp_path), "compress-x")
    assert text.splitlines()[0].endswith("1 thread(s), on cuda)")
    assert "teacher: its latency is the median of its timings in the trials" in text
    teacher = next(ln.split() for ln in text.splitlines()[3:] if ln.startswith("teacher "))
    assert (teacher[5], teacher[7]) == ("44", "12.5")  # the medians, not the slowest trial's
    # timed on the CPU after training on the GPU (distill.latency_device: cpu)
    results.write_rows(tmp_path, "distill", "compress-cpu", [{**r, "latency_device": "cpu"} for r in rows])
    text = summary.compress_summary(str(tmp_path), "compress-cpu")
    assert text.splitlines()[0].endswith("1 thread(s), on cpu)")
    assert "student-0 kept the last epoch" in text and "bilstm-budget" not in text.split("kept_epoch:")[1]


def test_compress_summary_shows_the_teachers_variants_when_no_student_finished(tmp_path):
    results.write_rows(tmp_path, "quantize", "compress-x", [
        {"trial_key": "teacher", "model": "teacher", "kind": "teacher", "variant": v, "size_bytes": 90 * 10**6,
         "accuracy": 0.9, "latency_ms": 40.0, "score_batch": 64} for v in ("fp32", "int8")])
    text = summary.compress_summary(str(tmp_path), "compress-x")
    assert text.startswith("compress: no distill rows in compress-x\nQuantized on the CPU")
    assert "latency in ms on the CPU, batch 1;" in text and text.count("teacher") == 2


def test_compress_summary_adds_the_quantized_variants_of_its_own_sweep(tmp_path):
    results.write_rows(tmp_path, "distill", "compress-x", _distill_rows())
    assert "Quantized" not in summary.compress_summary(str(tmp_path), "compress-x")
    results.write_rows(tmp_path, "quantize", "prune-x", [  # another job's rows stay out
        {"trial_key": "unpruned", "model": "unpruned", "variant": "fp16", "bleu_greedy": 9.0}])
    results.write_rows(tmp_path, "quantize", "compress-x", [
        {"trial_key": "student-0", "model": "student-0", "kind": "student", "variant": v,
         "size_bytes": size, "accuracy": acc, "accuracy_kept": acc / 0.88, "latency_ms": ms,
         "retention": acc / 0.9, "speedup_vs_fp32": 4.0 / ms, "score_batch": 64} for v, size, acc, ms in (("int8", 10**6, 0.86, 5.0),
                                                              ("fp32", 3 * 10**6, 0.88, 4.0))])
    # another sweep timed at another length and thread count: not this sweep's heading
    results.write_rows(tmp_path, "distill", "compress-other",
                       [{**r, "latency_seq_len": 400, "latency_threads": 8} for r in _distill_rows()])
    text = summary.compress_summary(str(tmp_path), "compress-x")
    head, tail = text.split("Quantized on the CPU")
    assert "batch 1, sequence 64, 1 thread(s)" in tail.splitlines()[0]
    # a sweep whose rows name no timing settings says none, not another sweep's
    results.write_rows(tmp_path, "distill", "compress-y", [{**r, "latency_seq_len": None, "latency_threads": None}
                                                           for r in _distill_rows()])
    results.write_rows(tmp_path, "quantize", "compress-y", [
        {"trial_key": "student-0", "model": "student-0", "kind": "student", "variant": "fp32", "accuracy": 0.88}])
    untimed = summary.compress_summary(str(tmp_path), "compress-y").split("Quantized on the CPU")[1]
    assert "sequence" not in untimed.splitlines()[0]
    rows = [ln.split() for ln in tail.splitlines()[3:]]  # after the heading, the header and its rule
    assert [r[:4] for r in rows] == [["student-0", "fp32", "3", "0.88"], ["student-0", "int8", "1", "0.86"]]
    header = tail.splitlines()[1].split()
    assert "of `score_batch` pairs" in tail.splitlines()[0] and [r[header.index("score_batch")] for r in rows] == ["64"] * 2
    assert "unpruned" not in tail and "fp16" not in tail and "emulated" not in tail
    # a half-precision variant its CPU emulated: named, with why its latency says little
    results.write_rows(tmp_path, "quantize", "compress-x", [
        {"trial_key": "student-0", "model": "student-0", "kind": "student", "variant": v, "device": "cpu",
         "accuracy": 0.88, "latency_ms": ms, "emulated": em} for v, ms, em in (("fp32", 4.0, None),
                                                                                ("bf16", 16.0, True),
                                                                                ("int8", 3.0, None))])
    (line,) = [ln for ln in summary.compress_summary(str(tmp_path), "compress-x").splitlines()
               if ln.startswith("emulated:")]
    assert line.startswith("emulated: bf16 on cpu: that device has no native units for it") and "int8" not in line


def _prune_rows(scope="encoder", schedules=("l1", "random"), rounds=range(3), latency=lambda s, r: 100.0,
                dense=lambda s, r: 100.0):
    """A sweep's prune rows: round r of schedule s is r/10 sparse and 104 MB saved; its sparse
    estimate shrinks with r; latency(s, r) ms, beside the dense model's dense(s, r)."""
    return [{"trial_key": f"{s}_{scope}", "schedule": f"{s}_{scope}", "scope": scope, "round": r,
             "sparsity": r / 10, "model_sparsity": r / 25, "test_bleu_greedy": 10 - r * (1 if s == "l1" else 3), "test_bleu_beam": 11.0,
             "test_distinct_greedy": 0.9, "test_nll": 4.5, "valid_bleu_greedy": 12.0,
             "dense_size_bytes": 104 * 10**6, "sparse_size_bytes": (104 - 10 * r) * 10**6,
             "latency_ms": latency(s, r), "dense_latency_ms": dense(s, r),
             "speedup_vs_dense": dense(s, r) / latency(s, r), "test_bleu_constant": 7.5}
            for s in schedules for r in rounds]


def _prune_table(text: str) -> tuple[str, dict[tuple[str, str], dict[str, str]]]:
    """(the heading line, {(schedule, round): {column: cell}}) of a prune summary's table."""
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("Pruning ("))
    head = next(i for i in range(at, len(lines)) if lines[i].startswith("schedule "))
    columns = lines[head].split()
    body = {}
    for ln in lines[head + 2:]:  # after the header's rule
        if not ln or not ln[0].islower():  # the lines after the table begin with a capital
            break
        cells = dict(zip(columns, ln.split(), strict=False))  # a blank last cell: one fewer
        body[cells["schedule"], cells["round"]] = cells
    return lines[at], body


def test_prune_summary_and_plot(tmp_path, monkeypatch):
    results.write_rows(tmp_path, "prune", "prune-x", _prune_rows())
    results.write_rows(tmp_path, "quantize", "prune-x", [
        {"trial_key": "unpruned", "model": "unpruned", "variant": v, "bleu_greedy": 9.0, "device": d,
         "latency_threads": 1}
        for v, d in (("fp16", "cuda"), ("fp32", "cuda"), ("int8", "cpu"))])
    text = summary.prune_summary(str(tmp_path), "prune-x")
    assert "BLEU-4" in text and "Quantization" in text and text.count("random") == 3
    # a GPU job's variants: fp32 and fp16 on the GPU, int8 on the CPU, each row saying where
    # (blank cells split away: model, variant, bleu_greedy, device, threads)
    variants = [ln.split() for ln in text.split("Quantization")[1].splitlines()[3:6]]
    assert [(v[1], v[3]) for v in variants] == [("fp32", "cuda"), ("fp16", "cuda"), ("int8", "cpu")], variants
    assert "Code-to-text fine-tuning" not in text and "emulated" not in text  # no curve rows, no emulated row
    results.write_rows(tmp_path, "quantize", "prune-y", [
        {"trial_key": "unpruned", "model": "unpruned", "variant": v, "bleu_greedy": 9.0, "device": "cpu",
         "emulated": em} for v, em in (("fp32", None), ("fp16", True))])
    assert "\nemulated: fp16 on cpu: " in summary.prune_summary(str(tmp_path), "prune-y")
    results.write_rows(tmp_path, "epochs", "prune-x", [
        {"trial_key": "seq2seq", "epoch": e, "steps": 5 * e, "train_loss": 6.0 - e, "valid_nll": 5.0 - e / 10}
        for e in (1, 2, 3)])
    curve = summary.prune_summary(str(tmp_path), "prune-x").splitlines()[0]
    assert curve == ("Code-to-text fine-tuning, 15 steps: training loss 5.000 (first tenth) -> 3.000 (last); "
                     "valid NLL after each tenth: 4.900  4.800  4.700")
    assert "constant summary for every test function (the best frequent training target) scores 7.50" in text
    published = []
    monkeypatch.setattr(summary, "publish", lambda staged, final: published.append(staged.name) or staged.rename(final))
    png = summary.plot_bleu(str(tmp_path), "prune-x", tmp_path / "plots" / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert published and published[0].startswith(".p.png.tmp")  # staged, then renamed into place
    assert [f.name for f in png.parent.iterdir()] == ["p.png"]
    assert summary.plot_bleu(str(tmp_path / "none"), "prune-x", tmp_path / "q.png") is None


def test_a_curve_without_validation_pairs_or_with_a_diverged_loss_is_summarised(tmp_path):
    """NaN (no validation pairs, a diverged loss) is stored as NULL: "n/a", not a traceback."""
    results.write_rows(tmp_path, "prune", "prune-x", _prune_rows())
    results.write_rows(tmp_path, "epochs", "prune-x", [
        {"trial_key": "seq2seq", "epoch": e, "steps": 5 * e, "train_loss": float("nan") if e == 2 else 4.0,
         "valid_nll": float("nan")} for e in (1, 2)])
    assert summary.prune_summary(str(tmp_path), "prune-x").splitlines()[0] == (
        "Code-to-text fine-tuning, 10 steps: training loss 4.000 (first tenth) -> n/a (last); "
        "valid NLL after each tenth: n/a  n/a")


def test_prune_summary_prints_the_saved_size_beside_the_sparse_estimate(tmp_path):
    results.write_rows(tmp_path, "prune", "prune-x", _prune_rows())
    text = summary.prune_summary(str(tmp_path), "prune-x")
    _, body = _prune_table(text)
    assert "sparse_mb" not in text  # the estimate is never labelled as if it were a size on disk
    assert [(body["l1_encoder", r]["disk_mb"], body["l1_encoder", r]["sparse_est_mb"]) for r in "012"] == [
        ("104", "104"), ("104", "94"), ("104", "84")]
    assert "disk_mb: the round's weights as saved" in text and "sparse_est_mb: an estimate that no file has" in text
    # the scope's sparsity beside the whole model's (embeddings, biases, LayerNorms never pruned)
    assert [(body["l1_encoder", r]["sparsity"], body["l1_encoder", r]["model_sparsity"]) for r in "012"] == [
        ("0", "0"), ("0.1", "0.04"), ("0.2", "0.08")]
    assert "model_sparsity: zeros among all the model's parameters" in text


def test_prune_summary_times_each_round_against_the_dense_model_beside_it(tmp_path):
    # l1's pruned rounds time as the dense model beside them (no faster); random's dense model
    # was timed at 120 ms in round 0's call and at 115 beside its pruned rounds: each round is
    # compared with the dense timing of its own call, not with round 0's
    def slow(s, r):
        return {("l1", 0): 100.0, ("l1", 1): 98.0, ("l1", 2): 104.0}.get((s, r), 120.0 if r == 0 else 115.0)

    def dense(s, r):
        return 100.0 if s == "l1" else 119.0

    results.write_rows(tmp_path, "prune", "prune-x", _prune_rows(latency=slow, dense=dense))
    text = summary.prune_summary(str(tmp_path), "prune-x")
    _, body = _prune_table(text)
    assert [body["l1_encoder", r]["speedup_vs_dense"] for r in "012"] == ["1", "1.02", "0.96"]
    assert [body["random_encoder", r]["speedup_vs_dense"] for r in "012"] == ["0.99", "1.03", "1.03"]
    assert [body["random_encoder", r]["dense_latency_ms"] for r in "012"] == ["119"] * 3
    assert ("Pruned rounds run at 0.96-1.03x the dense model's speed, timed beside it (the dense model "
            "beside its copy, round 0: 0.99-1.00x): no faster") in text
    # 1.13x, as one round of a make run read for the dense model's work: within the noise
    results.write_rows(tmp_path, "prune", "prune-noisy", _prune_rows(latency=lambda s, r: 100.0 / (1 + 0.13 * (r == 1))))
    assert "1.00-1.13x the dense model's speed, timed beside it (the dense model beside its copy, round 0: " \
           "1.00-1.00x): no faster" in summary.prune_summary(str(tmp_path), "prune-noisy")
    # one round no faster, the other 1.5x: the schedules are not called no faster
    results.write_rows(tmp_path, "prune", "prune-mixed", _prune_rows(latency=lambda s, r: 100.0 / (1.5 if r == 2 else 1)))
    assert "no faster" not in summary.prune_summary(str(tmp_path), "prune-mixed")
    # 1.3x where the dense model beside its own copy read 0.75x (1.33x either way): within that noise
    results.write_rows(tmp_path, "prune", "prune-wide", _prune_rows(
        latency=lambda s, r: 100.0 / {0: 0.75, 1: 1.3, 2: 1.3}[r]))
    assert "1.30-1.30x the dense model's speed, timed beside it (the dense model beside its copy, round 0: " \
           "0.75-0.75x): no faster" in summary.prune_summary(str(tmp_path), "prune-wide")
    # a schedule faster than the dense model is not called no faster
    results.write_rows(tmp_path, "prune", "prune-fast", _prune_rows(latency=lambda s, r: 100.0 / (1 + r)))
    fast = summary.prune_summary(str(tmp_path), "prune-fast")
    assert "Pruned rounds run at 2.00-3.00x the dense model's speed, timed beside it (the dense model beside " \
           "its copy, round 0: 1.00-1.00x)." in fast


def test_prune_summary_and_plot_name_the_scope_the_sparsity_measures(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    labels = []
    monkeypatch.setattr(Axes, "set_xlabel", lambda self, text, *a, **k: labels.append(text))
    for sweep, scopes, words in (("prune-dec", ("decoder",), "decoder sparsity"),
                                 ("prune-all", ("all",), "encoder + decoder sparsity"),
                                 ("prune-mix", ("decoder", "all"), "sparsity of each schedule's scope"),
                                 ("prune-enc", ("encoder",), "encoder sparsity")):
        results.write_rows(tmp_path, "prune", sweep, [row for sc in scopes for row in _prune_rows(scope=sc)])
        text = summary.prune_summary(str(tmp_path), sweep)
        heading, body = _prune_table(text)
        assert heading.startswith(f"Pruning ({sweep}): BLEU-4 (CodeXGLUE, 0-100) versus {words} "), heading
        assert {cells["scope"] for cells in body.values()} == set(scopes)
        if scopes != ("encoder",):
            assert "encoder sparsity" not in text
        summary.plot_bleu(str(tmp_path), sweep, tmp_path / f"{sweep}.png")
        assert labels[-1] == f"{words} (%)"


def test_seeds_summary_gives_each_models_mean_and_spread_over_the_seeds_sweeps(tmp_path):
    for sweep, acc in (("compress-a", 0.86), ("compress-b", 0.90), ("compress-other", 0.10)):
        rows = _distill_rows()
        rows[0] |= {"accuracy": acc, "retention": acc / 0.9}
        results.write_rows(tmp_path, "distill", sweep, rows)
    text = summary.seeds_summary(str(tmp_path), ["compress-a", "compress-b"])
    head, columns, _, *rows = text.splitlines()
    assert head.startswith("Across 2 distillation seeds (compress-a, compress-b)")
    # the last 7 columns are numbers (the arch before them holds spaces)
    got = {r.split()[0]: dict(zip(columns.split()[-7:], r.split()[-7:], strict=True)) for r in rows}
    assert set(got) == {"student-0", "bilstm-paper"}  # compress-other stays out
    student = got["student-0"]
    assert student["seeds"] == "2" and float(student["mean_accuracy"]) == 0.88
    assert abs(float(student["sd_accuracy"]) - 0.02 * 2 ** 0.5) < 1e-3  # sample sd of 0.86, 0.90
    assert float(student["min_retention"]) == round(0.86 / 0.9, 4) and float(student["max_retention"]) == 1
    assert float(student["mean_retention"]) == round(0.88 / 0.9, 4)  # of the retentions, not the accuracies
    assert float(got["bilstm-paper"]["sd_accuracy"]) == 0


def test_seeds_summary_keeps_models_missing_from_a_seed_and_refuses_nothing_to_show(tmp_path):
    assert summary.seeds_summary(str(tmp_path), ["compress-a"]) == "compress: no distill rows"
    rows = _distill_rows()
    results.write_rows(tmp_path, "distill", "compress-a", rows)
    results.write_rows(tmp_path, "distill", "compress-b", rows[:1])  # no BiLSTM in this seed
    results.write_rows(tmp_path, "distill", "compress-c", [{**rows[1], "trial_key": "odd", "kind": None}])
    assert summary.seeds_summary(str(tmp_path), []) == "compress: no distill rows"
    assert summary.seeds_summary(str(tmp_path), ["compress-none"]) == "compress: no distill rows"
    lines = summary.seeds_summary(str(tmp_path), ["compress-a", "compress-b"]).splitlines()[3:]
    by = {ln.split()[0]: ln.split() for ln in lines}
    assert set(by) == {"student-0", "bilstm-paper"} and by["student-0"][-7] == "2"
    # one seed: a count of 1 and a blank standard deviation (one cell fewer)
    assert by["bilstm-paper"][2:6] == ["BiLSTM", "H300", "V5000", "1"] and len(by["bilstm-paper"]) == 11
    (odd,) = summary.seeds_summary(str(tmp_path), ["compress-c"]).splitlines()[3:]
    assert "BiLSTM" not in odd  # a row without a kind is not labelled a BiLSTM


def test_seeds_summaries_refuse_sweeps_that_are_not_seeds_of_one_job(tmp_path):
    """Sweeps given by hand (the README invites any ids): other epochs, or one seed twice,
    are not a seed's spread; a sweep named twice counts once."""
    import pytest

    stamp = {"config_hash": "h", "code_version": "v"}
    config = {"results_dir": str(tmp_path),
              "distill": {"seed": 0, "epochs": 7, "precision": "bf16", "quantize": ["int8"]},
              "prune": {"seed": 0}, "resources": {"num_cpus": 2}}
    runs = {"compress-a": config,
            # a setting no result depends on (resources) and one it did not record may differ;
            # so may the quantized variants (a finished sweep quantized again keeps its configs row)
            "compress-b": {**config, "distill": {"seed": 1, "epochs": 7, "quantize": ["int8", "bf16"]},
                           "resources": {"num_cpus": 8}},
            "compress-c": {**config, "distill": {**config["distill"], "seed": 2, "epochs": 2}},
            "compress-d": {**config, "distill": {**config["distill"], "seed": 1}},
            # "auto" resolved to another precision (ray_jobs.precision) is another setting too
            "compress-e": {**config, "distill": {"seed": 3, "epochs": 7, "precision": "auto"},
                           "resolved": {"distill.precision": "fp32"}},
            "compress-f": {**config, "distill": {"seed": 4, "epochs": 7, "precision": "auto"},
                           "resolved": {"distill.precision": "bf16"}}}
    for sweep, cfg in runs.items():
        results.write_config(tmp_path, "compress", sweep, cfg, stamp)
        results.write_rows(tmp_path, "distill", sweep, _distill_rows())
    text = summary.seeds_summary(str(tmp_path), ["compress-a", "compress-b", "compress-a"])
    assert text.startswith("Across 2 distillation seeds (compress-a, compress-b)")
    with pytest.raises(ValueError, match=r"sweeps compress-a and compress-c differ in distill.epochs "
                                         r"\(7 against 2\), not only in distill.seed"):
        summary.seeds_summary(str(tmp_path), ["compress-a", "compress-c"])
    with pytest.raises(ValueError, match=r"sweeps compress-e and compress-f differ in resolved.distill.precision "
                                         r"\('fp32' against 'bf16'\)"):
        summary.seeds_summary(str(tmp_path), ["compress-e", "compress-f"])
    # a sweep recorded before resolutions were: its rows say what it trained in
    results.write_config(tmp_path, "compress", "compress-g",
                         {**config, "distill": {"seed": 5, "epochs": 7, "precision": "auto"}}, stamp)
    results.write_rows(tmp_path, "distill", "compress-g", [{**r, "precision": "bf16"} for r in _distill_rows()])
    results.write_rows(tmp_path, "distill", "compress-e", [{**r, "precision": "fp32"} for r in _distill_rows()])
    with pytest.raises(ValueError, match=r"sweeps compress-e and compress-g differ in distill rows' precision "
                                         r"\('fp32' against 'bf16'\)"):
        summary.seeds_summary(str(tmp_path), ["compress-e", "compress-g"])
    with pytest.raises(ValueError, match="sweeps compress-b and compress-d ran the same distill.seed"):
        summary.seeds_summary(str(tmp_path), ["compress-a", "compress-b", "compress-d"])
    with pytest.raises(ValueError, match="sweeps compress-a and compress-b ran the same prune.seed"):
        summary.prune_seeds_summary(str(tmp_path), ["compress-a", "compress-b"])


def test_prune_seeds_ignore_the_settings_the_pruning_job_does_not_read(tmp_path):
    """`demo.yaml` serves both jobs: a seed's sweep restored from before a change for the
    compression job alone (data.labeled_fraction, teacher.pair_mode) keeps its id and its
    `configs` row; the spread is still one job's. A change the pruning reads is refused, as a
    bad input (one line, exit 2), not a traceback."""
    import pytest

    from ray_jobs.errors import ConfigError

    stamp = {"config_hash": "h", "code_version": "v"}
    config = {"data": {"labeled_fraction": 0.1, "task": "code-search"}, "teacher": {"pair_mode": "separate"},
              "prune": {"seed": 0, "rate": 0.25}, "quantize": {"beam": 1}}
    runs = {"prune-a": config,
            # the quantize section is not the pruning's: a finished sweep quantized again under
            # other settings keeps the configs row it ran with
            "prune-b": {"data": {"labeled_fraction": 0.5, "task": "code-search"}, "teacher": {"pair_mode": "joint"},
                        "prune": {"seed": 1, "rate": 0.25}, "quantize": {"beam": 2}},
            "prune-c": {**config, "prune": {"seed": 2, "rate": 0.5}}}
    for sweep, cfg in runs.items():
        results.write_config(tmp_path, "prune", sweep, cfg, stamp)
        results.write_rows(tmp_path, "prune", sweep, [
            {"trial_key": "l1", "schedule": "l1", "round": 0, "sparsity": 0.0, "test_bleu_greedy": 14.0,
             "test_bleu_beam": 15.0, "test_nll": 4.5}])
    assert summary.prune_seeds_summary(str(tmp_path), ["prune-a", "prune-b"]).startswith("Across 2 pruning seeds")
    with pytest.raises(ConfigError, match=r"differ in prune.rate \(0.25 against 0.5\), not only in prune.seed"):
        summary.prune_seeds_summary(str(tmp_path), ["prune-a", "prune-c"])


def test_prune_seeds_summary_gives_each_rounds_mean_and_spread_over_the_seeds_sweeps(tmp_path):
    assert summary.prune_seeds_summary(str(tmp_path), ["prune-a"]) == "prune: no prune rows"
    for sweep, bleu in (("prune-a", 12.0), ("prune-b", 13.0), ("prune-other", 1.0)):
        results.write_rows(tmp_path, "prune", sweep, [
            {"trial_key": s, "schedule": s, "round": r, "sparsity": r / 4 + (0.001 if sweep == "prune-b" else 0),
             "test_bleu_greedy": 14.0 if r == 0 else bleu - r, "test_bleu_beam": 15.0 - r,
             "test_nll": 4.5 + r / 10} for s in ("l1", "random") for r in range(3)])
    assert summary.prune_seeds_summary(str(tmp_path), []) == "prune: no prune rows"
    assert summary.prune_seeds_summary(str(tmp_path), ["prune-none"]) == "prune: no prune rows"
    head, columns, _, *rows = summary.prune_seeds_summary(str(tmp_path), ["prune-a", "prune-b"]).splitlines()
    assert head.startswith("Across 2 pruning seeds (prune-a, prune-b)")
    got = [dict(zip(columns.split(), r.split(), strict=True)) for r in rows]
    assert [(g["schedule"], g["round"], g["seeds"]) for g in got] == [
        (s, str(r), "2") for s in ("l1", "random") for r in range(3)]  # prune-other stays out
    dense, pruned = got[0], got[2]
    assert float(dense["greedy"]) == 14.0 and float(dense["sd_greedy"]) == 0
    assert float(pruned["greedy"]) == 10.5 and abs(float(pruned["sd_greedy"]) - 0.5 ** 0.5) < 1e-3
    assert float(pruned["sparsity"]) == 0.5 and float(pruned["beam"]) == 13.0
    assert float(pruned["sd_beam"]) == 0 and float(pruned["nll"]) == 4.7
    (one,) = [r for r in summary.prune_seeds_summary(str(tmp_path), ["prune-a"]).splitlines()[3:]
              if r.split()[:2] == ["l1", "2"]]
    assert len(one.split()) == len(columns.split()) - 3  # one seed: the three deviations blank


def test_prune_seeds_summary_pairs_the_methods_seed_by_seed(tmp_path):
    """L1 minus random per seed, where the schedules differ only in the method: the mean and
    spread of the differences, and the seeds where L1 leads on BLEU (greedy, beam) and NLL."""
    rest = "encoder_finetuned_pick_best_b8_r2"
    bleu = {("prune-a", "l1-global"): 13.0, ("prune-a", "random-global"): 12.0,
            ("prune-b", "l1-global"): 12.5, ("prune-b", "random-global"): 12.6}
    for sweep in ("prune-a", "prune-b"):
        results.write_rows(tmp_path, "prune", sweep, [
            {"trial_key": f"{m}_{rest}", "schedule": f"{m}_{rest}", "method": m, "round": r,
             "sparsity": r / 4, "test_bleu_greedy": 14.0 if r == 0 else bleu[sweep, m],
             "test_bleu_beam": 15.0 if r == 0 else bleu[sweep, m] + 1,
             "test_nll": 4.5 if r == 0 else 4.6 if m == "l1-global" else 4.7}
            for m in ("l1-global", "random-global") for r in range(2)])
    # a third seed where L1 leads on both BLEUs but its NLL is worse: not ahead
    results.write_rows(tmp_path, "prune", "prune-d", [
        {"trial_key": f"{m}_{rest}", "schedule": f"{m}_{rest}", "method": m, "round": 1,
         "test_bleu_greedy": 13.5 if m == "l1-global" else 13.0, "test_bleu_beam": 14.0 if m == "l1-global" else 13.0,
         "test_nll": 4.8 if m == "l1-global" else 4.7}
        for m in ("l1-global", "random-global")])
    (third,) = [ln for ln in summary.prune_seeds_summary(str(tmp_path), ["prune-a", "prune-b", "prune-d"]).splitlines()
                if ln.startswith("l1-global - random-global")]
    assert third.split()[-1] == "1"  # ahead: prune-a only
    text = summary.prune_seeds_summary(str(tmp_path), ["prune-a", "prune-b"]).splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("Paired by seed"))
    columns, _, *rows = text[start + 1:]
    (got,) = [dict(zip(columns.split(), r.replace(" - ", "-minus-").split(), strict=True)) for r in rows]
    assert (got["methods"], got["schedule"], got["round"], got["seeds"]) == (
        "l1-global-minus-random-global", rest, "1", "2")  # round 0, the dense model, is not a pair
    assert float(got["greedy"]) == pytest.approx(0.45) and float(got["sd_greedy"]) == pytest.approx(
        (0.55 ** 2 * 2) ** 0.5, rel=1e-3)
    assert float(got["nll"]) == pytest.approx(0.1) and got["ahead"] == "1"  # prune-b: random's BLEU led
    one = summary.prune_seeds_summary(str(tmp_path), ["prune-a"])
    assert "Paired by seed" in one  # one seed pairs too, without a spread
    results.write_rows(tmp_path, "prune", "prune-c", [
        {"trial_key": f"l1-global_{rest}", "schedule": f"l1-global_{rest}", "method": "l1-global", "round": 1,
         "test_bleu_greedy": 1.0, "test_bleu_beam": 1.0, "test_nll": 5.0}])
    assert "Paired by seed" not in summary.prune_seeds_summary(str(tmp_path), ["prune-c"])  # one method
