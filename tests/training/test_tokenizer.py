"""Student tokenizers: exact size, RoBERTa pair layout, round trips, cache."""

from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from training import tokenizer as tk
from training.data import load_code_to_text
from training.tokenizer import MIN_VOCAB, SPECIAL_TOKENS, train_tokenizer

CODE = 'def add(a, b):\n    """Añadir: return a + b."""\n\treturn a + b  # ünïcode ✓\n'


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    pairs = load_code_to_text(None)["train"][:400]
    return [p.source for p in pairs] + [p.target for p in pairs]


@pytest.mark.parametrize("size", [MIN_VOCAB, 300, 1000, 3000])
def test_vocabulary_size_is_exact(corpus, size):
    tok = train_tokenizer(corpus, size)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == size == len(tok.get_vocab())
    assert max(tok.get_vocab().values()) == size - 1


def test_special_tokens_and_pair_layout(corpus):
    tok = train_tokenizer(corpus, 500)
    assert tok.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.mask_token_id) == (0, 1, 2, 4)
    a, b = tok("return x")["input_ids"], tok("Return x .")["input_ids"]
    pair = tok("return x", "Return x .")["input_ids"]
    assert a[0] == 0 and a[-1] == 2
    assert pair == a + [2] + b[1:]  # <s> a </s></s> b </s>


def test_code_round_trips_byte_exactly(corpus):
    tok = train_tokenizer(corpus, 800)
    ids = tok(CODE)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == CODE


def test_small_corpus_is_padded_with_unreachable_tokens():
    tok = train_tokenizer(["ab ab abc"], 400)
    assert len(tok) == 400
    assert tok.convert_ids_to_tokens(399) == "<unused135>"
    ids = tok("ab abc <unused0>")["input_ids"]
    assert max(ids) < 265  # text never encodes to a padding entry
    assert tok.decode(ids, skip_special_tokens=True) == "ab abc <unused0>"


def test_save_and_autotokenizer_round_trip(corpus, tmp_path):
    tok = train_tokenizer(corpus, 700)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == 700
    assert (
        loaded(CODE, "Add two numbers .")["input_ids"]
        == tok(CODE, "Add two numbers .")["input_ids"]
    )
    assert loaded.pad_token == "<pad>" and loaded.mask_token == "<mask>"


def test_training_is_deterministic(corpus):
    first, second = train_tokenizer(corpus, 900), train_tokenizer(corpus, 900)
    assert first.get_vocab() == second.get_vocab()


def test_cache_is_keyed_by_data_and_size(corpus, tmp_path, monkeypatch):
    tok = train_tokenizer(corpus, 600, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bpe-*-600"))) == 1

    def no_training(*args):
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr(tk, "_build", no_training)
    cached = train_tokenizer(corpus, 600, cache_dir=tmp_path)
    assert cached.get_vocab() == tok.get_vocab()
    with pytest.raises(AssertionError, match="trained again"):
        train_tokenizer(corpus, 601, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="trained again"):
        train_tokenizer(corpus[:-1], 600, cache_dir=tmp_path)
    # texts, not their concatenation: "ab" + "c" is another corpus than "a" + "bc"
    assert tk.texts_hash(["ab", "c"]) != tk.texts_hash(["a", "bc"])


def test_too_small_too_large_or_empty_is_refused(corpus):
    with pytest.raises(ValueError, match="at least 261 tokens"):
        train_tokenizer(corpus, MIN_VOCAB - 1)
    with pytest.raises(ValueError, match="vocab_size 1,000,001 is above 1,000,000"):
        train_tokenizer(corpus, 1_000_001)  # padded to its size: 1e30 overflowed in the tokenizers library
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(["", ""], 500)


def test_words_mode_shares_tokens_between_identifiers_and_prose(corpus):
    """Identifier words in code and the same words in a docstring become the same tokens."""
    words = train_tokenizer(corpus, 1000, words=True)
    plain = train_tokenizer(corpus, 1000)
    code, prose = "self . _sectionName = default_section", "the section name"

    def shared(tok):  # the tokens of "section name" occur, in order, in both texts
        def contains(seq, sub):
            return any(seq[i:i + len(sub)] == sub for i in range(len(seq)))
        target = tok.tokenize(" section name")
        return contains(tok.tokenize(code), target) and contains(tok.tokenize(prose), target)

    assert len(words) == 1000
    assert shared(words)
    assert not shared(plain)  # the property is the words mode's doing
    assert words.tokenize("getHTTPServer_name") == words.tokenize("get httpserver name")


def test_words_mode_round_trips_and_has_its_own_cache_entry(corpus, tmp_path):
    words = train_tokenizer(corpus, 600, cache_dir=tmp_path, words=True)
    plain = train_tokenizer(corpus, 600, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bpe-*-600"))) == 2
    assert words.get_vocab() != plain.get_vocab()
    loaded = AutoTokenizer.from_pretrained(next(p for p in tmp_path.glob("bpe-*-600")
                                                 if AutoTokenizer.from_pretrained(p).get_vocab()
                                                 == words.get_vocab()))
    assert loaded(CODE, "Add two numbers .")["input_ids"] == words(CODE, "Add two numbers .")["input_ids"]


def test_cache_saves_leave_no_staging_folder_behind(corpus, tmp_path, monkeypatch):
    """A save that fails (a full disk) leaves nothing beside the cache entries, and a killed
    trial's staging folder is removed by the next save into the folder."""
    from training.staging import pid_space

    killed = tmp_path / f".bpe-0123456789abcdef-300.tmp-{pid_space()}-999999999"  # no such pid
    killed.mkdir()
    (killed / "tokenizer.json").write_text("{half a file")

    def disk_full(self, folder, *args, **kwargs):
        (Path(folder) / "tokenizer.json").parent.mkdir(parents=True, exist_ok=True)
        (Path(folder) / "tokenizer.json").write_text("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train_tokenizer(corpus, 300, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the killed one's and the failed one's both gone
    monkeypatch.undo()
    train_tokenizer(corpus, 300, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("bpe-*-300")]


WORDS_CORPUS = ["def base64_decode(data): return base64Decode(data)", "Decode base64 data .",
                "def get_section_name(self): return self._sectionName", "Return the section name ."] * 5


def test_words_mode_splits_an_identifier_after_a_digit():
    tok = train_tokenizer(WORDS_CORPUS, 400, words=True)
    assert tok.tokenize("base64Decode") == tok.tokenize("base64 decode")


def test_the_cache_is_keyed_by_the_tokenizers_version(tmp_path, monkeypatch):
    train_tokenizer(WORDS_CORPUS, 300, cache_dir=tmp_path)
    monkeypatch.setattr(tk.tokenizers, "__version__", "0.0.0-other")
    train_tokenizer(WORDS_CORPUS, 300, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bpe-*-300"))) == 2


def test_mask_absorbs_the_space_before_it_as_roberta_does():
    tok = train_tokenizer(WORDS_CORPUS, 300)
    assert tok("return <mask>")["input_ids"] == tok("return")["input_ids"][:-1] + [tok.mask_token_id, tok.eos_token_id]
