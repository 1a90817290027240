"""`compress.write_curve`: a one-off fine-tuning's curve (the teacher's, the code-to-text
model's) as `epochs` rows that say what its steps ran in."""

from ray_jobs import compress, results

STAMP = {"config_hash": "h", "code_version": "v"}
CURVE = [{"epoch": 1, "train_loss": 0.7, "steps": 10, "seconds": 3.0}, {"epoch": 2, "train_loss": 0.5, "steps": 20,
                                                                         "seconds": 6.0}]


def _written(root, metrics, model, precision):
    compress.write_curve(root, "compress-x", metrics, STAMP, model, precision)
    return [{k: r[k] for k in ("trial_key", "epoch", "precision", "emulated", "device")}
            for r in results.read_rows(root, "epochs", "compress-x") if r["trial_key"] == model]


def test_each_curve_row_says_what_its_steps_ran_in(tmp_path):
    metrics = {"curve": CURVE, "device": "cpu", "precision": "bf16", "emulated": True}
    assert _written(tmp_path, metrics, "teacher", "bf16") == [
        {"trial_key": "teacher", "epoch": e, "precision": "bf16", "emulated": True, "device": "cpu"} for e in (1, 2)]


def test_a_model_cached_before_the_record_gets_the_sweeps_precision_and_no_emulated(tmp_path):
    # the cache key holds the precision it ran in, which the sweep runs it in; whether it was
    # emulated is known only on the machine that ran it: left NULL, not guessed here
    teacher = _written(tmp_path, {"curve": CURVE, "device": "cpu"}, "teacher", "bf16")
    assert {(r["precision"], r["emulated"]) for r in teacher} == {("bf16", None)}
    seq2seq = _written(tmp_path, {"curve": CURVE, "device": "cpu"}, "seq2seq", "fp32")
    assert {(r["precision"], r["emulated"]) for r in seq2seq} == {("fp32", None)}
    assert len(results.read_rows(tmp_path, "epochs", "compress-x")) == 4  # kept beside each other
