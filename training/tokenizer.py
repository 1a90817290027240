"""Student vocabularies: byte-level BPE of an exact size, RoBERTa-style.

``train_tokenizer(texts, V)`` returns a transformers fast tokenizer with exactly ``V``
tokens: the specials ``<s> <pad> </s> <unk> <mask>`` (ids 0-4, so ``pad_token_id`` is 1
as in RoBERTa), the 256 byte symbols, then merges. Pairs encode ``<s> a </s></s> b </s>``.

``words=True`` (what students use by default) first rewrites identifiers into words:
``snake_case`` and ``camelCase`` are split at ``_`` and lower-to-upper boundaries and
everything is lower-cased, and each word gets the byte-level space marker. So
``self._sectionName`` in code and "section name" in a docstring share the tokens
``Ġsection Ġname``; with plain byte-level BPE they would be ``se ction N ame`` against
``Ġse ction Ġname``. Decoding then gives the normalised (lower-cased, split) text.

When the corpus has fewer distinct merges than ``V`` needs, BPE stops early; the vocabulary
is then padded with ``<unused0>``, ``<unused1>``, ... entries (plain vocabulary entries with
no merge producing them, like BERT's ``[unusedN]``): the text never encodes to them, but the
size, and so the student's embedding matrix, is exactly the ``V`` the search chose.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import tokenizers
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from training.staging import publish, remove_stale, staging_path

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BYTE_ALPHABET = 256
MIN_VOCAB = len(SPECIAL_TOKENS) + BYTE_ALPHABET  # 261: specials + byte symbols, no merges
# above any code model's vocabulary (CodeBERT 50,265; XLM-R 250,002): the tokenizer is padded
# to its size, and 1e30 failed in the tokenizers library after the teacher's fine-tuning
MAX_VOCAB = 1_000_000
_RECIPE = "bytebpe-v1"  # bump when the training recipe changes: it keys the cache


def _identifier_words() -> normalizers.Normalizer:
    """snake_case / camelCase identifiers -> lower-case words ("getSection_name" -> "get section name")."""
    return normalizers.Sequence([
        normalizers.Replace("_", " "),
        normalizers.Replace(Regex(r"(?<=[a-z0-9])(?=[A-Z])"), " "),  # zero-width: inserts a space
        normalizers.Lowercase(),
    ])


def _bpe(texts: list[str], vocab_size: int, words: bool = False) -> Tokenizer:
    """A trained byte-level BPE tokenizer (at most ``vocab_size`` tokens)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    if words:
        tok.normalizer = _identifier_words()
    # add_prefix_space: the first word of a text gets the same Ġ-token as elsewhere
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=words)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,  # every pair may merge: the largest reachable vocabulary
        special_tokens=[AddedToken(t, special=True, lstrip=t == "<mask>") for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def _pad_vocab(tok: Tokenizer, vocab_size: int) -> Tokenizer:
    """Append ``<unusedN>`` vocabulary entries until the vocabulary has ``vocab_size`` tokens."""
    missing = vocab_size - tok.get_vocab_size()
    if missing <= 0:
        return tok
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for i in range(missing):
        vocab[f"<unused{i}>"] = next_id + i
    return Tokenizer.from_str(json.dumps(spec))


def _roberta_post_processor(tok: Tokenizer) -> None:
    # (sep, cls) are positional: the bindings reject them as keywords.
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def _check_size(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB:
        raise ValueError(
            f"vocab_size {vocab_size} is too small: a byte-level BPE needs at least {MIN_VOCAB} "
            f"tokens ({len(SPECIAL_TOKENS)} special tokens + {BYTE_ALPHABET} byte symbols)"
        )
    if vocab_size > MAX_VOCAB:
        raise ValueError(f"vocab_size {vocab_size:,} is above {MAX_VOCAB:,}")


def texts_hash(texts: list[str]) -> str:
    """Stable hash of a corpus (order matters: BPE tie-breaking may depend on it)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _build(texts: list[str], vocab_size: int, words: bool = False) -> PreTrainedTokenizerFast:
    tok = _pad_vocab(_bpe(texts, vocab_size, words), vocab_size)
    _roberta_post_processor(tok)
    fast = _wrap(tok)
    if len(fast) != vocab_size:  # a broken invariant, not bad input
        raise RuntimeError(f"trained tokenizer has {len(fast)} tokens, wanted {vocab_size}")
    return fast


def _save_atomic(fast: PreTrainedTokenizerFast, final: Path) -> None:
    """Save into a staging folder beside ``final`` and rename it; a concurrent writer may win.
    A failed save leaves no staging folder; a killed one's is removed by the next save here."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final.parent, "bpe-*")
    tmp = staging_path(final)
    try:
        fast.save_pretrained(tmp)
        publish(tmp, final, marker="tokenizer.json")  # another trial that saved the same tokenizer first keeps its own
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; else the loser's or a failed save's


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, cache_dir: str | os.PathLike | None = None,
    words: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with exactly ``vocab_size`` tokens.

    ``words``: split identifiers into lower-case words before BPE (module docstring).

    ``texts`` is the training corpus. With ``cache_dir`` the tokenizer is saved under
    ``cache_dir/bpe-<corpus hash>-<vocab_size>`` and loaded from there next time, so
    students of one sweep that share a corpus and a size train it once. Raises ValueError
    when ``vocab_size`` < 261 (specials + byte alphabet) or the corpus is empty.
    """
    _check_size(vocab_size)
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("cannot train a tokenizer on an empty corpus")
    if cache_dir is None:
        return _build(texts, vocab_size, words)
    recipe = f"{_RECIPE}-words" if words else _RECIPE
    key = f"{recipe}-{tokenizers.__version__}-{texts_hash(texts)}"
    final = Path(cache_dir) / f"bpe-{hashlib.sha256(key.encode()).hexdigest()[:16]}-{vocab_size}"
    if not (final / "tokenizer.json").is_file():
        _save_atomic(_build(texts, vocab_size, words), final)
    return AutoTokenizer.from_pretrained(final)
