"""CodeXGLUE smoothed sentence BLEU-4, checked against values computed by hand.

Each case: both sides lowercased, split with [\\w]+|[^\\s\\w], NIST-normalised; p1 plain,
p2..p4 add-one smoothed; log brevity penalty min(0, 1 - (ref+1)/(hyp+1)); score
100 * exp(bp + mean(log p_n)).
"""

import math

import pytest

from training.bleu import (
    codexglue_bleu,
    constant_summary,
    corpus_bleu,
    nist_normalize,
    split_puncts,
)
from training.evaluate import codexglue_bleu as exported


def test_exact_match_plus_smoothing():
    # hyp: return the value of x (5)   ref: returns the value of x (5)
    # p1 = 4/5; p2 = (3+1)/(4+1) = 4/5; p3 = (2+1)/(3+1) = 3/4; p4 = (1+1)/(2+1) = 2/3; bp = 0
    # 100 * (0.8 * 0.8 * 0.75 * 2/3) ** 0.25 = 100 * 0.32 ** 0.25 = 75.2121
    assert codexglue_bleu(["Return the value of x"], ["Returns the value of x"]) == pytest.approx(100 * 0.32**0.25)
    assert codexglue_bleu(["Return the value of x"], ["Returns the value of x"]) == pytest.approx(75.2121, abs=1e-4)


def test_nist_splits_identifiers_and_brevity_penalty():
    # NIST pads "_" : hyp get resolver _ ui (4)   ref get the resolver _ ui (5)
    # p1 = 4/4; p2 = (2+1)/(3+1); p3 = (1+1)/(2+1); p4 = (0+1)/(1+1); bp = 1 - 6/5 = -0.2
    # 100 * exp(-0.2) * (1 * 3/4 * 2/3 * 1/2) ** 0.25 = 100 * 0.818731 * 0.707107 = 57.8930
    assert nist_normalize(split_puncts("get resolver_ui")) == ["get", "resolver", "_", "ui"]
    # NIST keeps a period or comma between digits: a number stays one token
    assert nist_normalize("version 3.5, or 1,000 items.") == ["version", "3.5", ",", "or", "1,000", "items", "."]
    expected = 100 * math.exp(-0.2) * (0.75 * 2 / 3 * 0.5) ** 0.25
    assert codexglue_bleu(["get resolver_ui"], ["get the resolver_ui"]) == pytest.approx(expected)
    assert expected == pytest.approx(57.8930, abs=1e-4)


def test_average_over_sentences_empty_and_no_overlap():
    # empty hypothesis, ref of 2 tokens: exp(1 - 3/1) = exp(-2) -> 13.5335; no overlap -> 0
    assert codexglue_bleu([""], ["a b"]) == pytest.approx(100 * math.exp(-2))
    assert codexglue_bleu(["foo"], ["bar"]) == 0.0
    mean = (100 * 0.32**0.25 + 100 * math.exp(-2)) / 2
    assert codexglue_bleu(["Return the value of x", ""], ["Returns the value of x", "a b"]) == pytest.approx(mean)


def test_single_token_hypothesis_gets_smoothed_higher_orders():
    # hyp "x" (1), ref "x y" (2): p1 = 1; p2..p4 = (0+1)/(0+1) = 1; bp = 1 - 3/2 = -0.5
    assert codexglue_bleu(["x"], ["x y"]) == pytest.approx(100 * math.exp(-0.5))


def test_case_and_punctuation_normalised():
    assert codexglue_bleu(["Gets the URL."], ["gets the url ."]) == pytest.approx(100.0)
    assert split_puncts("Foo(bar)") == "foo ( bar )"


def test_corpus_bleu_and_errors():
    assert corpus_bleu(["the cat sat on the mat"], ["The cat sat on the mat"]) == pytest.approx(100.0)
    assert corpus_bleu(["a b c d"], ["e f g h"]) == 0.0
    assert exported is codexglue_bleu
    with pytest.raises(ValueError):
        codexglue_bleu(["a"], [])
    with pytest.raises(ValueError):
        codexglue_bleu([], [])


def test_constant_summary_is_the_best_frequent_training_target():
    """Not simply the most frequent target: the frequent one that scores best on the
    training references (a generic "Return the ... of the file." beats a frequent "Do it.")."""
    targets = ["Do it."] * 2 + [f"Return the {w} of the file." for w in ("name", "size", "path", "mode", "owner")]
    assert constant_summary(targets, candidates=1) == "Do it."
    best = constant_summary(targets)
    assert best.startswith("Return the") and best.endswith("of the file.")
    refs = targets[:200]
    assert codexglue_bleu([best] * len(refs), refs) > codexglue_bleu(["Do it."] * len(refs), refs)
    with pytest.raises(ValueError):
        constant_summary([])
