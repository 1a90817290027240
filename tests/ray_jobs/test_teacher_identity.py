"""The compress and prune sweep ids follow a local teacher's model files, as they follow the
data's: a finished job re-run after its teacher's weights or config.json changed in place is a
new sweep, not a "restored" one that runs nothing and keeps the old rows."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ray_jobs import compress, prune
from ray_jobs.config import CONFIG_DIR, config_hash, identity_hash, load_config
from training.data import data_fingerprint
from training.finetune import teacher_identity

CONFIG = {"model_type": "bert", "vocab_size": 8, "hidden_size": 4, "num_hidden_layers": 1,
          "num_attention_heads": 1, "intermediate_size": 8, "hidden_dropout_prob": 0.1}


def write_folder(folder: Path, weight: float = 0.0, **config) -> Path:
    """A teacher folder's model files (never loaded here: the sweep id only hashes them)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG | config))
    save_file({"embeddings.word_embeddings.weight": torch.full((8, 4), weight)}, folder / "model.safetensors",
              metadata={"format": "pt"})
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\n")
    return folder


def sweep_ids(teacher: Path | str) -> list[str]:
    cfg = load_config(None, [f"teacher.name={teacher}"])
    return [compress.sweep_id(cfg), prune.sweep_id(cfg)]


def _later(path: Path) -> None:
    """This process hashes a file once per (path, size, mtime): an edit of the same size within
    one tick of a coarse file clock would read as unchanged here (a job hashes in its own
    process), so the test's edits move the clock on by a second."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_sweep_ids_follow_the_teachers_model_files(tmp_path):
    folder = write_folder(tmp_path / "teacher")
    first = sweep_ids(folder)
    (folder / "README.md").write_text("a model card edit")  # not a model file
    assert sweep_ids(folder) == first
    save_file({"embeddings.word_embeddings.weight": torch.full((8, 4), 1.0)}, folder / "model.safetensors",
              metadata={"format": "pt"})  # one weight tensor replaced in place
    _later(folder / "model.safetensors")
    weights = sweep_ids(folder)
    (folder / "config.json").write_text(json.dumps(CONFIG | {"hidden_dropout_prob": 0.2}))
    _later(folder / "config.json")
    config = sweep_ids(folder)
    assert [len({a, b, c}) for a, b, c in zip(first, weights, config, strict=True)] == [3, 3]


def test_shards_an_index_names_are_hashed_whatever_their_names(tmp_path):
    folder = write_folder(tmp_path / "teacher")
    (folder / "model.safetensors").rename(folder / "weights-1.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": "weights-1.safetensors"}}))
    first = teacher_identity(str(folder))
    save_file({"embeddings.word_embeddings.weight": torch.full((8, 4), 1.0)}, folder / "weights-1.safetensors",
              metadata={"format": "pt"})
    _later(folder / "weights-1.safetensors")
    assert teacher_identity(str(folder)) != first


def test_a_moved_teacher_is_another_sweep_as_moved_data_is(tmp_path):
    """The teacher's content part of the id leaves out its path and file times (a fresh clone
    elsewhere hashes the same), but the config names a local folder by its absolute path, as it
    names data.path: the same files in another folder are another sweep (whose fine-tuned
    teacher, logits and seq2seq model are reused: their cache keys leave the path out)."""
    folder = write_folder(tmp_path / "teacher")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, copy_function=shutil.copy)
    assert teacher_identity(str(copy)) == teacher_identity(str(folder)) != str(folder)
    assert sweep_ids(copy) != sweep_ids(folder)


def test_a_hub_teachers_sweep_id_is_what_it_was():
    cfg = load_config(None, ["teacher.name=microsoft/codebert-base"])
    for job in (compress, prune):
        before = json.dumps([config_hash(cfg, job.SECTIONS), data_fingerprint(cfg.data)])
        assert identity_hash(cfg, job.SECTIONS) == hashlib.sha256(before.encode()).hexdigest()


def test_settings_only_the_compression_job_reads_leave_the_pruning_as_it_is():
    """demo.yaml's data and teacher sections serve both jobs: a compression-only change re-ran
    the code-to-text fine-tuning and every pruning round."""
    from training.seq2seq import artifacts_key

    def ids(*overrides):
        cfg = load_config(CONFIG_DIR / "demo.yaml", list(overrides))
        return compress.sweep_id(cfg), prune.sweep_id(cfg), artifacts_key(cfg.seq2seq, cfg.data, cfg.teacher)

    base = ids()
    for compression_only in ("data.labeled_fraction=0.3", "teacher.pair_mode=joint", "seed=7"):
        changed = ids(compression_only)
        assert changed[0] != base[0] and changed[1:] == base[1:], compression_only
    for both in ("data.seed=3", "data.max_train=100"):
        assert all(a != b for a, b in zip(ids(both), base, strict=True)), both
