"""Architectures, teachers and the search space.

`Arch` is the one description of a student (layers, hidden, heads, ffn, vocab); the cost
model (`search.cost`) and the model builder (`training.models`) both read it. `Teacher`
holds a teacher's family and dimensions, from a preset name or a transformers
`config.json`. `SearchSpace` holds the per-gene choices (the Compressor paper's Table 1,
capped at the teacher's own values) and the grid helpers the exhaustive search uses.

numpy only: this module never imports torch or transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GENES = ("layers", "hidden", "heads", "ffn", "vocab")
# Largest teacher dimension accepted: far above any BERT-family model, and low enough that a
# parameter count of teacher-sized genes cannot overflow int64 (6 * 1e6**3 < 2**63).
MAX_TEACHER_DIM = 1_000_000


class InputError(ValueError):
    """Bad input from the caller (a teacher, a budget, a space, an option): the message names it.

    A ValueError, so callers that catch ValueError keep working; `python -m search` reports
    this type (and only this type) as one line with exit status 2, so an internal bug still
    shows its traceback.
    """

# transformers' model_type values whose modules match BERT's / RoBERTa's parameter layout.
_FAMILY_OF_MODEL_TYPE = {"bert": "bert", "roberta": "roberta"}


def usable_positions(family: str, max_positions: int) -> int:
    """Tokens one sequence may hold under a position table of `max_positions` rows: all of
    them for a BERT; two fewer for a RoBERTa, which never gives a token the first two (its
    positions start at pad_token_id + 1 = 2)."""
    return max_positions - 2 if family == "roberta" else max_positions


@dataclass(frozen=True)
class Arch:
    """A BERT-family encoder's shape. Validated: all positive, `hidden % heads == 0`."""

    layers: int  # transformer blocks
    hidden: int  # model width H
    heads: int  # attention heads A (H / A = head size)
    ffn: int  # intermediate (feed-forward) width D
    vocab: int  # vocabulary size V

    def __post_init__(self):
        for name in GENES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InputError(f"Arch.{name} must be an int, got {value!r}")
            if value <= 0:
                raise InputError(f"Arch.{name} must be positive, got {value}")
            object.__setattr__(self, name, int(value))  # numpy ints -> int (hashable, JSON)
        if self.hidden % self.heads:
            raise InputError(f"Arch.heads={self.heads} must divide hidden={self.hidden}")

    def genes(self) -> tuple[int, int, int, int, int]:
        """(layers, hidden, heads, ffn, vocab)."""
        return (self.layers, self.hidden, self.heads, self.ffn, self.vocab)

    def to_hf_config(self, teacher: Teacher) -> dict:
        """Config dict of a student of `teacher`'s family: `RobertaConfig(**d)` / `BertConfig(**d)`.

        Keeps the teacher's position table and token-type vocabulary (so a RoBERTa student has
        514 positions with padding offset, like CodeBERT). `search.cost.params` counts the
        parameters of exactly this config.
        """
        common = dict(
            model_type=teacher.family,
            vocab_size=self.vocab,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            max_position_embeddings=teacher.max_positions,
            type_vocab_size=teacher.type_vocab,
            initializer_range=0.02,
        )
        if teacher.family == "roberta":
            # As microsoft/codebert-base: <s>=0 <pad>=1 </s>=2, LayerNorm eps 1e-5.
            return common | dict(
                pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5
            )
        return common | dict(pad_token_id=0, layer_norm_eps=1e-12)


@dataclass(frozen=True)
class Teacher:
    """A teacher's family ("roberta" | "bert") and dimensions."""

    name: str
    family: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int

    def __post_init__(self):
        if self.family not in ("roberta", "bert"):
            raise InputError(
                f"teacher {self.name!r}: family must be 'roberta' or 'bert', got {self.family!r}"
            )
        for name in _TEACHER_DIMS:
            _check_dim(self.name, name, getattr(self, name))

    @classmethod
    def from_hf_config(cls, config: dict, name: str = "custom") -> Teacher:
        """Teacher from a transformers config dict (the contents of a `config.json`)."""
        model_type = config.get("model_type")
        if not isinstance(model_type, str) or model_type not in _FAMILY_OF_MODEL_TYPE:
            raise InputError(
                f"teacher {name!r}: model_type {model_type!r} is not one of {sorted(_FAMILY_OF_MODEL_TYPE)}"
            )
        missing = [k for k in _TEACHER_DIMS.values() if k not in config]
        if missing:
            raise InputError(f"teacher {name!r}: config lacks {', '.join(missing)}")
        for key in _TEACHER_DIMS.values():
            _check_dim(name, f"config's {key}", config[key])
        dims = {ours: config[theirs] for ours, theirs in _TEACHER_DIMS.items()}
        return cls(name=name, family=_FAMILY_OF_MODEL_TYPE[model_type], **dims)

    @property
    def usable_positions(self) -> int:
        """Tokens one sequence of this teacher (and of its students) may hold."""
        return usable_positions(self.family, self.max_positions)

    def arch(self) -> Arch:
        """The teacher's own shape as an `Arch`."""
        return Arch(self.layers, self.hidden, self.heads, self.ffn, self.vocab)


# Teacher field -> its transformers config key.
_TEACHER_DIMS = dict(
    layers="num_hidden_layers",
    hidden="hidden_size",
    heads="num_attention_heads",
    ffn="intermediate_size",
    vocab="vocab_size",
    max_positions="max_position_embeddings",
    type_vocab="type_vocab_size",
)


def is_whole(value) -> bool:
    """A real number with no fraction (an int, or a float such as 400.0); False for NaN, inf,
    bools and non-numbers."""
    return (isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
            and float(value).is_integer())


def _check_dim(teacher: str, what: str, value) -> None:
    """InputError naming `what` unless `value` is an int in [1, MAX_TEACHER_DIM]."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"teacher {teacher!r}: {what} must be an integer, got {value!r}")
    if not 1 <= value <= MAX_TEACHER_DIM:
        raise InputError(
            f"teacher {teacher!r}: {what} must be between 1 and {MAX_TEACHER_DIM:,}, got {value}"
        )


_CODEBERT = dict(
    family="roberta",
    layers=12,
    hidden=768,
    heads=12,
    ffn=3072,
    vocab=50265,
    max_positions=514,
    type_vocab=1,
)
_MINILM = dict(
    family="bert",
    layers=6,
    hidden=384,
    heads=12,
    ffn=1536,
    vocab=30522,
    max_positions=512,
    type_vocab=2,
)
PRESETS = {
    "codebert-base": Teacher(name="codebert-base", **_CODEBERT),
    "graphcodebert-base": Teacher(name="graphcodebert-base", **_CODEBERT),
    "minilm-l6": Teacher(name="minilm-l6", **_MINILM),
}
# Hub ids of the presets: their dimensions are public, so no download is needed.
_ALIASES = {
    "microsoft/codebert-base": "codebert-base",
    "microsoft/graphcodebert-base": "graphcodebert-base",
    "sentence-transformers/all-MiniLM-L6-v2": "minilm-l6",
    "all-minilm-l6-v2": "minilm-l6",
}


def teacher_spec(name_or_path: str) -> Teacher:
    """Teacher by preset name (codebert-base, graphcodebert-base, minilm-l6), or from a
    `config.json` or a model folder holding one. InputError naming the argument otherwise."""
    key = _ALIASES.get(str(name_or_path), str(name_or_path))
    if key in PRESETS:
        return PRESETS[key]
    path = Path(name_or_path)
    try:  # is_dir/is_file raise past ENOENT: a name too long, a folder without search permission
        if path.is_dir():
            path = path / "config.json"
        is_file = path.is_file()
        if not is_file and (path.suffix == ".json" or path.parent.is_dir() and len(path.parts) > 1):
            raise InputError(f"teacher {str(name_or_path)!r}: no such file: {path}")
    except OSError as err:
        shown = str(name_or_path) if len(str(name_or_path)) <= 80 else f"{str(name_or_path)[:80]}..."
        raise InputError(f"teacher {shown!r}: {err.strerror or err}") from None
    if not is_file:
        raise InputError(
            f"unknown teacher {str(name_or_path)!r}: not a preset ({', '.join(PRESETS)}) "
            f"nor an existing config.json or model folder"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        # RecursionError: JSON nested deeper than the decoder recurses
        raise InputError(f"teacher {str(name_or_path)!r}: cannot read {path}: {err}") from None
    if not isinstance(config, dict):
        raise InputError(f"teacher {str(name_or_path)!r}: {path} is not a JSON object")
    return Teacher.from_hf_config(config, name=str(name_or_path))


def heads_fit(hidden, heads, min_head_size: int = 1) -> np.ndarray:
    """Whether `heads` divide `hidden` into heads of at least `min_head_size` (broadcast over
    gene-value arrays): the one feasibility rule the cost model and the search space share."""
    hidden, heads = np.asarray(hidden), np.asarray(heads)
    return (hidden % heads == 0) & (hidden >= heads * min_head_size)


def _steps(lo: int, hi: int, step: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1, step))


@dataclass(frozen=True)
class SearchSpace:
    """Per-gene choices, each a sorted tuple of allowed values.

    Defaults are the Compressor paper's Table 1 (12 * 48 * 4 * 96 * 50 = 11,059,200 points).
    Genomes in the GA are index vectors into these tuples; a point whose heads do not divide
    its hidden size, or whose head size (hidden / heads) is below `min_head_size`, is
    infeasible (neither happens in the paper's space with the default of 1).
    """

    layers: tuple[int, ...] = field(default=_steps(1, 12, 1))
    hidden: tuple[int, ...] = field(default=_steps(16, 768, 16))
    heads: tuple[int, ...] = field(default=(1, 2, 4, 8))
    ffn: tuple[int, ...] = field(default=_steps(32, 3072, 32))
    vocab: tuple[int, ...] = field(default=_steps(1000, 50000, 1000))
    # Heads add no parameters and no matmul FLOPs, so the fitness always prefers the most; a GPU
    # is slower on small heads (an H200 ran L6 H80 A8, head size 10, 1.5x slower at batch 1
    # than the same shape with 2 heads): a floor on the head size keeps such shapes out.
    min_head_size: int = 1

    def __post_init__(self):
        for name in GENES:
            given = tuple(getattr(self, name))
            if not all(is_whole(v) for v in given):  # int() truncated 1.9 to 1 silently
                raise InputError(f"SearchSpace.{name} must hold whole numbers: {given}")
            values = tuple(int(v) for v in given)
            if not values or any(v <= 0 for v in values) or list(values) != sorted(set(values)):
                raise InputError(
                    f"SearchSpace.{name} must be non-empty, positive, strictly increasing: {values}"
                )
            object.__setattr__(self, name, values)
        if not 1 <= self.min_head_size <= self.hidden[-1]:
            raise InputError(
                f"min_head_size must be between 1 and the largest hidden size ({self.hidden[-1]}), "
                f"got {self.min_head_size}"
            )

    @classmethod
    def from_teacher(cls, teacher: Teacher | dict, min_head_size: int = 1,
                     max_layers: int | None = None) -> SearchSpace:
        """The paper's space with every maximum capped at the teacher's own value, and the
        layers also at `max_layers` (None: no further cap; InputError when below 1). A gene
        whose every choice is above the teacher's (a toy teacher of hidden 8, vocab 500) keeps
        the paper's least choice: students are then larger than that teacher on it.

        Why cap layers: the fitness counts FLOPs, but on a CPU a small student's time per
        token grows with its layer count beyond its FLOPs (each layer's norms, softmax and
        dropout are memory-bound, slower than their few FLOPs): a one-layer 3 MB student took
        a training step 2.2x cheaper than the five-layer one the GA prefers, at 84% of its
        FLOPs (README)."""
        if isinstance(teacher, dict):
            teacher = Teacher.from_hf_config(teacher)
        if max_layers is not None and max_layers < 1:
            raise InputError(f"max_layers must be >= 1, got {max_layers}")
        caps = {name: getattr(teacher, name) for name in GENES}
        if max_layers is not None:
            caps["layers"] = min(caps["layers"], max_layers)
        paper = cls()
        capped = {}
        for name in GENES:
            values = tuple(v for v in getattr(paper, name) if v <= caps[name])
            capped[name] = values or (min(getattr(paper, name)),)
        return cls(**capped, min_head_size=min_head_size)

    def choices(self) -> tuple[np.ndarray, ...]:
        """The five choice arrays, int64, in gene order."""
        return tuple(np.asarray(getattr(self, name), dtype=np.int64) for name in GENES)

    def shape(self) -> tuple[int, ...]:
        """Number of choices per gene."""
        return tuple(len(getattr(self, name)) for name in GENES)

    def smallest(self) -> Arch:
        """The smallest feasible model: every gene at its least choice, hidden at the least
        one that some heads choice fits, with the fewest such heads (parameters grow with
        every gene but heads, which add none). InputError when no point is feasible."""
        fits = ((h, a) for h in self.hidden for a in self.heads if self.feasible(h, a))
        hidden, heads = next(fits, (None, None))
        if hidden is None:
            raise InputError(
                f"no (hidden, heads) of the space is feasible: heads {self.heads} must divide "
                f"hidden {self.hidden} into heads of at least {self.min_head_size}"
            )
        return Arch(self.layers[0], hidden, heads, self.ffn[0], self.vocab[0])

    def size(self) -> int:
        """Number of points in the grid (feasible or not)."""
        return int(np.prod(self.shape()))

    def grid(self) -> tuple[np.ndarray, ...]:
        """Open mesh: gene i's values shaped to broadcast along axis i of `shape()`."""
        return np.ix_(*self.choices())

    def feasible(self, hidden, heads) -> np.ndarray:
        """`heads_fit` with this space's `min_head_size`."""
        return heads_fit(hidden, heads, self.min_head_size)

    def head_violation(self, hidden, heads) -> np.ndarray:
        """How far (hidden, heads) are from `feasible` (broadcast; 0 exactly when feasible):
        the head size's relative shortfall below `min_head_size`, plus 1 when heads do not
        divide hidden. The GA ranks infeasible genomes by it (`search.ga.ConstrainedFitness`)."""
        hidden, heads = np.asarray(hidden, dtype=np.float64), np.asarray(heads, dtype=np.float64)
        shortfall = np.maximum(0.0, 1.0 - hidden / (heads * self.min_head_size))
        return shortfall + (np.fmod(hidden, heads) != 0)

    def feasible_mask(self) -> np.ndarray:
        """Broadcastable mask (1, H, A, 1, 1) of `feasible` over the grid."""
        _, hidden, heads, _, _ = self.grid()
        return self.feasible(hidden, heads)

    def decode(self, index) -> Arch:
        """Arch of an index genome (5 indices into the choice tuples)."""
        return Arch(*(getattr(self, name)[int(i)] for name, i in zip(GENES, index, strict=True)))

    def values(self, indices: np.ndarray) -> np.ndarray:
        """Gene values of index genomes: (..., 5) indices -> (..., 5) values."""
        indices = np.asarray(indices)
        return np.stack([c[indices[..., g]] for g, c in enumerate(self.choices())], axis=-1)

    def unravel(self, flat: np.ndarray) -> np.ndarray:
        """Flat grid positions (N,) -> index genomes (N, 5)."""
        return np.stack(np.unravel_index(np.asarray(flat), self.shape()), axis=-1)

    def index_of(self, arch: Arch) -> tuple[int, ...]:
        """Index genome of an Arch inside this space; InputError when outside it."""
        try:
            return tuple(
                getattr(self, name).index(v) for name, v in zip(GENES, arch.genes(), strict=True)
            )
        except ValueError:  # tuple.index: a gene value not among the choices
            raise InputError(f"{arch} is outside the search space") from None

    def contains(self, arch: Arch) -> bool:
        """Whether every gene of `arch` is one of this space's choices."""
        return all(v in getattr(self, name) for name, v in zip(GENES, arch.genes(), strict=True))
