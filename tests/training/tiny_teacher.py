"""A tiny BERT sequence classifier saved as a teacher folder (tests only: MiniLM is slow)."""

from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from training.data import DataConfig, classification_splits
from training.tokenizer import train_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "code_to_text"
TINY_DATA = DataConfig(path=str(FIXTURE))  # 10 train / 4 valid / 4 test code-search pairs


def tiny_teacher_folder(folder: Path, vocab: int = 300) -> Path:
    """Saves a randomly initialised 1-layer BERT (H32) with a BPE tokenizer into `folder`."""
    splits = classification_splits(TINY_DATA)
    texts = [t for e in splits["train"] for t in (e.text_a, e.text_b)]
    tokenizer = train_tokenizer(texts, vocab)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128,
                        pad_token_id=tokenizer.pad_token_id, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
