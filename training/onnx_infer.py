"""Scoring code-query pairs with a shipped student's ONNX graph and tokenizer alone: numpy,
onnxruntime, tokenizers and the standard library, no torch and no transformers (what an IDE
plugin or a laptop app embeds). The folder is a saved bi-encoder student whose compression job
ran the ONNX variants (or `python -m training.onnx_export` wrote them).

    scorer = PairScorer("results/demo/students/SWEEP/student-0")   # model_int8.onnx by default
    scorer.logits(["def add(a, b):\\n    return a + b"], ["Add two numbers."])   # (1, 2)
    scorer.matches(codes, queries)   # logit 1 > logit 0, as the job scores accuracy

Raw source and queries are first put in the form the students were trained on (the
CodeXGLUE/CodeSearchNet form the data set holds): a function's docstring removed, its Python
tokens joined by spaces (no comments, newlines or indentation); a query's words and
punctuation split as docstrings are (`code_text`, `query_text`; `prepare=False` skips that).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from search import space
from training.checks import MIN_TOKENS
from training.harvest import code_tokens, docstring_tokens, function_code

PAD_TOKENS = ("<pad>", "[PAD]")  # a guess when the folder's tokenizer_config.json names none


def code_text(source: str) -> str:
    """`source` as the data set holds a function: dedented and its docstring removed as the
    harvest does (`function_code`), Python tokens joined by spaces; whitespace-split if Python
    cannot tokenize it."""
    source = function_code(source)
    tokens = code_tokens(source) or source.split()
    return " ".join(" ".join(tokens).split())


def query_text(query: str) -> str:
    """A query's words and punctuation split as the data set's docstrings are."""
    return " ".join(docstring_tokens(" ".join(query.split())))


def usable_positions(encoder: dict) -> int:
    """Tokens one sequence may hold under a transformers encoder config (a dict)."""
    return space.usable_positions(encoder.get("model_type"), encoder["max_position_embeddings"])


def _read_json(path: Path) -> dict:
    """A config file's object; ValueError naming the file and the line where it is not JSON, or
    the file when it holds JSON but no object (`null`, a list)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _folder_settings(folder: Path) -> tuple[int | None, str | None, int | None]:
    """(model_max_length the job recorded, pad token, usable positions) from the folder's configs."""
    tok = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    max_len = tok.get("model_max_length")
    max_len = int(max_len) if isinstance(max_len, int | float) and max_len < 1e6 else None
    pad = tok.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    positions = None
    if (folder / "config.json").is_file():
        config = _read_json(folder / "config.json")
        encoder = config.get("encoder", config)
        if "max_position_embeddings" in encoder:
            positions = usable_positions(encoder)
    return max_len, pad, positions


class PairScorer:
    """A bi-encoder graph (`model.onnx` / `model_int8.onnx`) and the folder's `tokenizer.json`.

    Each side is encoded as the job encodes it: the tokenizer's own normaliser (identifiers
    split into words) and special tokens, truncated to `max_len` tokens (default: the job's
    `distill.max_seq_len`, recorded in the folder's tokenizer_config.json as model_max_length),
    right-padded to the batch's longest with the folder's pad token.

    `model_int8.onnx` quantizes each activation tensor with one scale per call, so a pair's int8
    score depends slightly on which pairs share its call; score one pair per call (or use
    `graph="model.onnx"`) where results must not depend on the batch.
    """

    def __init__(self, folder: str | Path, graph: str = "model_int8.onnx", max_len: int | None = None,
                 threads: int = 1):
        folder = Path(folder)
        for name in (graph, "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: not found (the folder of a student whose "
                                        "job ran the onnx variants, or after python -m training.onnx_export)")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        recorded, pad, positions = _folder_settings(folder)
        max_len = recorded if max_len is None else max_len
        if max_len is None:
            raise ValueError(f"{folder}: no model_max_length recorded in tokenizer_config.json: pass max_len "
                             "(the job's distill.max_seq_len)")
        # the job's floor (distill.max_seq_len): below it a side holds only special tokens, and
        # tokenizers ignores a truncation length of 1 (0 kept the recorded length before)
        if not MIN_TOKENS <= max_len <= (positions or max_len):
            raise ValueError(f"max_len: must be in [{MIN_TOKENS}, {positions}] for this model, got {max_len}"
                             if positions else f"max_len: must be >= {MIN_TOKENS}, got {max_len}")
        if pad is None or self.tokenizer.token_to_id(pad) is None:
            pad = next((t for t in PAD_TOKENS if self.tokenizer.token_to_id(t) is not None), None)
        if pad is None:
            raise ValueError(f"{folder / 'tokenizer.json'}: no padding token among {PAD_TOKENS}")
        self.max_len = max_len
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad), pad_token=pad)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / graph), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        if "input_ids_b" not in self.inputs:
            raise ValueError(f"{folder / graph}: not a bi-encoder graph (inputs {sorted(self.inputs)})")

    def _side(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)  # (B, S)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)  # (B, S)
        return ids, mask

    def logits(self, codes: list[str], queries: list[str], prepare: bool = True) -> np.ndarray:
        """Logits (B, 2) of each (code, query) pair; column 1 is "they match". prepare=False:
        the texts are already in the data set's form (e.g. read from a CodeXGLUE file)."""
        if isinstance(codes, str) or isinstance(queries, str):
            raise TypeError("codes and queries: lists of strings, not a string (one pair: [code], [query])")
        if len(codes) != len(queries) or not codes:
            raise ValueError(f"codes and queries: need as many of each, at least one; got {len(codes)} and {len(queries)}")
        if prepare:
            codes, queries = [code_text(c) for c in codes], [query_text(q) for q in queries]
        ids, mask = self._side(list(codes))
        ids_b, mask_b = self._side(list(queries))
        feed = {"input_ids": ids, "attention_mask": mask, "input_ids_b": ids_b, "attention_mask_b": mask_b}
        (logits,) = self.session.run(["logits"], {k: v for k, v in feed.items() if k in self.inputs})
        return logits

    def matches(self, codes: list[str], queries: list[str], prepare: bool = True) -> np.ndarray:
        """Booleans (B,): the pair matches (logit 1 above logit 0)."""
        logits = self.logits(codes, queries, prepare)
        return logits[:, 1] > logits[:, 0]
