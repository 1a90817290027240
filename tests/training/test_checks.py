"""The typed configs' range checks, through the Python API (the YAML reader types its values
before they reach these)."""

import pytest

from training.data import DataConfig
from training.distill import DistillConfig
from training.finetune import FinetuneConfig
from training.seq2seq import Seq2SeqConfig


@pytest.mark.parametrize("config, field, value", [
    (FinetuneConfig, "epochs", True), (FinetuneConfig, "lr", True), (FinetuneConfig, "seed", False),
    (FinetuneConfig, "max_seq_len", True), (DataConfig, "max_eval", True),
    (DistillConfig, "max_transfer_extra", True), (DistillConfig, "attention_dropout", False),
    (Seq2SeqConfig, "max_train_extra", True), (Seq2SeqConfig, "dropout", False),
])
def test_a_bool_is_no_number_to_a_config(config, field, value):
    """Python counts True as 1: max_eval=True would be a cap of one example, epochs=True one
    epoch. Refused naming the field and its type."""
    with pytest.raises(ValueError, match=rf"^{field}: expected .*(int|float).*, got {value}$"):
        config(**{field: value})


def test_a_bool_field_takes_a_bool_and_a_cap_is_whole():
    assert DistillConfig(measure_codebert=False).measure_codebert is False  # a bool field keeps its bools
    for config, field in ((DataConfig, "max_train"), (DistillConfig, "max_transfer_extra"),
                          (Seq2SeqConfig, "max_train_extra")):
        with pytest.raises(ValueError, match=rf"^{field}: must be an integer >= 1, got 2.5$"):
            config(**{field: 2.5})
        assert getattr(config(**{field: None}), field) is None  # no cap
