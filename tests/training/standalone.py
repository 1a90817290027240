"""Loads a saved pair classifier as a user without this repository would: stock transformers in a
fresh interpreter (tests only)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

# hidden in the subprocess: the editable install would map them to the checkout
OURS = ("training", "search", "ray_jobs")

# argv: folder, max_len, {"a": [...], "b": [...]}; stdout: {"logits": [[...]], "module": str}
_SCRIPT = r"""
import importlib.abc, json, sys

class Hidden(importlib.abc.MetaPathFinder):  # as if the package were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OURS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Hidden())
for name in OURS:
    try:
        __import__(name)
    except ModuleNotFoundError:
        continue
    sys.exit(f"{name} is importable")

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

folder, max_len, texts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
# the flag here too: AutoTokenizer reads config.json, whose auto_map would otherwise prompt
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
a, b = (tok(texts[k], truncation=True, max_length=max_len, padding=True, return_tensors="pt")
        for k in ("a", "b"))
with torch.no_grad():
    logits = model(input_ids=a["input_ids"], attention_mask=a["attention_mask"],
                   input_ids_b=b["input_ids"], attention_mask_b=b["attention_mask"]).logits
assert not any(name in sys.modules for name in OURS)
print(json.dumps({"logits": logits.tolist(), "module": type(model).__module__}))
"""


def pair_batch(tokenizer, a: list[str], b: list[str], max_len: int) -> dict:
    """forward() kwargs for text pairs encoded separately, padded: ids/masks (B, S) per side."""
    enc_a, enc_b = (tokenizer(t, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
                    for t in (a, b))
    return {"input_ids": enc_a["input_ids"], "attention_mask": enc_a["attention_mask"],
            "input_ids_b": enc_b["input_ids"], "attention_mask_b": enc_b["attention_mask"]}


def standalone_logits(folder, a: list[str], b: list[str], cwd, max_len: int = 32) -> torch.Tensor:
    """Logits (B, C) of the pairs (a[i], b[i]) from `folder` (model + tokenizer), both loaded
    with `from_pretrained(folder, trust_remote_code=True)` in a subprocess run in `cwd`, with no
    PYTHONPATH and training/search/ray_jobs unimportable; encoded as `pair_batch` does.
    AssertionError (with the subprocess's stderr) when loading fails or the model's code is not
    the folder's own copy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(Path(cwd) / "hf_modules"),
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = f"OURS = {OURS!r}\n{_SCRIPT}"
    args = [str(Path(folder).resolve()), str(max_len), json.dumps({"a": a, "b": b})]
    done = subprocess.run([sys.executable, "-I", "-c", script, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["module"].startswith("transformers_modules."), out["module"]
    return torch.tensor(out["logits"])
