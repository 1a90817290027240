"""The shipping side: a saved student's ONNX graph and tokenizer.json scored with numpy,
onnxruntime and tokenizers alone (torch and transformers unimportable) give the logits the
torch model gives on the job's own encoding (truncation, special tokens, padding) of the texts
in the data set's form (raw source and queries prepared as the harvest prepares them)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from search.space import Arch, teacher_spec
from training.data import ClsExample
from training.finetune import collate, encode
from training.models import build_student
from training.onnx_export import export_folder
from training.onnx_infer import PairScorer, code_text, query_text
from training.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[2]
CODES = ["def get_section_name(self):\n    return self._sectionName",
         "def add(a, b):\n    return a + b",
         "def parse(text):\n" + "    value = int(text.strip()) + offset_value * scale_factor\n" * 12,  # > 64 tokens
         "x = 1"]
QUERIES = ["Return the section name.", "Add two numbers.", "Parse an integer from text, scaled and offset.", "One."]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A saved bi-encoder student (words tokenizer, as the demo's) with both graphs exported."""
    folder = tmp_path_factory.mktemp("student")
    tokenizer = train_tokenizer(CODES + QUERIES, 300, words=True)
    torch.manual_seed(0)
    model = build_student(Arch(2, 32, 2, 64, 300), teacher_spec("minilm-l6"), pair_mode="separate",
                          pad_token_id=tokenizer.pad_token_id, pair_head="cosine").eval()
    # the head's bias puts two pairs on each side of "match": a `matches` that answers one
    # way whatever the logits would fail
    margins = torch.tensor(_torch_logits(model, tokenizer, 64)).diff(dim=1).flatten().sort().values
    with torch.no_grad():
        model.cos_bias -= margins[1:3].mean()
    model.save_pretrained(folder)
    tokenizer.model_max_length = 64  # as the job records distill.max_seq_len
    tokenizer.save_pretrained(folder)
    export_folder(folder, seq_len=16)
    return folder, model, tokenizer


def _torch_logits(model, tokenizer, max_len: int) -> list[list[float]]:
    examples = [ClsExample(code_text(c), query_text(q), 0) for c, q in zip(CODES, QUERIES, strict=True)]
    batch = collate(encode(tokenizer, examples, max_len, "separate"), list(range(len(examples))),
                    tokenizer.pad_token_id)
    with torch.no_grad():
        return model(**batch).logits.tolist()


def _scored_without_torch(folder: Path, graph: str, max_len: int) -> dict:
    script = (
        "import json, sys\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None  # importing either now fails\n"
        "from training.onnx_infer import PairScorer\n"
        f"scorer = PairScorer({str(folder)!r}, graph={graph!r}, max_len={max_len})\n"
        f"codes, queries = {CODES!r}, {QUERIES!r}\n"
        "print(json.dumps({'logits': scorer.logits(codes, queries).tolist(),\n"
        "                  'matches': scorer.matches(codes, queries).tolist()}))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("graph, tolerance", [("model.onnx", 1e-4), ("model_int8.onnx", 0.25)])
def test_shipped_graph_scores_as_the_torch_model_without_torch(shipped, graph, tolerance):
    folder, model, tokenizer = shipped
    got = _scored_without_torch(folder, graph, max_len=64)
    expected = torch.tensor(_torch_logits(model, tokenizer, 64))
    assert (torch.tensor(got["logits"]) - expected).abs().max() < tolerance
    logits = torch.tensor(got["logits"])
    assert got["matches"] == (logits[:, 1] > logits[:, 0]).tolist()
    if graph == "model.onnx":  # int8 rounding may move a pair across the decision (0.02 away)
        assert got["matches"] == (expected[:, 1] > expected[:, 0]).tolist()
        assert sorted(got["matches"]) == [False, False, True, True]


def test_truncation_is_the_jobs(shipped):
    """At another max_len the long function is cut where the job's encoding cuts it."""
    folder, model, tokenizer = shipped
    got = torch.tensor(_scored_without_torch(folder, "model.onnx", max_len=12)["logits"])
    assert (got - torch.tensor(_torch_logits(model, tokenizer, 12))).abs().max() < 1e-4
    assert (got - torch.tensor(_torch_logits(model, tokenizer, 64))).abs().max() > 1e-3  # it did cut


def test_a_folder_without_graphs_or_a_one_input_graph_is_refused(tmp_path, shipped):
    folder, _, _ = shipped
    with pytest.raises(FileNotFoundError, match="model_int8.onnx: not found"):
        PairScorer(tmp_path)
    with pytest.raises(ValueError, match="as many of each"):
        PairScorer(folder).logits(["def f(): pass"], [])
    joint = tmp_path / "joint"
    tokenizer = train_tokenizer(CODES + QUERIES, 300, words=True)
    build_student(Arch(1, 16, 2, 32, 300), teacher_spec("minilm-l6"), pair_mode="joint",
                  pad_token_id=tokenizer.pad_token_id).save_pretrained(joint)
    tokenizer.save_pretrained(joint)
    export_folder(joint, seq_len=8)
    with pytest.raises(ValueError, match="no model_max_length recorded"):  # a folder the job did not write
        PairScorer(joint)
    with pytest.raises(ValueError, match="not a bi-encoder graph"):
        PairScorer(joint, max_len=8)


def test_source_and_queries_take_the_data_sets_form():
    from training.harvest import code_tokens, docstring_tokens, first_sentence

    source = 'def add(a, b):\n    """Add two numbers.\n\n    More text."""\n    # the sum\n    return a + b\n'
    assert code_text(source) == "def add ( a , b ) : return a + b"
    assert code_text("    def f(x):\n        return x\n") == "def f ( x ) : return x"  # a method, indented
    for newline in ("\r\n", "\r"):  # Windows and old Mac line endings, as ast counts them
        assert code_text(source.replace("\n", newline)) == "def add ( a , b ) : return a + b"
    assert code_text(code_text(source)) == code_text(source)  # text already in that form stays
    assert code_text("if (") == "if ("  # Python cannot tokenize it: split on whitespace
    assert query_text("Add two\n numbers.") == "Add two numbers ."
    # what harvest wrote for the same function
    assert code_text(source) == " ".join(code_tokens("def add(a, b):\n    # the sum\n    return a + b\n"))
    assert query_text("Add two numbers.") == " ".join(docstring_tokens(first_sentence("Add two numbers.")))


def test_the_recorded_length_pad_token_and_bad_arguments(shipped):
    folder, _, _ = shipped
    scorer = PairScorer(folder)
    assert scorer.max_len == 64  # tokenizer_config.json's model_max_length
    with pytest.raises(TypeError, match="not a string"):
        scorer.logits("def f(): pass", "Do nothing.")
    with pytest.raises(ValueError, match="max_len: must be in \\[4, 512\\]"):
        PairScorer(folder, max_len=513)
    for short in (0, 1, 3):  # 0 took the recorded length; 1 turned truncation off; 3 kept no text
        with pytest.raises(ValueError, match="max_len: must be in \\[4, 512\\]"):
            PairScorer(folder, max_len=short)


def test_a_damaged_config_is_named_with_its_line(shipped, tmp_path):
    folder, _, _ = shipped
    for name in ("tokenizer_config.json", "config.json"):
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        (copy / name).write_text('{"model_max_length": 64,\n "pad_token": ')
        with pytest.raises(ValueError, match=f"{name}:2: not valid JSON"):
            PairScorer(copy)
        for value, kind in (("null", "NoneType"), ("[64]", "list")):  # JSON, but no object
            (copy / name).write_text(value)
            with pytest.raises(ValueError, match=f"{name}: expected a JSON object, got {kind}"):
                PairScorer(copy)


def test_the_floor_length_is_accepted_and_padding_is_the_pad_token(shipped):
    folder, _, _ = shipped
    assert PairScorer(folder, max_len=4).max_len == 4  # the documented floor
    scorer = PairScorer(folder, graph="model.onnx")
    ids, mask = scorer._side(["a", "a b c d e f"])
    assert mask[0, -1] == 0 and ids[0, -1] == scorer.tokenizer.token_to_id("<pad>")


def test_pasted_functions_are_cut_as_the_harvest_cuts_them(tmp_path):
    """Line breaks other than \\n (form feed, U+2028) inside a docstring, and a method whose
    string holds lines less indented than the method: code_text gives the harvest's tokens."""
    from training.harvest import harvest

    functions = {
        "scale": 'def scale(x):\n    """Return the value\x0c of x, scaled by two."""\n    y = x * 2\n    return y\n',
        "shift": 'def shift(x):\n    """Return the value\u2028of x, shifted by one."""\n    y = x + 1\n    return y\n',
        "Report.query": ('    def query(self):\n        """Return the report query text."""\n'
                         '        sql = """\nSELECT a\nFROM t"""\n        return sql\n'),
    }
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "mod.py").write_text(functions["scale"] + "\n\n" + functions["shift"] + "\n\nclass Report:\n"
                                             + functions["Report.query"], encoding="utf-8")
    splits, _ = harvest(tmp_path / "src")
    # whitespace inside a string token is one space to code_text (and to the tokenizers)
    harvested = {r["func_name"]: " ".join(" ".join(r["code_tokens"]).split())
                 for records in splits.values() for r in records}
    assert harvested.keys() == functions.keys()
    for name, source in functions.items():
        assert code_text(source) == harvested[name], name
        assert "Return" not in code_text(source)  # the docstring is cut, the code after it kept
        assert code_text(source).endswith("return sql" if name == "Report.query" else "return y")
