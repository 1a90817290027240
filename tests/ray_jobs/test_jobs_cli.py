"""CLI bad input: one line on stderr naming the culprit, exit code 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ray_jobs", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, culprit", [
    (["compress", "--config", "smoke", "search.topk=1"], "search.topk"),
    (["compress", "--config", "no-such-config.yaml"], "no-such-config.yaml"),
])
def test_bad_config_is_one_line_exit_2(args, culprit):
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and culprit in proc.stderr
    assert "Traceback" not in proc.stderr


def test_query_without_tables(tmp_path):
    proc = _cli("query", "SELECT 1", f"results_dir={tmp_path}")
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr
    proc = _cli("tables", "results_dir=x", "seed=3")
    assert proc.returncode == 2 and "seed=3" in proc.stderr
