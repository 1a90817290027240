"""Job configuration: nested frozen dataclasses loaded from YAML plus `a.b=value` overrides.

The loader is generic: it walks the dataclass type hints, so every default lives in exactly
one place (the dataclass) and the same code validates the sections owned by training/.
Unknown keys and wrong types raise ConfigError naming the dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ray_jobs.errors import ConfigError, absolute_path
from ray_jobs.results import DEFAULT_RESULTS_DIR
from ray_jobs.yaml_text import brief, flow_yaml, load_yaml, parse_override, yaml_problem
from search import not_a_regular_file
from search.ga import VARIANTS, check_ga_size, check_target_mb
from training.checks import check_choices, check_ranges
from training.data import DataConfig, data_fingerprint, default_data_path, extra_fingerprint
from training.distill import DistillConfig
from training.finetune import FinetuneConfig, teacher_identity
from training.models import TeacherConfig
from training.prune import PruneConfig
from training.quantize import QuantizeConfig
from training.seq2seq import Seq2SeqConfig

CONFIG_DIR = Path(__file__).parent / "configs"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


RAY_MAX_RESOURCE = 1e14  # ray.init refuses a larger quantity of any resource


def check_object_store(mb: int) -> None:
    """ValueError below Ray's floor for a local object store (OBJECT_STORE_MINIMUM_MEMORY_BYTES)."""
    if mb < 75:
        raise ValueError(f"object_store_mb: Ray needs at least 75, got {mb}")


@dataclass(frozen=True)
class ResourcesConfig:
    cpus_per_trial: float = 1.0  # Ray CPU request per trial; torch threads = max(1, floor(cpus))
    gpus_per_trial: float = 0.0  # fractions allowed (0.5 packs two trials on a GPU)
    max_concurrent_trials: int | None = None  # None -> as many as the cluster fits
    prepare_cpus: float | None = None  # teacher/seq2seq preparation task; None -> cpus_per_trial
    num_cpus: int | None = None  # only for a local cluster started by the job; None -> all cores
    num_gpus: int | None = None  # local cluster only; declares (possibly fake) GPUs
    object_store_mb: int = 512  # local cluster only: object store size (MiB)
    # refuse requests no node fits; False on autoscaling clusters (a local cluster the job
    # starts itself is checked anyway: nothing adds nodes to it)
    precheck: bool = True

    def __post_init__(self) -> None:
        check_ranges(self, positive=("cpus_per_trial", "prepare_cpus"), non_negative=("gpus_per_trial", "num_gpus"),
                     counts=("max_concurrent_trials", "num_cpus"))
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():  # Ray's own rule
            raise ValueError(f"gpus_per_trial: {self.gpus_per_trial}: above 1 it must be a whole number")
        for name in ("num_cpus", "num_gpus", "cpus_per_trial", "gpus_per_trial", "prepare_cpus"):
            value = getattr(self, name)
            if value is not None and value > RAY_MAX_RESOURCE:  # Ray's ValueError came as a traceback
                raise ValueError(f"{name}: Ray takes at most {RAY_MAX_RESOURCE:.0e} of a resource, got {value:g}")
        check_object_store(self.object_store_mb)


@dataclass(frozen=True)
class FailureConfig:
    max_failures: int = 1  # retries of a trial whose worker or code fails (Tune FailureConfig)

    def __post_init__(self) -> None:  # Tune reads a negative count as "retry forever"
        check_ranges(self, non_negative=("max_failures",))


@dataclass(frozen=True)
class SearchConfig:
    target_mb: float = 3.0  # size budget T (MB = 1e6 bytes) of the GA fitness GFLOPs - |size - T|
    max_mb: float | None = None  # hard cap on candidate size; None -> no cap
    top_k: int = 3  # best distinct candidates trained as students
    # true: the top-k differ in (layers, hidden, ffn, vocab), not only in heads (heads move only
    # the softmax FLOPs, so the GA's runners-up are often the best shape with 4/2/1 heads)
    distinct_shapes: bool = False
    variant: str = "default"  # GA variant of search.ga.run_ga
    population: int = 50  # paper: 50
    generations: int = 100  # paper: 100
    crossover_rate: float = 0.6  # paper: 0.6
    children: int = 50
    seq_len: int | None = None  # FLOPs sequence length; None -> distill.max_seq_len
    seed: int | None = None  # None -> the job's seed
    # least hidden / heads a candidate may have; 1 = the paper's space. For GPU students: the
    # fitness always prefers 8 heads, and an H200 ran head size 10 1.5x slower than 40 at batch 1
    min_head_size: int = 1
    # most layers a candidate may have; None -> the teacher's. The fitness counts FLOPs, but a
    # small student's CPU step time grows with its layers beyond them (README: "Shallow students")
    max_layers: int | None = None
    # a latency model fitted on the machine the students will run on (`python -m ray_jobs bench
    # latency-model`, a JSON file): every candidate's predicted ms is recorded (predicted_ms) ...
    latency_model: str | None = None
    # ... and with max_ms, candidates predicted slower are infeasible (a budget in the users' terms)
    max_ms: float | None = None

    def __post_init__(self) -> None:  # refused when the config is read, not inside the GA
        check_choices(self, variant=VARIANTS)
        check_ranges(self, positive=("target_mb", "max_mb", "max_ms"), counts=("children", "seq_len", "max_layers"),
                     non_negative=("top_k", "generations"), fractions=("crossover_rate",), seeds=("seed",),
                     paths=("latency_model",))
        if self.population < 2:
            raise ValueError(f"population: must be >= 2, got {self.population}")
        check_ga_size(population=self.population, children=self.children, generations=self.generations)
        check_target_mb(self.target_mb)
        if self.max_ms is not None and self.latency_model is None:
            raise ValueError("max_ms: needs search.latency_model (`python -m ray_jobs bench latency-model` fits one)")


@dataclass(frozen=True)
class BaselinesConfig:
    bilstm_paper: bool = True  # BiLSTM_soft at the paper's width (Tang et al.)
    bilstm_budget: bool = True  # BiLSTM_soft resized to search.target_mb


@dataclass(frozen=True)
class JobConfig:
    results_dir: str = DEFAULT_RESULTS_DIR  # tables, students, Ray experiments; made absolute on load
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    failure: FailureConfig = field(default_factory=FailureConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    seq2seq: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)

    def __post_init__(self) -> None:  # sections check their own fields; these are the job's
        check_ranges(self, paths=("results_dir",), seeds=("seed",))


# ---------------------------------------------------------------- generic loader


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp` and return it in the dataclass's form."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{key}: must not be null")
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _convert(value, opt, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {brief(value)}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            items = [_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    return _scalar(value, tp, key)


def _scalar(value: Any, tp: Any, key: str) -> Any:
    if value is None:
        raise ConfigError(f"{key}: must not be null")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer of 309+ digits
                raise ConfigError(f"{key}: expected a float, got an integer of {len(str(value))} digits, "
                                  "too large for one") from None
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {brief(value)}")


def _dotted_hint(name: Any, names: set[str]) -> str:
    """A hint for `search.target_mb: 4` written as one key in a file: dotted keys are the
    command line's override syntax; a YAML file nests them."""
    head, dot, rest = str(name).partition(".")
    if not dot or head not in names:
        return ""
    return f"; dotted keys are for key=value overrides, in a file nest it: {head}: then {rest}: indented below"


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    """Instantiate dataclass `cls` from a mapping, refusing unknown keys."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(names))})"
                              f"{_dotted_hint(name, names)}")
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a section's own __post_init__ validation
        field_name, sep, _ = str(exc).partition(": ")
        if sep and prefix and field_name in names:  # "precision: ..." -> "distill.precision: ..."
            raise ConfigError(f"{prefix}.{exc}") from None
        if sep and not prefix and field_name.partition(".")[0] in names:  # the top level's own keys
            raise ConfigError(str(exc)) from None
        raise ConfigError(f"{where}: {exc}") from None


def _section_of(cls: type, dotted: str) -> type | None:
    """The dataclass that the dotted key names inside `cls` (a section), else None."""
    tp: Any = cls
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        tp = typing.get_type_hints(tp).get(part)
    return tp if dataclasses.is_dataclass(tp) else None


def _refuse_section_override(section: type, key: str, value: Any) -> None:
    """ConfigError for `distill={...}` / `distill=null`: it would replace the YAML file's whole
    section with defaults plus the given keys, silently dropping the file's other settings."""
    if isinstance(value, dict) and value:
        name, item = next(iter(value.items()))
        example = f"{key}.{name}={flow_yaml(item)}"
    else:
        example = f"{key}.{dataclasses.fields(section)[0].name}=..."
    raise ConfigError(f"{key}: a whole section cannot be set on the command line (it would reset the "
                      f"config file's other {key} settings to their defaults); set its keys one by one, "
                      f"e.g. {example}")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: is not a section")
        # a copy of this mapping alone: two sections that are one YAML alias (`distill:
        # *common`) share it, and an override of one must not write the other
        child = node[part] = dict(child)
        node = child
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict:
    """The YAML mapping in `path`; ConfigError naming the file when unreadable."""
    path = Path(path)
    if not_a_regular_file(path):  # a FIFO's read blocks for ever; a folder's fails obscurely
        raise ConfigError(f"{path}: not a regular file")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))  # not the locale's encoding
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:  # read whole: its byte offset gives the line
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: cannot read config: {yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def build_config(cls: type, data: dict | None = None, overrides: list[str] = ()) -> Any:
    """Generic: dataclass `cls` from mapping `data` with dotted `overrides` applied.

    An override of a whole section (`distill={epochs: 2}`, `data=null`) is refused: set its
    keys one by one (`distill.epochs=2`), so that the file's other keys of it stay.
    """
    tree = copy.deepcopy(data or {})  # YAML dates and other non-JSON scalars reach _convert, which names them
    for text in overrides:
        key, value = parse_override(text)
        section = _section_of(cls, key)
        if section is not None:
            _refuse_section_override(section, key, value)
        _set_dotted(tree, key, value)
    return _build(cls, tree)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> JobConfig:
    """JobConfig from YAML `path` (None -> all defaults) and `a.b=value` overrides.

    results_dir, data.path, search.latency_model, distill.transfer_extra, seq2seq.train_extra and a
    teacher.name that is a local folder are made absolute against the current directory: trial workers run in their own trial
    folders, so every path they see must be absolute.
    """
    data = read_yaml(path) if path is not None else {}
    cfg = build_config(JobConfig, data, list(overrides))
    cfg = dataclasses.replace(
        cfg,
        results_dir=absolute_path(cfg.results_dir, "results_dir"),
        data=dataclasses.replace(cfg.data, path=cfg.data.path and absolute_path(cfg.data.path, "data.path")),
        teacher=dataclasses.replace(cfg.teacher, name=_local_or_name(cfg.teacher.name)),
        search=dataclasses.replace(cfg.search, latency_model=cfg.search.latency_model
                                   and absolute_path(cfg.search.latency_model, "search.latency_model")),
        distill=dataclasses.replace(cfg.distill, transfer_extra=tuple(
            absolute_path(p, "distill.transfer_extra") for p in cfg.distill.transfer_extra)),
        seq2seq=dataclasses.replace(cfg.seq2seq, train_extra=tuple(
            absolute_path(p, "seq2seq.train_extra") for p in cfg.seq2seq.train_extra)),
    )
    for key, paths in (("distill.transfer_extra", cfg.distill.transfer_extra),
                       ("seq2seq.train_extra", cfg.seq2seq.train_extra)):
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        if repeated:  # written two ways (x and ./x) they pass the config's own check
            raise ConfigError(f"{key}: {', '.join(repeated)} named more than once (its pairs would count twice)")
        data = Path(cfg.data.path or default_data_path()).resolve()
        own = next((p for p in paths if Path(p).resolve() == data), None)
        if own is not None:
            raise ConfigError(f"{key}: {own} is the job's own data (data.path); its train pairs would count twice")
    return cfg


def _local_or_name(name: str) -> str:
    """A teacher folder made absolute; a preset or hub id unchanged."""
    folder = absolute_path(name, "teacher.name")
    return folder if Path(folder).is_dir() else name


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or the name of a shipped config (`smoke`, `demo.yaml`)."""
    path = Path(name)
    # a folder of that name (results/ holds smoke/ and demo/ after the jobs) is not a config
    if path.is_file() or path.parent != Path("."):
        return path
    shipped = CONFIG_DIR / (name if str(name).endswith(".yaml") else f"{name}.yaml")
    return shipped if shipped.exists() else path


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg: JobConfig, sections: tuple[str, ...] | None = None,
                hashed_as: dict[str, Any] | None = None) -> str:
    """Stable sha256 (hex) of the config's content, without results_dir (where, not what).

    `sections` limits the hash to the sections a job reads, so that the compression job's
    identity does not change when only the pruning section does. `hashed_as`: dotted keys
    ("section.key") hashed as the given value instead of their own.
    """
    tree = to_dict(cfg)
    tree.pop("results_dir")
    for dotted, value in (hashed_as or {}).items():
        section, key = dotted.split(".")
        if key not in tree[section]:  # a misspelt key would hash the setting after all
            raise KeyError(f"config_hash: no setting {dotted}")
        tree[section][key] = value
    if sections is not None:
        tree = {k: tree[k] for k in sections}
    blob = json.dumps(tree, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def identity_hash(cfg: JobConfig, sections: tuple[str, ...], extra_data: tuple[str, ...] = (),
                  extra_cap: int | None = None, recipe: int | None = None,
                  hashed_as: dict[str, Any] | None = None) -> str:
    """`config_hash` of `sections` plus the contents of the data the job reads (data.path and
    `extra_data` folders) and of a teacher held in a local folder (`teacher_identity`; the
    embedded MiniLM too): a job run again after its data or its teacher's weights, config or
    tokenizer changed in place is a new sweep, not a resume of the finished one (the config
    alone names them by path); so is the search's latency model file (search.latency_model).
    A hub-id teacher is named by the config: its hash is unchanged; a preset of one
    (`codebert-base`) joins as its hub id, so a config naming the preset got new ids once
    (after 03918d0). `recipe`, a job's version
    of what its trials compute (bumped when the same config computes something else), joins
    the hash where it is given, so results of an earlier recipe are not resumed or restored.
    `hashed_as`: as `config_hash`'s."""
    inputs = [config_hash(cfg, sections, hashed_as), data_fingerprint(cfg.data)]
    if recipe is not None:
        inputs.append({"recipe": recipe})
    if extra_data:
        inputs.append(extra_fingerprint(extra_data, extra_cap))
    if "search" in sections and cfg.search.latency_model:  # its coefficients decide the candidates
        inputs.append({"latency_model": _file_digest(cfg.search.latency_model)})
    if "teacher" in sections and (teacher := teacher_identity(cfg.teacher.name)) != cfg.teacher.name:
        inputs.append({"teacher": teacher})  # a hub id's identity stays what it was
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()


def _file_digest(path: str) -> str | None:
    """sha256 of a file's bytes; None when it cannot be read (the job refuses it later, by name)."""
    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    except OSError:
        return None


def _git_version() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_PACKAGE_ROOT), "describe", "--always", "--dirty", "--tags"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _source_hash() -> str:
    digest = hashlib.sha256()
    for package in ("search", "training", "ray_jobs"):
        for file in sorted((_PACKAGE_ROOT / package).rglob("*.py")):
            digest.update(str(file.relative_to(_PACKAGE_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def code_version() -> str:
    """`git describe` of the source tree (plus a hash of the source files when the tree has
    uncommitted changes: two dirty trees would share one stamp), else the package version +
    that hash."""
    git = _git_version()
    if git:
        return f"{git}+src.{_source_hash()}" if git.endswith("-dirty") else git
    try:
        from importlib.metadata import version

        pkg = version("code-compressor")
    except Exception:  # not installed: a source tree (e.g. a `ray job` working dir)
        pkg = "0+unknown"
    return f"{pkg}+src.{_source_hash()}"
