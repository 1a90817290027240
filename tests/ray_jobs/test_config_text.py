"""`python -m ray_jobs config`: every setting a job would run with, as YAML that --config reads
back, each key under its dataclass's comment."""

import dataclasses
from dataclasses import dataclass

import pytest
import yaml

from ray_jobs.__main__ import main
from ray_jobs.config import JobConfig, load_config, resolve_config_path
from ray_jobs.config_text import config_yaml, field_comments
from training.data import DataConfig

SHIPPED = ("smoke", "demo", "codebert-devign", "codebert-bigclone", "codebert-ruby")


@dataclass(frozen=True)
class _Commented:
    """A docstring: not a comment.
    # nor is this line of it
    """

    # a block above the field
    # on two lines
    first: int = 1  # and one on its line
    second: str = "x"

    # a block with a blank line below it belongs to no field

    third: float = 0.5
    fourth: tuple[str, ...] = ("a",)  # only this one

    def method(self) -> None:
        # a comment inside a method
        fifth = 1  # noqa: F841


def _printed(capsys, argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", SHIPPED)
def test_the_printed_config_reads_back_as_the_same_config(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results_dir and other paths are absolute against it
    overrides = ['results_dir="runs/try #2"', "search.top_k=1", "prune.seed=3"]
    text = _printed(capsys, ["config", "--config", name, *overrides])
    saved = tmp_path / "printed.yaml"
    saved.write_text(text)
    assert load_config(saved) == load_config(resolve_config_path(name), overrides)
    assert text.splitlines()[0] == f"# python -m ray_jobs config --config {name} 'results_dir=\"runs/try #2\"' " \
                                   "search.top_k=1 prune.seed=3"


def test_every_key_is_printed_with_its_value(capsys):
    data = yaml.safe_load(_printed(capsys, ["config", "--config", "demo"]))
    cfg = load_config(resolve_config_path("demo"))

    def keys(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            yield from keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [f"{prefix}{f.name}"]

    def printed(tree, prefix=""):
        for key, value in tree.items():
            yield from printed(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]

    assert list(printed(data)) == list(keys(cfg))
    assert data["distill"]["quantize"] == list(cfg.distill.quantize) and data["search"]["max_layers"] == 1


def test_each_key_sits_under_its_dataclass_comment(capsys):
    lines = _printed(capsys, ["config"]).splitlines()  # no --config: the defaults, as `compress` without one
    at = lines.index("  path: null")  # data.path
    assert lines[at - 1] == "  # None -> embedded default data set (training/datasets/)"
    assert field_comments(DataConfig)["max_eval"] == "cap on valid and on test"
    assert "seed" not in field_comments(DataConfig)  # no comment, no line


def test_comments_are_the_block_above_and_the_one_on_the_line():
    assert field_comments(_Commented) == {
        "first": "a block above the field on two lines and one on its line",
        "fourth": "only this one",
    }
    text = config_yaml(_Commented(), "header")
    assert text.splitlines()[:4] == ["# header", "# a block above the field on two lines and one on its line",
                                     "first: 1", "second: x"]
    assert yaml.safe_load(text) == {"first": 1, "second": "x", "third": 0.5, "fourth": ["a"]}


def test_values_yaml_would_read_otherwise_are_quoted():
    cfg = dataclasses.replace(JobConfig(), results_dir="010")
    assert yaml.safe_load(config_yaml(cfg))["results_dir"] == "010"  # not octal 8


def test_a_bad_override_is_refused_as_the_job_refuses_it(capsys):
    assert main(["config", "--config", "demo", "distill.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: distill.epoch: unknown key") and err.count("\n") == 1


def test_an_interrupted_listing_is_not_told_to_resume(capsys, monkeypatch):
    import ray_jobs.__main__ as cli

    def interrupted(_args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_show_config", interrupted)
    assert main(["config"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
