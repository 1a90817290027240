"""CodeXGLUE-compatible BLEU-4 (code-to-text) and sacrebleu's corpus BLEU.

`codexglue_bleu` reproduces CodeXGLUE's `evaluator/bleu.py` (`computeMaps` + `bleuFromMaps`):
per sentence, both sides are lowercased and split with `[\\w]+|[^\\s\\w]`, then normalised
as NIST mteval-v11a does and whitespace-split; BLEU-4 with add-one smoothing on the 2- to
4-gram precisions only, brevity penalty `min(0, 1 - (ref_len + 1) / (hyp_len + 1))` in log
space; the sentence scores are averaged and scaled to 0-100. sacrebleu does the n-gram
counting and the arithmetic (`BLEU.compute_bleu`).
"""

from __future__ import annotations

import math
import re
import xml.sax.saxutils
from collections import Counter
from collections.abc import Sequence

from sacrebleu.metrics import BLEU

from training.data import sample_in_order

# NIST mteval-v11a, language-independent part (CodeXGLUE `normalize1`).
_NORMALIZE1 = [
    (re.compile("<skipped>"), ""),  # strip "skipped" tags
    (re.compile(r"-\n"), ""),  # strip end-of-line hyphenation and join lines
    (re.compile(r"\n"), " "),  # join lines
]
# NIST mteval-v11a, language-dependent part (CodeXGLUE `normalize2`).
_NORMALIZE2 = [
    # pad every char of {-~ [-` space-& (-+ :-@ / with spaces: `_` and `#` split identifiers
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma split unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # ... unless before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # a dash after a digit is split
]
_SPLIT = re.compile(r"[\w]+|[^\s\w]")

# Raw n-gram statistics only: the normalised strings are already tokens.
_COUNTER = BLEU(tokenize="none", smooth_method="none", effective_order=True)


def split_puncts(line: str) -> str:
    """CodeXGLUE `splitPuncts` after `strip().lower()`: words and single punctuation marks."""
    return " ".join(_SPLIT.findall(line.strip().lower()))


def nist_normalize(text: str) -> list[str]:
    """CodeXGLUE's `normalize` (NIST mteval-v11a, lowercased): the token list of one side."""
    for pattern, replace in _NORMALIZE1:
        text = pattern.sub(replace, text)
    text = xml.sax.saxutils.unescape(text, {"&quot;": '"'})
    text = f" {text} ".lower()
    for pattern, replace in _NORMALIZE2:
        text = pattern.sub(replace, text)
    return text.split()


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Smoothed BLEU-4 of one sentence in [0, 1], exactly CodeXGLUE's `bleu([ref], hyp)[0]`."""
    hyp = nist_normalize(split_puncts(hypothesis))
    ref = nist_normalize(split_puncts(reference))
    if not hyp:
        # CodeXGLUE: every precision term is log(0+tiny)-log(0+tiny) = 0 (n=1) or
        # log(1)-log(1) (n>1, smoothed), so the score is exp(brevity penalty).
        return math.exp(min(0.0, 1.0 - (len(ref) + 1) / 1.0))
    stats = _COUNTER.sentence_score(" ".join(hyp), [" ".join(ref)])
    # +1 on both lengths: CodeXGLUE's brevity penalty; add-k=1 applies to n > 1 only.
    # compute_bleu mutates the count lists (add-k): pass copies.
    score = BLEU.compute_bleu(
        list(stats.counts),
        list(stats.totals),
        stats.sys_len + 1,
        stats.ref_len + 1,
        smooth_method="add-k",
        smooth_value=1,
    )
    return score.score / 100.0


def codexglue_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """CodeXGLUE code-to-text BLEU-4 (0-100): mean smoothed sentence BLEU x 100.

    One reference per hypothesis; CodeXGLUE rounds the printed figure to 2 decimals,
    this returns it unrounded. Empty input -> ValueError.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("codexglue_bleu needs at least one hypothesis")
    total = sum(sentence_bleu(h, r) for h, r in zip(hypotheses, references, strict=True))
    return 100.0 * total / len(hypotheses)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's standard corpus BLEU (13a tokenizer, lowercased, its default exp smoothing:
    an n-gram order without a match counts as 1/2, 1/4, ... of a match instead of zeroing the
    score), 0-100."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return BLEU(lowercase=True).corpus_score(list(hypotheses), [list(references)]).score


def constant_summary(train_targets: Sequence[str], candidates: int = 50, sample: int = 200) -> str:
    """The sentence a model that ignores its input would best write: of the `candidates`
    most frequent training targets, the one with the highest codexglue_bleu against a seeded
    sample of `sample` training targets across the split (the first 200 of a split sorted by
    file came from 8 files). Chosen on training data only, so its BLEU on test is a fair
    floor: a code-to-text model that does not beat it is not using the code."""
    if not train_targets:
        raise ValueError("constant_summary needs training targets")
    counts = Counter(train_targets)
    # frequency ties (common: most targets occur once or twice) broken by text, not data order
    pool = sorted(counts, key=lambda t: (-counts[t], t))[:candidates]
    refs = sample_in_order(train_targets, sample, seed=0)
    return max(pool, key=lambda c: codexglue_bleu([c] * len(refs), refs))  # ties: the more frequent
