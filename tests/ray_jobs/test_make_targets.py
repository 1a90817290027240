"""The Makefile's extra targets run the recipes the README's figures were measured with, even
as demo.yaml (which they start from) moves on: `make -n` prints each target's job command, and
that command's overrides are read on top of demo.yaml as the job would read them."""

import shlex
import subprocess
from pathlib import Path

import pytest

from ray_jobs.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _job_config(target: str, *make_vars: str):
    """(job name, JobConfig) of the `python -m ray_jobs JOB --config demo ...` line that
    `make -n TARGET` prints (its prerequisites' commands are skipped)."""
    out = subprocess.run(["make", "-n", target, *make_vars], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    commands = [shlex.split(c) for c in out.replace("\\\n", " ").splitlines() if "-m ray_jobs" in c]
    (argv,) = commands
    job = argv[argv.index("-m") + 2]
    assert argv[argv.index("--config") + 1] == "demo"
    overrides = [a for a in argv[argv.index("--config") + 2:] if "=" in a]
    return job, load_config(REPO / "ray_jobs" / "configs" / "demo.yaml", overrides)


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_run_extra_trains_students_and_baselines_alike_in_its_recipe(epochs):
    """`make run-extra`: EPOCHS_EXTRA epochs for students and BiLSTM_soft baselines alike
    (demo.yaml keeps its own), deep students with 8 heads, fp32 steps, sdpa attention and the
    half-and-half split of 6,000 pairs (the README's run-extra figures), the in-batch loss, the
    17 harvested packages as extra transfer data."""
    job, cfg = _job_config("run-extra", f"EPOCHS_EXTRA={epochs}")
    d = cfg.distill
    assert job == "compress" and cfg.results_dir.endswith("results/demo-extra")
    assert d.epochs == d.bilstm_epochs == int(epochs)
    assert (cfg.search.min_head_size, d.precision, d.train_attention) == (1, "fp32", "sdpa")
    assert cfg.search.max_layers is None
    assert (cfg.data.max_train, cfg.data.labeled_fraction) == (6000, 0.5)
    assert d.in_batch_weight == 2 and len(d.transfer_extra) == 17


def test_run_extra_args_override_the_recipe():
    _, cfg = _job_config("run-extra", "ARGS=search.min_head_size=48 search.max_layers=1 distill.precision=auto "
                                      "distill.train_attention=eager data.max_train=null data.labeled_fraction=0.1")
    assert (cfg.search.min_head_size, cfg.distill.precision, cfg.distill.train_attention) == (48, "auto", "eager")
    assert (cfg.search.max_layers, cfg.data.max_train, cfg.data.labeled_fraction) == (1, None, 0.1)


def test_run_prune_extra_fine_tunes_its_steps_in_fp32():
    job, cfg = _job_config("run-prune-extra")
    assert job == "prune" and cfg.results_dir.endswith("results/demo-extra")
    assert (cfg.seq2seq.train_steps, cfg.seq2seq.precision, len(cfg.seq2seq.train_extra)) == (6000, "fp32", 17)


def test_run_harvested_is_the_demo_with_six_harvested_packages_added():
    """`make run-harvested`: demo.yaml's students, data and search, plus a 20,000-pair sample of
    six harvested packages as transfer data, 7 student epochs and 1 baseline epoch."""
    job, cfg = _job_config("run-harvested")
    demo = load_config(REPO / "ray_jobs" / "configs" / "demo.yaml")
    d = cfg.distill
    assert job == "compress" and cfg.results_dir.endswith("results/demo-harvested")
    assert [Path(p).name for p in d.transfer_extra] == ["torch", "transformers", "ray", "pandas", "sympy", "numpy"]
    assert (d.max_transfer_extra, d.epochs, d.bilstm_epochs) == (20000, 7, 1)
    assert (cfg.data, cfg.search, cfg.teacher, cfg.finetune) == (demo.data, demo.search, demo.teacher, demo.finetune)
    assert (d.precision, d.train_attention, d.in_batch_weight) == (demo.distill.precision, "eager", 2)
