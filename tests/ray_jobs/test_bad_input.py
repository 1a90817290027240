"""Bad input and infeasible requests, end to end through `python -m ray_jobs`.

Each case must end with exit code 2, exactly one `error:` line on stderr naming the
culprit, no traceback, no hang, and no file written under results_dir. The CLI runs are
started together (each is mostly interpreter and Ray start-up) to keep the test short.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "training" / "fixtures"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _corrupt_copy(dest: Path) -> Path:
    """The code-to-text fixture with a broken JSON line appended to train.jsonl."""
    shutil.copytree(FIXTURES / "code_to_text", dest)
    train = dest / "train.jsonl"
    n = sum(1 for line in train.read_text().splitlines() if line.strip())
    with train.open("a") as f:
        f.write('{"code_tokens": ["def", "f"], "docstring_tokens": \n')
    return train, n + 1


def _cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (CLI args after `python -m ray_jobs`, substrings the error line must hold)."""
    bad_file, bad_line = _corrupt_copy(tmp / "corrupt")
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    held_out = tmp / "held-out.jsonl"  # extra training data made of the task's own test pairs only
    shutil.copy(FIXTURES / "code_to_text" / "test.jsonl", held_out)
    smoke = ["--config", "smoke", "resources.num_cpus=2"]
    weightless = tmp / "weightless-teacher"  # a model folder with its config.json only
    weightless.mkdir()
    from training.models import embedded_teacher_path

    shutil.copy(embedded_teacher_path() / "config.json", weightless / "config.json")
    one_class = tmp / "devign-one-class"  # every train function labelled 0
    shutil.copytree(FIXTURES / "devign", one_class)
    train = [json.loads(line) for line in (one_class / "train.jsonl").read_text().splitlines()]
    (one_class / "train.jsonl").write_text("".join(json.dumps({**r, "target": 0}) + "\n" for r in train))
    return {
        "unknown_key": (["compress", *smoke, "search.target_mbb=3"], ["search.target_mbb"]),
        "wrong_type": (["compress", *smoke, "search.top_k=many"], ["search.top_k", "many"]),
        "missing_data": (["compress", *smoke, f"data.path={tmp}/no-such-data"],
                         ["no-such-data"]),
        "corrupt_jsonl": (["compress", *smoke, f"data.path={tmp}/corrupt"],
                          [f"train.jsonl:{bad_line}"]),
        "corrupt_jsonl_prune": (["prune", *smoke, f"data.path={tmp}/corrupt"],
                                [f"{bad_file.name}:{bad_line}"]),
        "corrupt_extra_transfer": (["compress", *smoke, f"distill.transfer_extra=[{tmp}/corrupt]"],
                                   [f"train.jsonl:{bad_line}"]),
        "extra_transfer_wrong_task": (["compress", *smoke, "data.task=defect",
                                       f"data.path={FIXTURES}/devign",
                                       f"distill.transfer_extra=[{FIXTURES}/code_to_text]"],
                                      ["distill.transfer_extra", "defect"]),
        "corrupt_extra_train_prune": (["prune", *smoke, f"seq2seq.train_extra=[{tmp}/corrupt]"],
                                      [f"{bad_file.name}:{bad_line}"]),
        "extra_train_all_held_out": (["prune", *smoke, f"data.path={FIXTURES}/code_to_text",
                                      f"seq2seq.train_extra=[{held_out}]"],
                                     ["seq2seq.train_extra", "no pair left"]),
        "in_batch_joint_student": (["compress", *smoke, "distill.in_batch_weight=1"],
                                   ["in_batch_weight", "pair_mode"]),
        "in_batch_joint_teacher": (["compress", *smoke, "distill.in_batch_weight=1",
                                    "distill.pair_mode=separate"],
                                   ["distill.in_batch_weight", "teacher.pair_mode"]),
        "unwritable_results": (["compress", "--config", "smoke",
                                f"results_dir={blocker}/results"], ["results_dir", "a-file"]),
        "budget_too_small": (["compress", *smoke, "search.target_mb=0.001"],
                             ["search.target_mb", "0.001"]),
        "head_size_above_every_width": (["compress", *smoke, "search.min_head_size=1000"],
                                        ["search.min_head_size", "1000"]),
        "fp16_training": (["compress", *smoke, "distill.precision=fp16"], ["precision", "fp16"]),
        "out_of_range": (["prune", *smoke, "prune.rate=0.6"], ["prune.rate", "0.6"]),
        # 1 - 0.1^8 of any set rounds to all of it: refused before fine-tuning, not in a trial
        "prunes_every_weight": (["prune", *smoke, "prune.rate=0.9", "prune.rate_of=remaining", "prune.rounds=[8]"],
                                ["prune.rate", "prunes every weight"]),
        "teacher_without_weights": (["compress", *smoke, f"teacher.name={weightless}"],
                                    ["teacher.name", "holds none of"]),
        "hub_teacher_offline": (["prune", *smoke, "teacher.name=microsoft/codebert-base"],
                                ["teacher.name", "microsoft/codebert-base"]),
        "no_labeled_half": (["compress", *smoke, "data.max_train=1"], ["data", "no labeled example"]),
        # a constant teacher fine-tuned, then students distilled from it, then exit 0
        "one_class_in_train": (["compress", *smoke, "data.task=defect", f"data.path={one_class}"],
                               ["data: the labeled part the teacher fine-tunes on (2 of 4 train examples",
                                "has label 0 only"]),
        # the hard-label term knows the labeled half's labels only
        "hard_labels_of_the_unlabeled_half": (["compress", *smoke, "distill.hard_weight=1"],
                                              ["hard_weight", "transfer_set=all"]),
        "hard_labels_capped_out": (["compress", *smoke, "distill.hard_weight=1", "distill.transfer_set=all",
                                   "distill.max_transfer=1"], ["distill.hard_weight", "no labeled row"]),
        "nothing_to_train": (["compress", *smoke, "search.top_k=0", "baselines.bilstm_budget=false",
                              "distill.quantize=[]"], ["nothing to train"]),
        "cap_below_smallest": (["compress", *smoke, "search.max_mb=0.01"], ["search", "max_mb"]),
        # the budget baseline's trial failed after the teacher's fine-tuning
        "budget_bilstm_fits_no_width": (["compress", *smoke, "search.target_mb=0.11", "distill.bilstm_vocab=30000"],
                                        ["search.target_mb", "no BiLSTM with vocab 30000"]),
        # demo checks the pruning job's inputs before the compression job writes anything
        "demo_prune_input_first": (["demo", *smoke, f"data.path={FIXTURES}/code_to_text",
                                    f"seq2seq.train_extra=[{held_out}]"],
                                   ["seq2seq.train_extra", "no pair left"]),
        "int4_student": (["compress", *smoke, "distill.quantize=[int8,int4]"], ["quantize", "int4"]),
        # a single-input task: run as joint, silently, before
        "separate_teacher_single_input": (["compress", *smoke, "data.task=defect", f"data.path={FIXTURES}/devign",
                                           "teacher.pair_mode=separate"], ["teacher.pair_mode", "defect"]),
        "separate_students_single_input": (["compress", *smoke, "data.task=defect", f"data.path={FIXTURES}/devign",
                                            "distill.pair_mode=separate"], ["distill.pair_mode", "defect"]),
        # Ray refuses a store larger than the machine in ray.init: a traceback (exit 1) before
        "object_store_above_memory": (["compress", *smoke, "resources.object_store_mb=100000000"],
                                      ["resources.object_store_mb", "100000000"]),
        "unknown_teacher": (["compress", *smoke, "teacher.name=no-such-teacher"],
                            ["teacher.name", "no-such-teacher"]),
    }


def _infeasible_cases() -> dict[str, tuple[list[str], list[str]]]:
    """Resource requests no node of the local cluster the job would start can hold."""
    smoke = ["--config", "smoke", "resources.num_cpus=2"]
    return {
        "gpu_on_cpu_cluster": (["compress", *smoke, "resources.gpus_per_trial=1"],
                               ["GPU=1", "CPU=2"]),
        "more_cpus_than_any_node": (["prune", *smoke, "resources.cpus_per_trial=64"],
                                    ["CPU=64", "CPU=2"]),
        "prepare_cpus_above_the_node": (["compress", *smoke, "resources.prepare_cpus=3"],
                                        ["CPU=3", "CPU=2"]),
        # precheck=false is for autoscaling clusters; nothing adds a GPU to the job's own one
        # (Ray's autoscaler message every 35 s, for ever)
        "gpu_on_own_cluster_unchecked": (["compress", *smoke, "resources.gpus_per_trial=1",
                                          "resources.precheck=false"], ["GPU=1", "CPU=2"]),
    }


def _run_all(cases: dict, tmp: Path) -> dict[str, tuple[int, str]]:
    """Run every case's CLI, four at a time; name -> (exit code, stderr). All at once, the
    cases' ~30 interpreters (torch, transformers and Ray imported, ~650 MB each) held 15 GB
    together on 2 cores (a review's measurement), near a smaller runner's memory and time.
    On any failure (a case's timeout, pytest's) the queued cases are dropped and the running
    ones killed, not waited for."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAY_ADDRESS", None)
    procs, stopping = [], threading.Event()

    def run(name: str, args: list[str]) -> tuple[int, str]:
        if stopping.is_set():
            raise RuntimeError("stopped")
        if not any(a.startswith("results_dir=") for a in args):
            args = [*args, f"results_dir={tmp}/results-{name}"]
        proc = subprocess.Popen([sys.executable, "-m", "ray_jobs", *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        _, err = proc.communicate(timeout=300)
        return proc.returncode, err

    pool = ThreadPoolExecutor(max_workers=4)
    try:
        futures = {name: pool.submit(run, name, args) for name, (args, _) in cases.items()}
        return {name: future.result() for name, future in futures.items()}
    finally:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _problems(cases: dict, outcomes: dict, tmp: Path, *, only_line: bool = False) -> list[str]:
    """What is wrong with each case's outcome (only_line: stderr holds nothing else)."""
    problems = []
    for name, (_, culprits) in cases.items():
        rc, err = outcomes[name]
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        if rc != 2 or len(lines) != 1 or "Traceback" in err:
            problems.append(f"{name}: rc={rc} stderr={err[-800:]!r}")
        elif not all(c in lines[0] for c in culprits):
            problems.append(f"{name}: {lines[0]!r} does not name {culprits}")
        elif only_line and err.strip() != lines[0]:
            problems.append(f"{name}: more than the error line on stderr: {err[-800:]!r}")
        written = [p for p in tmp.glob(f"results-{name}/**/*") if p.is_file()]
        if written:
            problems.append(f"{name}: wrote {written}")
    return problems


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path):
    cases = _cases(tmp_path)
    problems = _problems(cases, _run_all(cases, tmp_path), tmp_path)
    assert (tmp_path / "a-file").read_text() == "not a folder"
    assert not problems, "\n".join(problems)


def test_infeasible_resources_are_refused_before_ray_starts(tmp_path):
    # The local cluster's CPUs and GPUs are known before it starts: the refusal comes
    # without Ray's start-up lines ("Started a local Ray instance.") on stderr.
    cases = _infeasible_cases()
    problems = _problems(cases, _run_all(cases, tmp_path), tmp_path, only_line=True)
    assert not problems, "\n".join(problems)


def test_local_node_resources_as_ray_resolves_them():
    # Pins the private Ray API behind the early refusal (without it the check runs after start).
    from ray_jobs.config import ResourcesConfig
    from ray_jobs.sweep import _local_node

    assert _local_node(ResourcesConfig(num_cpus=3, num_gpus=1)) == {"CPU": 3.0, "GPU": 1.0}
    assert _local_node(ResourcesConfig(num_cpus=2, num_gpus=0)) == {"CPU": 2.0}


def test_a_labeled_part_of_one_class_is_refused_though_the_split_has_both():
    """labeled_fraction takes round(fraction x size) of each class: 0.1 of 4 is none, so the
    teacher would fine-tune on class 1 alone (a review's case)."""
    from ray_jobs.compress import check_halves
    from ray_jobs.config import load_config
    from ray_jobs.errors import JobError
    from training.data import ClsExample

    train = [ClsExample(text_a=f"f{i}", text_b=None, label=int(i >= 4)) for i in range(14)]  # 4 x 0, 10 x 1
    cfg = load_config(None, ["data.labeled_fraction=0.1"])
    with pytest.raises(JobError, match=r"labeled part .* \(1 of 14 train examples, labeled_fraction 0.1\) "
                                       r"has label 1 only"):
        check_halves(cfg, {"train": train})
    check_halves(load_config(None, ["data.labeled_fraction=0.5"]), {"train": train})  # 2 + 5: both
