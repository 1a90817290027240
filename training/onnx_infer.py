"""Scoring code-query pairs with a shipped student's ONNX graph and tokenizer alone: numpy,
onnxruntime and tokenizers, no torch and no transformers (what an IDE plugin or a laptop app
embeds). The folder is a saved bi-encoder student whose compression job ran the ONNX variants
(or `python -m training.onnx_export` wrote them).

    scorer = PairScorer("results/demo/students/SWEEP/student-0")   # model_int8.onnx by default
    scorer.logits(["def add(a, b):\\n    return a + b"], ["Add two numbers."])   # (1, 2)
    scorer.matches(codes, queries)   # logit 1 > logit 0, as the job scores accuracy
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

PAD_TOKENS = ("<pad>", "[PAD]")  # RoBERTa-style students, BERT-style folders


class PairScorer:
    """A bi-encoder graph (`model.onnx` / `model_int8.onnx`) and the folder's `tokenizer.json`.

    Each side is encoded as the job encodes it: the tokenizer's own normaliser (identifiers
    split into words) and special tokens, truncated to `max_len` tokens (the job's
    `distill.max_seq_len`: 64 in the demo), right-padded to the batch's longest.
    """

    def __init__(self, folder: str | Path, graph: str = "model_int8.onnx", max_len: int = 64,
                 threads: int = 1):
        folder = Path(folder)
        for name in (graph, "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: not found (the folder of a student whose "
                                        "job ran the onnx variants, or after python -m training.onnx_export)")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        pad = next((t for t in PAD_TOKENS if self.tokenizer.token_to_id(t) is not None), None)
        if pad is None:
            raise ValueError(f"{folder / 'tokenizer.json'}: no padding token among {PAD_TOKENS}")
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

    def logits(self, codes: list[str], queries: list[str]) -> np.ndarray:
        """Logits (B, 2) of each (code, query) pair; column 1 is "they match"."""
        if len(codes) != len(queries) or not codes:
            raise ValueError(f"codes and queries: need as many of each, at least one; got {len(codes)} and {len(queries)}")
        ids, mask = self._side(list(codes))
        ids_b, mask_b = self._side(list(queries))
        feed = {"input_ids": ids, "attention_mask": mask, "input_ids_b": ids_b, "attention_mask_b": mask_b}
        (logits,) = self.session.run(["logits"], {k: v for k, v in feed.items() if k in self.inputs})
        return logits

    def matches(self, codes: list[str], queries: list[str]) -> np.ndarray:
        """Booleans (B,): the pair matches (logit 1 above logit 0)."""
        logits = self.logits(codes, queries)
        return logits[:, 1] > logits[:, 0]
