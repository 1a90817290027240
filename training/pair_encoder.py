"""The bi-encoder pair classifier, self-contained: imports only torch and transformers.

`PairEncoderForSequenceClassification.save_pretrained(folder)` copies this file into
`folder` and writes an `auto_map` into its config.json (`register_for_auto_class` below), so
the folder loads without this package, with stock transformers:
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`.
Keep it free of `training.*`/`search.*` imports: transformers copies this one file only.
`training.models` re-exports both classes and registers them with the Auto classes.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class PairEncoderConfig(PretrainedConfig):
    """Config of a shared encoder over two inputs; `encoder` is the encoder's config dict."""

    model_type = "pair-encoder"

    def __init__(self, encoder: dict | None = None, classifier_dropout: float = 0.1,
                 pooling: str = "cls", head: str = "concat", **kwargs):
        super().__init__(**kwargs)
        self.encoder = dict(encoder or {"model_type": "bert"})
        self.classifier_dropout = classifier_dropout
        self.pooling = pooling  # "cls": first token | "mean": mean over unmasked tokens
        self.head = head  # "concat": dense over [u; v] | "cosine": logit_1 - logit_0 = s*cos(u,v) + b


class PairEncoderForSequenceClassification(PreTrainedModel):
    """One encoder reads both inputs, pooled to u, v (B, H) each.

    head "concat": dense(2H -> H), tanh, dropout, dense(H -> labels) over [u; v], as
    CodeXGLUE's clone-detection model. head "cosine" (2 labels): logits (0, s*cos(u, v) + b)
    with learned s, b, as a sentence-embedding bi-encoder.
    forward(input_ids, attention_mask, input_ids_b, attention_mask_b, labels=None):
    ids/masks (B, S) each -> logits (B, num_labels).
    """

    config_class = PairEncoderConfig
    base_model_prefix = "pair"

    def __init__(self, config: PairEncoderConfig):
        super().__init__(config)
        fields = dict(config.encoder)
        encoder_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        self.encoder = AutoModel.from_config(encoder_config, add_pooling_layer=False)
        hidden = encoder_config.hidden_size
        if config.head == "cosine":
            if config.num_labels != 2:
                raise ValueError("the cosine head needs num_labels == 2")
            # cos ~0.4 separates matching pairs for MiniLM: start near that threshold
            self.cos_scale = nn.Parameter(torch.tensor(20.0))
            self.cos_bias = nn.Parameter(torch.tensor(-8.0))
        elif config.head == "concat":
            self.dense = nn.Linear(2 * hidden, hidden)
            self.out_proj = nn.Linear(hidden, config.num_labels)
        else:
            raise ValueError(f"head must be 'concat' or 'cosine', got {config.head!r}")
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear) and module in (getattr(self, "dense", None),
                                                        getattr(self, "out_proj", None)):
            module.weight.data.normal_(0.0, 0.02)
            module.bias.data.zero_()
        # encoder modules were initialised by their own model class

    def pool(self, ids, mask):
        """Pooled vectors (B, H) of one side's ids and mask (B, S); forward is pair_logits of two."""
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, S, H)
        if self.config.pooling == "mean":
            weights = mask.unsqueeze(-1).to(states.dtype)  # (B, S, 1)
            return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return states[:, 0]

    def pair_logits(self, u, v):
        """Logits (B, num_labels) of pooled vectors u, v (B, H) each."""
        if self.config.head == "cosine":
            score = self.cos_scale * nn.functional.cosine_similarity(u, v, dim=-1) + self.cos_bias  # (B,)
            return torch.stack([torch.zeros_like(score), score], dim=-1)  # (B, 2)
        hidden = torch.tanh(self.dense(self.dropout(torch.cat([u, v], dim=-1))))  # (B, H)
        return self.out_proj(self.dropout(hidden))  # (B, num_labels)

    def pair_margins(self, u, v):
        """Margins (B, B): logit 1 - logit 0 of (u_i, v_j) for every i, j; u, v (B, H) each.

        Equal to `pair_logits` over all B*B pairs, without materialising them (the in-batch
        distillation loss scores every pair of a batch).
        """
        if self.config.head == "cosine":
            cos = nn.functional.normalize(u, dim=-1) @ nn.functional.normalize(v, dim=-1).T  # (B, B)
            return self.cos_scale * cos + self.cos_bias
        # dense over [u; v] is dense_u(u) + dense_v(v): one (B, B, H) sum instead of B*B concatenations
        hidden = u.shape[-1]
        du = nn.functional.linear(self.dropout(u), self.dense.weight[:, :hidden], self.dense.bias)  # (B, H)
        dv = nn.functional.linear(self.dropout(v), self.dense.weight[:, hidden:])  # (B, H)
        logits = self.out_proj(self.dropout(torch.tanh(du[:, None] + dv[None]))).float()  # (B, B, C)
        return logits[..., 1] - logits[..., 0]

    def forward(self, input_ids, attention_mask=None, input_ids_b=None, attention_mask_b=None,
                labels=None, **_):
        if input_ids_b is None:
            raise ValueError("PairEncoderForSequenceClassification needs input_ids_b")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask_b is None:
            attention_mask_b = torch.ones_like(input_ids_b)
        u, v = self.pool(input_ids, attention_mask), self.pool(input_ids_b, attention_mask_b)
        logits = self.pair_logits(u, v)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# save_pretrained then copies this file beside the weights and maps the Auto classes to it.
PairEncoderConfig.register_for_auto_class()
PairEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
