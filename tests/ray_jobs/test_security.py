"""Tree-wide guards: no credentials, safe checkpoint loads, local Ray on loopback only."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ray_jobs.sweep import SINGLE_NODE_ENV

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("search", "training", "ray_jobs")
SKIP = {".venv", ".git", "results", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache"}
SECRET = re.compile(
    r"AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[=:]|BEGIN [A-Z ]*PRIVATE KEY|"
    r"\bhf_[A-Za-z0-9]{30,}|\bgh[pousr]_[A-Za-z0-9]{30,}|RAY_AUTH_TOKEN\s*[=:]\s*\S"
)


def _files(suffixes: tuple[str, ...]) -> list[Path]:
    return [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in suffixes
            and not SKIP.intersection(p.relative_to(ROOT).parts)]


def _calls(tree: ast.AST, dotted: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted:
            yield node, {k.arg: k.value for k in node.keywords}


def test_no_credentials_in_repo_or_configs():
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _files((".py", ".yaml", ".yml", ".md", ".toml",
                                                           ".json", ".cfg", ".txt", ""))
            for n, line in enumerate(p.read_text(errors="ignore").splitlines(), 1)
            if SECRET.search(line) and "SECRET = re.compile" not in line]
    assert hits == []


def test_checkpoints_never_unpickled():
    """torch.load only with weights_only=True; no pickle/numpy-pickle loads in the packages."""
    bad = []
    for path in [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node, kw in _calls(tree, "torch.load"):
            if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        for name in ("pickle.load", "pickle.loads", "joblib.load"):
            bad += [f"{path.relative_to(ROOT)}:{n.lineno}" for n, _ in _calls(tree, name)]
        for node, kw in _calls(tree, "np.load"):
            if "allow_pickle" in kw and getattr(kw["allow_pickle"], "value", True):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []


def test_local_ray_heads_start_without_dashboard():
    """A local head the jobs start has no HTTP job API at all."""
    starts = []
    for path in (ROOT / "ray_jobs").rglob("*.py"):
        for node, kw in _calls(ast.parse(path.read_text()), "ray.init"):
            if getattr(kw.get("address"), "value", None) == "local":
                starts.append((path.name, node.lineno, kw))
    assert starts, "no local Ray start found: the check would prove nothing"
    for name, line, kw in starts:
        assert getattr(kw.get("include_dashboard"), "value", None) is False, (name, line)


# Runs in its own interpreter: starts Ray the way the jobs do, runs one task (so a worker
# exists), then lists the TCP ports in LISTEN state held by its own process tree.
_PROBE = r"""
import json, os, sys, ray
from ray_jobs.config import load_config
from ray_jobs.sweep import init_ray
init_ray(load_config(None, ["results_dir=" + sys.argv[1]]))
ray.get(ray.remote(lambda: os.getpid()).remote())

def children(pid):
    kids = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1] == str(pid):
                kids.append(int(d))
        except OSError:
            pass
    return kids + [k for c in kids for k in children(c)]

inodes = set()
for pid in [os.getpid()] + children(os.getpid()):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
listening = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
            listening.append(f[1])
print(json.dumps(listening))
ray.shutdown()
"""
LOOPBACK_HEX = ("0100007F",  # 127.0.0.1 (IPv4, little-endian words)
                "00000000000000000000000001000000",  # ::1
                "0000000000000000FFFF00000100007F")  # ::ffff:127.0.0.1


def test_local_ray_listens_on_loopback_only(tmp_path):
    """Every port of a local Ray the jobs start (GCS, raylet, agents, workers) is on loopback."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", SINGLE_NODE_ENV)}
    out = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "res")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    listening = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(listening) >= 3, listening  # GCS, raylet, a worker at least: else proves nothing
    exposed = [a for a in listening if a.rsplit(":", 1)[0] not in LOOPBACK_HEX]
    assert exposed == [], f"ports listening beyond loopback (hex ip:port): {exposed}"
