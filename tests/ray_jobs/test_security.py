"""Tree-wide guards: no credentials, safe checkpoint loads, local Ray on loopback only."""

import ast
import re
from pathlib import Path

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
    """A local head the jobs start has no HTTP job API at all.

    (Ray 2.60's gRPC servers listen on every interface whatever the node IP, so the
    dashboard is what a user can keep off the network; Ray's token auth guards the rest.)
    """
    starts = []
    for path in (ROOT / "ray_jobs").rglob("*.py"):
        for node, kw in _calls(ast.parse(path.read_text()), "ray.init"):
            if getattr(kw.get("address"), "value", None) == "local":
                starts.append((path.name, node.lineno, kw))
    assert starts, "no local Ray start found: the check would prove nothing"
    for name, line, kw in starts:
        assert getattr(kw.get("include_dashboard"), "value", None) is False, (name, line)
