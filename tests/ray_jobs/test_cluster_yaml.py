"""cluster.yaml is a valid Ray cluster-launcher config, checked offline with Ray's own code."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_schema_and_ray_validation(config):
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_validation_rejects_fractional_resources(config):
    """The schema really checks: a fractional resource value is refused."""
    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))


def test_cpu_head_and_single_gpu_workers(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU") == 1 for t in workers)
    for t in types.values():
        assert all(isinstance(v, int) for v in t["resources"].values())
    for t in workers:
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"]


def test_setup_installs_project_with_pinned_torch(config):
    for key in ("head_setup_commands", "worker_setup_commands"):
        cmds = config["setup_commands"] + config[key]
        torch_at = next(i for i, c in enumerate(cmds) if "torch==" in c)
        project_at = next(i for i, c in enumerate(cmds) if re.search(r"pip install .*-e ", c))
        assert torch_at < project_at, "torch must be pinned before the project pulls it"


def test_secure_defaults_and_no_secrets(config):
    text = (ROOT / "cluster.yaml").read_text()
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    for cmds in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_AUTH_MODE=token" in " ".join(config[cmds])
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY", text)
    assert "ssh_private_key" not in config["auth"]


def _readme_cluster_jobs() -> list[list[str]]:
    """The `ray job submit ... -- python -m ray_jobs compress|prune ...` commands of the README's
    cluster section, each as its arguments after `python -m ray_jobs`."""
    import shlex

    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    jobs = []
    for line in text.splitlines():
        if line.startswith("ray job submit") and re.search(r"-- +python -m ray_jobs (compress|prune) ", line):
            jobs.append(shlex.split(line.split("python -m ray_jobs", 1)[1]))
    return jobs


def test_the_readmes_cluster_jobs_fit_its_nodes(config):
    """The README's pruning job asked for codebert-ruby's 8 CPUs a trial on 4-CPU nodes: refused."""
    from ray_jobs.config import load_config, resolve_config_path
    from ray_jobs.sweep import _check_fits

    nodes = [{k: float(v) for k, v in t["resources"].items()} for t in config["available_node_types"].values()]
    jobs = _readme_cluster_jobs()
    assert {j[0] for j in jobs} == {"compress", "prune"}, jobs
    for job in jobs:
        name = job[job.index("--config") + 1]
        overrides = [a for a in job[1:] if "=" in a]
        _check_fits(load_config(resolve_config_path(name), overrides), nodes)  # ResourceError if no node holds it
