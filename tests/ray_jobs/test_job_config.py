"""Config loader: YAML + overrides, unknown keys and wrong types named, stable hash."""

import dataclasses
import os
import pathlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ray_jobs.config import (
    CONFIG_DIR,
    ConfigError,
    JobConfig,
    build_config,
    config_hash,
    load_config,
    parse_override,
    resolve_config_path,
)


@dataclass(frozen=True)
class _Inner:
    size: float = 1.0
    name: str | None = None
    steps: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class _Outer:
    count: int = 3
    flag: bool = False
    inner: _Inner = field(default_factory=_Inner)


def test_defaults_live_in_the_dataclass():
    assert build_config(_Outer) == _Outer()


def test_yaml_and_overrides_nested():
    cfg = build_config(_Outer, {"count": 5, "inner": {"name": "x"}},
                       ["inner.size=2", "inner.steps=[3, 4, 5]", "flag=true"])
    assert cfg == _Outer(count=5, flag=True, inner=_Inner(size=2.0, name="x", steps=(3, 4, 5)))
    assert isinstance(cfg.inner.size, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.count = 1


@pytest.mark.parametrize(
    "data, overrides, key",
    [
        ({"inner": {"nmae": "x"}}, [], "inner.nmae: unknown key"),
        ({}, ["inner.sise=3"], "inner.sise: unknown key"),
        ({"count": "three"}, [], "count: expected int"),
        ({}, ["count=1.5"], "count: expected int"),
        ({}, ["flag=1"], "flag: expected bool"),
        ({}, ["count=true"], "count: expected int, got True"),  # a YAML true is not 1
        ({}, ["inner.steps=[1, x]"], "inner.steps[1]: expected int"),
        ({"inner": 3}, [], "inner: expected a mapping"),
    ],
)
def test_refusals_name_the_dotted_key(data, overrides, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        build_config(_Outer, data, overrides)


def test_dotted_key_in_a_file_is_told_to_nest():
    with pytest.raises(ConfigError, match=r"^inner\.size: unknown key .*in a file nest it: inner: then size:"):
        build_config(_Outer, {"inner.size": 4})
    with pytest.raises(ConfigError) as nested:  # an unknown key inside a section gets no such hint
        build_config(_Outer, {"inner": {"x.y": 1}})
    assert "nest it" not in str(nested.value)


def test_override_below_a_scalar_names_it():
    with pytest.raises(ConfigError, match="^count: "):
        build_config(_Outer, {"count": 2}, ["count.sub=1"])


def test_an_override_in_base_60_is_refused_and_hex_and_binary_read():
    with pytest.raises(ConfigError, match="base 60"):
        parse_override("a=1:30.5")  # YAML 1.1's 90.5
    assert parse_override("a=0x10") == ("a", 16) and parse_override("a=0b10") == ("a", 2)


def test_parse_override_forms():
    assert build_config(_Outer, {}, ["inner.size=1e-4"]).inner.size == 1e-4  # YAML 1.1: a string
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a.b=some/path.jsonl") == ("a.b", "some/path.jsonl")
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(ConfigError):
            parse_override(bad)
    assert parse_override('a="runs/try #2"') == ("a", "runs/try #2") and parse_override("a=x#2") == ("a", "x#2")
    assert parse_override("a=~/runs") == ("a", "~/runs")
    # YAML drops ' #...' (a comment) and reads a bare ~ as null: refused rather than read otherwise
    for bad, dropped in (("a=runs/try #2", "'#2'"), ("a=[1, 2] # two", "'# two'"), ("a= #x", "'#x'")):
        with pytest.raises(ConfigError, match=f"^a: YAML reads {dropped} in the value as a comment"):
            parse_override(bad)
    with pytest.raises(ConfigError, match="^a: '~' is YAML's null here, not the home folder"):
        parse_override("a=~")


@pytest.mark.parametrize("key", ["results_dir", "data.path", "search.latency_model", "teacher.name",
                                 "distill.transfer_extra", "seq2seq.train_extra"])
@pytest.mark.parametrize("path, problem", [("~nouser-here/x", "Could not determine home directory"),
                                           ('"a\\0b"', "null byte")])
def test_a_path_that_cannot_be_made_absolute_is_named(key, path, problem):
    value = f"[{path}]" if key.endswith("extra") else path
    with pytest.raises(ConfigError, match=f"^{key}: .*{problem}"):
        load_config(None, [f"{key}={value}"])


def test_a_value_of_nested_yaml_aliases_is_named_without_expanding_it(tmp_path):
    """"Billion laughs": each level nine aliases of the one before. The error's repr of the
    value was built whole (9**5 items here; a few more levels took minutes and gigabytes)."""
    levels = ['["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"[{', '.join([f'*l{i}'] * 9)}]" for i in range(4)]
    config = tmp_path / "laughs.yaml"
    config.write_text("seed:\n" + "".join(f"  - &l{i} {level}\n" for i, level in enumerate(levels)))
    with pytest.raises(ConfigError, match=r"^seed: expected int, got \[\['lol', .*\.\.\.$") as err:
        load_config(config)
    assert len(str(err.value)) < 120


def test_a_config_that_is_not_utf8_names_its_line(tmp_path):
    config = tmp_path / "latin.yaml"
    config.write_bytes(b"seed: 1\n# caf\xe9\nsearch:\n  top_k: 1\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml:2: not UTF-8 text"):
        load_config(config)


def test_a_config_that_is_a_fifo_is_refused_not_read_for_ever(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)  # nothing writes to it: a read would block the command for ever
    with pytest.raises(ConfigError, match=f"{fifo}: not a regular file"):
        load_config(fifo)
    read, write = os.pipe()  # a pipe the shell hands over (`--config <(...)`) has its writer: read
    os.write(write, b"seed: 7\n")
    os.close(write)
    try:
        assert load_config(f"/dev/fd/{read}").seed == 7
    finally:
        os.close(read)


def test_a_folder_named_like_a_shipped_config_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()  # results/ holds smoke/ and demo/ after the jobs ran
    assert resolve_config_path("smoke") == CONFIG_DIR / "smoke.yaml"
    (tmp_path / "mine").write_text("seed: 3\n")
    assert resolve_config_path("mine") == Path("mine")


def test_job_config_sections_and_absolute_results_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["results_dir=out", "search.top_k=2", "resources.gpus_per_trial=0.5",
                             "data.max_train=40", "teacher.name=minilm-l6", "distill.epochs=1"])
    assert cfg.results_dir == str(tmp_path / "out")
    assert (cfg.search.top_k, cfg.resources.gpus_per_trial, cfg.data.max_train) == (2, 0.5, 40)
    assert cfg.distill.epochs == 1
    with pytest.raises(ConfigError, match="distill.epochz"):
        load_config(None, ["distill.epochz=1"])
    with pytest.raises(ConfigError, match="data.max_train"):
        load_config(None, ["data.max_train=many"])
    with pytest.raises(ConfigError, match="distill.student_tokenizer: 'chars' is not one of"):
        load_config(None, ["distill.student_tokenizer=chars"])
    with pytest.raises(ConfigError, match="distill.transfer_set: 'some'"):
        load_config(None, ["distill.transfer_set=some"])


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_config(listy)


def test_config_hash_stable_and_sensitive(tmp_path):
    a = load_config(None, [f"results_dir={tmp_path}/a"])
    b = load_config(None, [f"results_dir={tmp_path}/b"])
    assert config_hash(a) == config_hash(b)  # where results go is not what they mean
    c = load_config(None, ["search.top_k=7"])
    assert config_hash(a) != config_hash(c)
    assert config_hash(a, ("seq2seq",)) == config_hash(c, ("seq2seq",))


def test_shipped_configs_load():
    names = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
    assert {"smoke.yaml", "demo.yaml"} <= set(names)
    for name in names:
        assert isinstance(load_config(CONFIG_DIR / name), JobConfig)


def test_top_k_of_distinct_shapes_skips_heads_only_variants():
    from ray_jobs.compress import selected_ranks, trial_specs

    def cand(layers, hidden, heads, ffn):
        return {"layers": layers, "hidden": hidden, "heads": heads, "ffn": ffn, "vocab": 1000}

    ranked = [cand(6, 80, 8, 480), cand(6, 80, 4, 480), cand(6, 80, 2, 480), cand(5, 96, 8, 384),
              cand(5, 96, 4, 384), cand(4, 112, 8, 256)]
    plain = load_config(None, ["search.top_k=3"])
    shapes = load_config(None, ["search.top_k=3", "search.distinct_shapes=true"])
    assert selected_ranks(plain, ranked) == [0, 1, 2]
    assert selected_ranks(shapes, ranked) == [0, 3, 5]
    students = [s["candidate"] for s in trial_specs(shapes, ranked) if s["candidate"]["kind"] == "student"]
    assert [(c["layers"], c["heads"]) for c in students] == [(6, 8), (5, 8), (4, 8)]


def test_search_sizes_students_with_the_head_they_will_carry():
    """The demo's bi-encoder students carry a cosine head (2 parameters, no pooler): the GA's
    size, the budget check and the search table count that head, not a sequence classifier's."""
    from ray_jobs.compress import search_candidates, student_head
    from search import cost
    from search.space import Arch, SearchSpace, teacher_spec
    from training.data import ClsExample
    from training.models import build_student

    pairs = {"train": [ClsExample("def f(): pass", "f", 1)]}
    single = {"train": [ClsExample("def f(): pass", None, 1)]}
    demo = load_config(CONFIG_DIR / "demo.yaml", ["search.top_k=1", "search.generations=5"])
    assert student_head(demo, pairs) == "pair_cosine"
    assert student_head(demo, single) == "sequence"  # a defect task: one input, the family's classifier
    concat = load_config(None, ["distill.pair_mode=separate", "distill.pair_head=concat"])
    assert student_head(concat, pairs) == "pair_concat"
    assert student_head(load_config(None), pairs) == "sequence"

    teacher = teacher_spec("minilm-l6")
    found = search_candidates(demo, teacher, 2, "pair_cosine")
    best = found[0]
    assert best["head"] == "pair_cosine"
    assert {c["layers"] for c in found} == {1} == {demo.search.max_layers}  # the demo's cap holds the GA
    deeper = search_candidates(load_config(CONFIG_DIR / "demo.yaml", ["search.max_layers=null", "search.top_k=1",
                                                                      "search.generations=5"]),
                               teacher, 2, "pair_cosine")
    assert max(c["layers"] for c in deeper) > 1
    model = build_student(Arch(*(best[g] for g in ("layers", "hidden", "heads", "ffn", "vocab"))),
                          teacher, pair_mode="separate", pair_head="cosine")
    assert best["params"] == sum(p.numel() for p in model.parameters())
    assert best["size_mb"] == pytest.approx(best["params"] * 4e-6)
    # the budget check counts the head too: the sequence head's smallest model is larger
    space = SearchSpace.from_teacher(teacher, min_head_size=demo.search.min_head_size,
                                     max_layers=demo.search.max_layers)  # the demo's space
    floor = cost.size_mb(space.smallest(), teacher, head="pair_cosine")
    at_floor = load_config(CONFIG_DIR / "demo.yaml", [f"search.target_mb={floor}", "search.generations=5"])
    assert search_candidates(at_floor, teacher, 2, "pair_cosine")
    with pytest.raises(ConfigError, match="search.target_mb=.* is below the smallest architecture"):
        search_candidates(at_floor, teacher, 2, "sequence")


def test_a_latency_budget_holds_the_jobs_search(tmp_path):
    """search.latency_model + search.max_ms: every candidate predicted within the budget, the
    prediction in its row; a model of the other input format, a missing file, a budget below
    the fastest student are refused by name; the sweep id follows the model file's contents."""
    from ray_jobs.compress import search_candidates, sweep_id
    from search import latency
    from search.space import teacher_spec

    teacher = teacher_spec("minilm-l6")
    path = latency.save(latency.LatencyModel(1.0, 1.0, 0.0, seq_len=64, pair=True), tmp_path / "m.json")
    common = ["search.max_layers=null", "search.generations=5", f"search.latency_model={path}"]
    cfg = load_config(CONFIG_DIR / "demo.yaml", [*common, "search.max_ms=2.5"])
    found = search_candidates(cfg, teacher, 2, "pair_cosine")
    assert {c["layers"] for c in found} == {1} and {c["predicted_ms"] for c in found} == {2.0}
    free = search_candidates(load_config(CONFIG_DIR / "demo.yaml", common), teacher, 2, "pair_cosine")
    assert max(c["layers"] for c in free) > 1 and all(c["predicted_ms"] == 1 + c["layers"] for c in free)
    with pytest.raises(ConfigError, match="^search.latency_model: fitted on pairs encoded separately; "
                                          "students with the sequence head read single sequences$"):
        search_candidates(cfg, teacher, 2, "sequence")
    with pytest.raises(ConfigError, match="^search.max_ms=1.5 is below the fastest architecture"):
        search_candidates(load_config(CONFIG_DIR / "demo.yaml", [*common, "search.max_ms=1.5"]), teacher, 2,
                          "pair_cosine")
    with pytest.raises(ConfigError, match="^search.latency_model: .*no such latency model file"):
        search_candidates(load_config(CONFIG_DIR / "demo.yaml", [f"search.latency_model={tmp_path}/none.json"]),
                          teacher, 2, "pair_cosine")
    before = sweep_id(cfg)
    latency.save(latency.LatencyModel(1.0, 0.9, 0.0, seq_len=64, pair=True), path)
    assert sweep_id(cfg) != before


def test_the_job_notes_a_latency_model_timed_unlike_its_students(tmp_path, capsys):
    """predicted_ms and latency_ms compare only when timed alike: the job says which settings
    differ (a budget for another machine is allowed, so a note, not a refusal)."""
    from ray_jobs.compress import search_candidates, timing_differences
    from search import latency
    from search.space import teacher_spec

    alike = latency.LatencyModel(1.0, 1.0, 0.0, seq_len=64, pair=True, threads=1, device="cpu", head="pair_cosine")

    def differences(*overrides, model=alike, head="pair_cosine"):
        return timing_differences(load_config(CONFIG_DIR / "demo.yaml", list(overrides)), model, head)

    # the demo: CPU trials of 1 core, 64 tokens a side, the cosine pair head
    assert differences() == [] and differences(model=dataclasses.replace(alike, threads=None)) == []
    assert differences("distill.latency_threads=2") == ["1 thread(s) vs the job's 2 (distill.latency_threads)"]
    assert differences("resources.cpus_per_trial=2") == ["1 thread(s) vs the job's 2 (distill.latency_threads)"]
    assert differences("distill.latency_seq_len=32") == ["64 tokens an input vs the job's 32 (distill.latency_seq_len)"]
    assert differences(head="pair_concat") == ["the pair_cosine head vs the job's pair_concat"]
    assert differences(head="pair_concat", model=dataclasses.replace(alike, head=None)) == []  # not recorded
    assert differences(head="sequence") == []  # another input format: the search refuses it, by name
    assert differences("resources.gpus_per_trial=1") == ["device cpu vs the job's cuda"]
    # a GPU trial that times its students on the CPU: the CPU model fits, its threads are compared
    assert differences("resources.gpus_per_trial=1", "distill.latency_device=cpu") == []
    assert differences("resources.gpus_per_trial=1", "distill.latency_device=cpu", "distill.latency_threads=8") == [
        "1 thread(s) vs the job's 8 (distill.latency_threads)"]
    path = latency.save(dataclasses.replace(alike, threads=4), tmp_path / "m.json")
    search_candidates(load_config(CONFIG_DIR / "demo.yaml", ["search.generations=2", f"search.latency_model={path}"]),
                      teacher_spec("minilm-l6"), 2, "pair_cosine")
    assert "fitted with 4 thread(s) vs the job's 1" in capsys.readouterr().out


@pytest.mark.parametrize("job", ["prune", "compress"])
def test_sweep_id_follows_the_trials_recipe(monkeypatch, job):
    """Trials computed by an earlier recipe (the same config) are not resumed or restored."""
    import importlib

    module = importlib.import_module(f"ray_jobs.{job}")
    cfg = load_config(CONFIG_DIR / "smoke.yaml")
    before = module.sweep_id(cfg)
    monkeypatch.setattr(module, "RECIPE", module.RECIPE + 1)
    assert module.sweep_id(cfg) != before


@pytest.mark.parametrize("job, changes", [
    ("compress", ["seed=7", "data.seed=5", "teacher.name=codebert-base", "search.top_k=3", "finetune.epochs=5",
                  "distill.epochs=9", "baselines.bilstm_paper=true"]),
    ("prune", ["data.seed=5", "teacher.name=codebert-base", "seq2seq.train_steps=7", "prune.rate=0.3"]),
])
def test_every_section_a_job_reads_names_its_sweep(job, changes):
    """A change in any section the job computes from is another sweep (a finished one is not
    restored in its place); where its trials run (resources) is not."""
    import importlib

    module = importlib.import_module(f"ray_jobs.{job}")
    base = module.sweep_id(load_config(CONFIG_DIR / "smoke.yaml"))
    for change in changes:
        assert module.sweep_id(load_config(CONFIG_DIR / "smoke.yaml", [change])) != base, change
    assert module.sweep_id(load_config(CONFIG_DIR / "smoke.yaml", ["resources.cpus_per_trial=2"])) == base


@pytest.mark.parametrize("changes, same", [(["distill.quantize=[int8,bf16,onnx]"], True),
                                           (["distill.quantize=[int8_emb,int8]"], True),
                                           (["distill.quantize=[]"], False)])
def test_the_compression_sweep_hashes_only_whether_distill_quantize_lists_a_variant(changes, same):
    """Another list is the same sweep, whose saved models `compress.quantize_stage` quantizes
    again; none at all drops the teacher's trial: another sweep."""
    from ray_jobs import compress

    base = load_config(CONFIG_DIR / "smoke.yaml")
    assert (compress.sweep_id(load_config(CONFIG_DIR / "smoke.yaml", changes)) == compress.sweep_id(base)) is same
    assert config_hash(load_config(CONFIG_DIR / "smoke.yaml", changes)) != config_hash(base)  # the stamps tell


def test_a_setting_hashed_as_another_value_must_exist():
    with pytest.raises(KeyError, match="no setting distill.quantise"):
        config_hash(load_config(CONFIG_DIR / "smoke.yaml"), hashed_as={"distill.quantise": True})


@pytest.mark.parametrize("change", ["quantize.beam=2", "quantize.variants=[fp32,int8]", "quantize.test_subset=5"])
def test_the_pruning_sweep_is_the_same_under_other_quantize_settings(change):
    """The quantize stage runs after the sweep, from its saved rounds: other quantize settings
    re-quantize a finished sweep's models (`prune.quantize_stage`), they do not prune anew."""
    from ray_jobs import prune

    base = load_config(CONFIG_DIR / "smoke.yaml")
    changed = load_config(CONFIG_DIR / "smoke.yaml", [change])
    assert prune.sweep_id(changed) == prune.sweep_id(base)
    assert prune.quantize_settings(changed.quantize) != prune.quantize_settings(base.quantize)


def test_code_version_of_a_dirty_tree_names_its_sources(monkeypatch):
    """Two trees with different uncommitted changes must not share one stamp."""
    from ray_jobs import config

    monkeypatch.setattr(config, "_git_version", lambda: "c319e49")
    assert config.code_version() == "c319e49"
    monkeypatch.setattr(config, "_git_version", lambda: "c319e49-dirty")
    monkeypatch.setattr(config, "_source_hash", lambda: "0123abcd4567")
    assert config.code_version() == "c319e49-dirty+src.0123abcd4567"


def test_sweep_id_follows_the_data_content_not_only_its_path(tmp_path):
    """Re-running a finished job after its data changed in place must not restore the old
    sweep (and keep its rows): the sweep id hashes the data's contents."""
    import shutil

    from ray_jobs import compress, prune

    fixtures = Path(__file__).resolve().parents[1] / "training" / "fixtures"
    data, extra = tmp_path / "c2t", tmp_path / "extra"
    shutil.copytree(fixtures / "code_to_text", data)
    shutil.copytree(fixtures / "code_to_text", extra)
    plain = [f"data.path={data}"]
    extras = plain + [f"distill.transfer_extra=[{extra}]", f"seq2seq.train_extra=[{extra}]"]

    def ids():
        return [job.sweep_id(load_config(None, o)) for job in (compress, prune) for o in (plain, extras)]

    first = ids()
    assert ids() == first and len(set(first)) == 4  # stable; extra data is part of the identity

    def drop_last_line(file):
        file.write_text("".join(file.read_text().splitlines(keepends=True)[:-1]))

    drop_last_line(extra / "test.jsonl")  # only the runs that read the extra data change
    second = ids()
    assert [a == b for a, b in zip(first, second, strict=True)] == [True, False, True, False]
    drop_last_line(data / "test.jsonl")
    assert not set(ids()) & set(first + second)


def test_trials_start_with_the_paper_width_baseline():
    """Tune starts trials in spec order: the longest (the H300 BiLSTM_soft) goes first."""
    from ray_jobs.compress import trial_specs

    ranked = [{"layers": 6, "hidden": 80, "heads": 8, "ffn": 480, "vocab": 1000},
              {"layers": 6, "hidden": 48, "heads": 8, "ffn": 1056, "vocab": 1000}]
    both = load_config(None, ["search.top_k=2", "baselines.bilstm_paper=true", "baselines.bilstm_budget=true"])
    assert [s["trial_key"] for s in trial_specs(both, ranked)] == [
        "bilstm-paper", "student-0", "student-1", "bilstm-budget", "teacher"]  # the quantized teacher last
    no_paper = load_config(None, ["search.top_k=2", "baselines.bilstm_paper=false", "baselines.bilstm_budget=true",
                                  "distill.quantize=[]"])
    assert [s["trial_key"] for s in trial_specs(no_paper, ranked)] == ["student-0", "student-1", "bilstm-budget"]


def test_relative_data_path_and_teacher_folder_made_absolute(tmp_path, monkeypatch):
    # Trials run in their own folders: a relative path would name a different place there.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "my-teacher").mkdir(parents=True)
    cfg = load_config(None, ["data.path=data/ruby", "teacher.name=models/my-teacher",
                             "distill.transfer_extra=[more/numpy, /abs/torch]",
                             "seq2seq.train_extra=[more/numpy]"])
    assert cfg.data.path == str(tmp_path / "data" / "ruby")
    assert cfg.distill.transfer_extra == (str(tmp_path / "more" / "numpy"), "/abs/torch")
    assert cfg.seq2seq.train_extra == (str(tmp_path / "more" / "numpy"),)
    assert cfg.teacher.name == str(tmp_path / "models" / "my-teacher")
    hub = load_config(None, ["teacher.name=microsoft/codebert-base"])
    assert hub.teacher.name == "microsoft/codebert-base" and hub.data.path is None


@pytest.mark.parametrize("key", ["distill.transfer_extra", "seq2seq.train_extra"])
def test_extra_data_named_twice_is_refused_once_made_absolute(tmp_path, monkeypatch, key):
    monkeypatch.chdir(tmp_path)  # x and ./x and its absolute path are one folder: its pairs would count twice
    with pytest.raises(ConfigError, match=rf"{key}: {tmp_path / 'more'} named more than once"):
        load_config(None, [f"{key}=[more, ./more, other]"])
    section, name = key.split(".")
    assert len(getattr(getattr(load_config(None, [f"{key}=[more, other]"]), section), name)) == 2
    # the job's own data as extra data: each train pair twice (9,710 pairs, 4,869 distinct)
    with pytest.raises(ConfigError, match=rf"{key}: {tmp_path / 'mine'} is the job's own data \(data.path\)"):
        load_config(None, ["data.path=mine", f"{key}=[other, ./mine/]"])
    from training.data import default_data_path

    with pytest.raises(ConfigError, match=rf"{key}: {default_data_path()} is the job's own data"):
        load_config(None, [f"{key}=[{default_data_path()}]"])  # data.path unset: the embedded set


def test_extra_data_caps_refused_on_load():
    with pytest.raises(ConfigError, match="max_transfer_extra"):
        load_config(None, ["distill.max_transfer_extra=0"])
    with pytest.raises(ConfigError, match="max_train_extra"):
        load_config(None, ["seq2seq.max_train_extra=0"])


@pytest.mark.parametrize("override, message", [
    ("search.variant=fast", "search.variant: 'fast' is not one of"),
    ("search.population=1", "search.population: must be >= 2"),
    # the driver allocated for ever, silent (1e30 children: 2.5 GB in 40 s)
    ("search.population=10001", "search.population: at most 10,000, got 10,001"),
    ("search.children=1000000000000000000000000000000", "search.children: at most 10,000"),
    ("search.generations=10001", "search.generations: at most 10,000"),
    ("search.max_mb=-1", "search.max_mb: must be > 0"),
    ("search.target_mb=.nan", "search.target_mb: must be > 0"),
    ("search.target_mb=1e308", "search.target_mb: at most 1,000,000 MB"),
    ("search.target_mb=.inf", "search.target_mb: must be finite"),
    ("search.crossover_rate=5", "search.crossover_rate: must be in [0, 1]"),
    ("search.top_k=-1", "search.top_k: must be >= 0"),
    ("search.max_layers=0", "search.max_layers: must be an integer >= 1"),
    ("search.max_ms=3", "search.max_ms: needs search.latency_model"),
    ("search.max_ms=0", "search.max_ms: must be > 0"),
    ("resources.object_store_mb=0", "resources.object_store_mb: Ray needs at least 75"),
    # ray.init's ValueError came as a traceback, after the job's checks
    ("resources.num_cpus=1000000000000000000000000000000", "resources.num_cpus: Ray takes at most 1e+14"),
    ("resources.num_gpus=1000000000000000", "resources.num_gpus: Ray takes at most 1e+14 of a resource, got 1e+15"),
    ("resources.num_cpus=-1", "resources.num_cpus: must be an integer >= 1"),
    ("resources.prepare_cpus=-1", "resources.prepare_cpus: must be > 0"),
    ("resources.max_concurrent_trials=0", "resources.max_concurrent_trials: must be an integer >= 1"),
    ("failure.max_failures=-5", "failure.max_failures: must be >= 0"),
    ("teacher.pair_mode=both", "teacher.pair_mode: 'both' is not one of"),
    ("finetune.batch_size=0", "finetune.batch_size: must be an integer >= 1"),
    ("finetune.warmup_ratio=5", "finetune.warmup_ratio: must be in [0, 1]"),
    ("distill.epochs=0", "distill.epochs: must be an integer >= 1"),
    ("distill.temperature=0", "distill.temperature: must be > 0"),
    ("distill.latency_runs=5", "distill.latency_runs: must be an integer >= 20"),
    ("distill.latency_rounds=0", "distill.latency_rounds: must be an integer >= 1"),
    ("distill.latency_rounds=21", "distill.latency_rounds: at most latency_runs (20) blocks"),
    ("distill.bilstm_vocab=0", "distill.bilstm_vocab: a byte-level BPE needs >= 261"),
    # failed in the tokenizers library after the teacher's fine-tuning ("int too big to convert")
    ("distill.bilstm_vocab=1000000000000000000000000000000", "distill.bilstm_vocab: a byte-level BPE needs "
                                                            ">= 261 tokens, and at most 1,000,000 are allowed"),
    ("distill.quantize=[int8,int8]", "distill.quantize: repeated items"),
    ("seq2seq.dropout=2", "seq2seq.dropout: must be in [0, 1)"),
    ("seq2seq.target_len=1", "seq2seq.target_len: must be >= 2"),
    # a max_length below the special tokens truncated nothing: sources past 512 tokens crashed
    ("seq2seq.source_len=1", "seq2seq.source_len: must be an integer >= 4 (the special tokens"),
    ("finetune.max_seq_len=3", "finetune.max_seq_len: must be an integer >= 4"),
    ("distill.max_seq_len=2", "distill.max_seq_len: must be an integer >= 4"),
    ("seq2seq.beam=0", "seq2seq.beam: must be an integer >= 1"),
    ("prune.rate=1.5", "prune.rate: must be in (0, 1)"),
    ("prune.rate=0.5", "prune.rate: 0.5 x 2 rounds prunes every weight"),
    ("prune.rate_of=half", "prune.rate_of: 'half' is not one of"),
    ("prune.methods=[l1-global,l1-global]", "prune.methods: repeated items"),
    ("prune.scopes=[encoder,everything]", "prune.scopes: 'everything' is not one of"),
    ("prune.batch_sizes=[8,8]", "prune.batch_sizes: repeated items"),
    ("prune.rounds=[0]", "prune.rounds: must be an integer >= 1"),
    ("prune.eval_every=0", "prune.eval_every: must be an integer >= 1"),
    ("quantize.variants=[int4]", "quantize.variants: 'int4' is not one of"),
    ("quantize.test_subset=0", "quantize.test_subset: must be an integer >= 1"),
    ("prune.latency_runs=5", "prune.latency_runs: must be an integer >= 20"),
    ("quantize.latency_runs=19", "quantize.latency_runs: must be an integer >= 20"),
    # torch.set_num_threads overflowed on these inside a trial, after the fine-tuning
    ("distill.latency_threads=2147483648", "distill.latency_threads: must be an integer in [1, 1024]"),
    ("prune.latency_threads=4096", "prune.latency_threads: must be an integer in [1, 1024]"),
    ("quantize.latency_threads=0", "quantize.latency_threads: must be an integer in [1, 1024]"),
])
def test_out_of_range_settings_refused_when_read_naming_the_key(override, message):
    """Refused when the config is read (exit 2 before any work), not inside a trial."""
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG_DIR / "demo.yaml", [override])
    assert str(err.value).startswith(message), str(err.value)


def test_yaml_date_is_a_wrong_type_not_a_crash(tmp_path):
    config = tmp_path / "dated.yaml"
    config.write_text("results_dir: 2024-01-01\n")
    with pytest.raises(ConfigError, match="results_dir: expected str"):
        load_config(config)


@pytest.mark.parametrize("value, named", [
    ("2024-02-30", "timestamp (day is out of range for month)"),
    ("!!int abc", "int (invalid literal"),
    ("!!timestamp x", "timestamp"),
    ("1" * 5000, "int (Exceeds the limit"),
])
def test_an_impossible_yaml_value_is_a_config_error_at_its_line(tmp_path, value, named):
    """PyYAML's constructors raised ValueError for these, a traceback and exit 1."""
    config = tmp_path / "bad.yaml"
    config.write_text(f"distill:\n  epochs: 2\nresults_dir: {value}\n")
    with pytest.raises(ConfigError, match=f"line 3, column 14: .*cannot read this {re.escape(named)}") as err:
        load_config(config)
    with pytest.raises(ConfigError, match=f"results_dir: cannot parse value .*{re.escape(named)}") as again:
        load_config(CONFIG_DIR / "smoke.yaml", [f"results_dir={value}"])
    for message in (str(err.value), str(again.value)):  # the value is cut, not echoed 5,000 digits long
        assert len(message.split("\n")[0]) < 400 and "set_int_max_str_digits" not in message


def test_an_override_of_a_section_shared_by_a_yaml_alias_writes_that_section_alone(tmp_path):
    config = tmp_path / "alias.yaml"
    config.write_text("finetune: &common {epochs: 2, lr: 1.0e-4}\ndistill: *common\n")
    cfg = load_config(config, ["finetune.epochs=7"])
    assert (cfg.finetune.epochs, cfg.distill.epochs) == (7, 2)
    assert (cfg.finetune.lr, cfg.distill.lr) == (1.0e-4, 1.0e-4)


def test_a_utf8_config_reads_whatever_the_locale(tmp_path, monkeypatch):
    config = tmp_path / "utf8.yaml"
    config.write_text("results_dir: résultats\n", encoding="utf-8")
    real = pathlib.Path.read_text

    def locale_ascii(self, encoding=None, errors=None):  # what a C locale's default gives
        return real(self, encoding=encoding or "ascii", errors=errors)

    monkeypatch.setattr(pathlib.Path, "read_text", locale_ascii)
    assert load_config(config).results_dir.endswith("résultats")


# ---------------------------------------------------------------- audit of the config handling

_MAX_SEED = 2**63 - 1  # torch.manual_seed takes up to 2**64 - 1; seed + offset needs headroom
_SEED_KEYS = ("seed", "data.seed", "finetune.seed", "distill.seed", "seq2seq.seed", "prune.seed", "search.seed")
_BIG_INT = "1" + "0" * 400  # beyond a float: float() raises OverflowError


@pytest.mark.parametrize("text, key, line", [
    ("seed: 1\nseed: 2\n", "'seed'", 2),
    ("distill:\n  lr: 1.0e-3\n  epochs: 2\n  lr: 1.0e-4\n", "'lr'", 4),
    ("distill:\n  epochs: 2\nprune:\n  rate: 0.1\ndistill:\n  lr: 1.0e-4\n", "'distill'", 5),
    ("prune:\n  methods: [l1-global]\n  rounds: [2]\n  methods: [random-global]\n", "'methods'", 4),
    ("distill: {epochs: 2, epochs: 3}\n", "'epochs'", 1),
])
def test_yaml_repeated_key_refused_naming_it_and_its_line(tmp_path, text, key, line):
    """safe_load keeps the last of two equal keys: the first setting would vanish silently."""
    config = tmp_path / "dup.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert "dup.yaml" in str(err.value) and f"repeated key {key}" in str(err.value), str(err.value)
    assert f"line {line}" in str(err.value), str(err.value)


def test_yaml_merge_key_may_still_be_overridden(tmp_path):
    config = tmp_path / "merge.yaml"  # `<<` then an explicit key: YAML's override, not a repeat
    config.write_text("finetune: &ft\n  epochs: 2\n  lr: 1.0e-4\ndistill:\n  <<: *ft\n  epochs: 3\n")
    cfg = load_config(config)
    assert (cfg.distill.epochs, cfg.distill.lr, cfg.finetune.epochs) == (3, 1e-4, 2)


def test_override_value_with_repeated_key_refused():
    with pytest.raises(ConfigError, match="^a: "):
        parse_override("a={x: 1, x: 2}")


@pytest.mark.parametrize("override, message", [
    ("distill.lr=.inf", "distill.lr: must be finite"),
    ("distill.lr=-.inf", "distill.lr: must be finite"),
    ("distill.lr=1e400", "distill.lr: must be finite"),  # YAML 1.1 string -> float('1e400') = inf
    ("distill.temperature=.inf", "distill.temperature: must be finite"),
    ("distill.hard_weight=.inf", "distill.hard_weight: must be finite"),
    ("distill.bilstm_lr=.inf", "distill.bilstm_lr: must be finite"),
    ("distill.max_grad_norm=.inf", "distill.max_grad_norm: must be finite"),
    ("distill.weight_decay=.inf", "distill.weight_decay: must be finite"),
    ("finetune.lr=.inf", "finetune.lr: must be finite"),
    ("seq2seq.lr=.inf", "seq2seq.lr: must be finite"),
    ("seq2seq.adam_eps=.inf", "seq2seq.adam_eps: must be finite"),
    ("prune.lr=.inf", "prune.lr: must be finite"),
    ("resources.gpus_per_trial=.inf", "resources.gpus_per_trial: must be finite"),
    ("resources.cpus_per_trial=.inf", "resources.cpus_per_trial: must be finite"),
    ("search.max_mb=.inf", "search.max_mb: must be finite"),
    ("distill.in_batch_weight=.nan", "distill.in_batch_weight: must be >= 0"),
    ("distill.in_batch_temperature=.nan", "distill.in_batch_temperature: must be > 0"),
    ("distill.in_batch_weight=.inf", "distill.in_batch_weight: must be finite"),
    (f"distill.lr={_BIG_INT}", "distill.lr: "),
    (f"prune.lr={_BIG_INT}", "prune.lr: "),
    ("prune.rounds=[]", "prune.rounds: must not be empty"),
    *((f"{key}=18446744073709551617", f"{key}: must be an integer in [0, {_MAX_SEED}]") for key in _SEED_KEYS),
    *((f"{key}=-1", f"{key}: must be an integer in [0, {_MAX_SEED}]") for key in _SEED_KEYS),
    *((f"{key}={_MAX_SEED + 1}", f"{key}: must be an integer in [0, {_MAX_SEED}]") for key in _SEED_KEYS),
    ("results_dir=", "results_dir: must not be empty"),
    ("results_dir= ", "results_dir: must not be empty"),
    ("teacher.name=", "teacher.name: must not be empty"),
    ("data.path=", "data.path: must not be empty"),
    ("distill.transfer_extra=['']", "distill.transfer_extra: must not be empty"),
    ("seq2seq.train_extra=[more, ' ']", "seq2seq.train_extra: must not be empty"),
])
def test_audited_values_refused_when_read_naming_the_key(override, message):
    """inf trains garbage, a seed past torch's limit fails every trial, an empty path is the cwd."""
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG_DIR / "demo.yaml", [override])
    assert str(err.value).startswith(message), str(err.value)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)  # one line, not 400 digits


@pytest.mark.parametrize("key", _SEED_KEYS)
def test_largest_seed_accepted(key):
    cfg = load_config(CONFIG_DIR / "demo.yaml", [f"{key}={_MAX_SEED}"])
    section, _, name = key.rpartition(".")
    assert getattr(getattr(cfg, section) if section else cfg, name) == _MAX_SEED


def test_yaml_float_overflow_is_refused_as_infinite(tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text("distill:\n  lr: 1.0e+400\n")  # a YAML float: inf
    with pytest.raises(ConfigError, match=r"^distill\.lr: must be finite"):
        load_config(config)
    config.write_text("seq2seq:\n  lr: 1e400\n")  # a YAML 1.1 string, read by float()
    with pytest.raises(ConfigError, match=r"^seq2seq\.lr: must be finite"):
        load_config(config)


def test_empty_path_in_yaml_refused(tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text("results_dir: ''\n")
    with pytest.raises(ConfigError, match="^results_dir: must not be empty"):
        load_config(config)


@pytest.mark.parametrize("override, example", [
    ("distill={epochs: 2}", "distill.epochs=2"),
    ("distill=null", "distill."),
    ("data=null", "data."),
    ("teacher=minilm-l6", "teacher."),
])
def test_whole_section_override_refused(override, example):
    """It replaced the section with defaults: demo's distill.precision bf16 silently became fp32."""
    section = override.partition("=")[0]
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG_DIR / "demo.yaml", [override])
    assert str(err.value).startswith(f"{section}: ") and example in str(err.value), str(err.value)


def test_null_section_in_yaml_still_means_defaults(tmp_path):
    config = tmp_path / "null.yaml"
    config.write_text("data:\ndistill:\n  epochs: 2\n")
    cfg = load_config(config)
    assert cfg.data == JobConfig().data and cfg.distill.epochs == 2


def test_yaml_syntax_error_names_problem_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill:\n  epochs: 2\n lr: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "bad.yaml" in text and "line 3, column 2" in text and "expected <block end>" in text, text
    assert "\n" not in text
