import json
import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from search import cost
from search.space import Arch, teacher_spec
from tests.training.standalone import pair_batch, standalone_logits
from tests.training.tiny_teacher import TINY_DATA
from training.data import classification_splits
from training.models import (
    BiLSTMSoft,
    PairEncoderForSequenceClassification,
    build_student,
    check_teacher_loadable,
    cost_head,
    head_settings,
    load_encoder,
    load_teacher,
)
from training.tokenizer import train_tokenizer

torch.set_num_threads(1)
ARCH = Arch(layers=2, hidden=32, heads=2, ffn=64, vocab=300)


def _n(model):
    return sum(p.numel() for p in model.parameters())


def _inputs(vocab, pair=False):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 9), generator=gen)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if pair:
        out |= {"input_ids_b": ids.flip(1), "attention_mask_b": torch.ones_like(ids)}
    return out


@pytest.mark.parametrize("family", ["minilm-l6", "codebert-base"])
def test_joint_student_param_count_equals_cost_model(family):
    teacher = teacher_spec(family)
    for arch in (ARCH, Arch(3, 48, 4, 96, 1000)):
        model = build_student(arch, teacher)
        assert _n(model) == cost.params(arch, teacher)


@pytest.mark.parametrize("family", ["minilm-l6", "codebert-base"])
@pytest.mark.parametrize("pair_mode, pair_head", [("joint", "concat"), ("separate", "concat"),
                                                  ("separate", "cosine")])
def test_every_student_head_param_count_equals_cost_model(family, pair_mode, pair_head):
    """The search sizes students by the head they will carry: the GA aims at the real size."""
    teacher = teacher_spec(family)
    head = cost_head(pair_mode, pair_head)
    assert head_settings(head) == (pair_mode, pair_head)  # its inverse (joint students take no pair head)
    for arch in (ARCH, Arch(3, 48, 4, 96, 1000)):
        model = build_student(arch, teacher, pair_mode=pair_mode, pair_head=pair_head)
        assert _n(model) == cost.params(arch, teacher, head=head)
        assert cost.size_mb(arch, teacher, head=head) == pytest.approx(_n(model) * 4 / 1e6)


def test_separate_student_adds_one_hidden_square():
    teacher = teacher_spec("minilm-l6")
    model = build_student(ARCH, teacher, pair_mode="separate")
    assert isinstance(model, PairEncoderForSequenceClassification)
    # encoder without pooler (-H*H-H) + dense(2H->H) instead of the pooler: +H*H
    assert _n(model) == cost.params(ARCH, teacher) + ARCH.hidden ** 2
    assert cost.params(ARCH, teacher, head="pair_concat") == cost.params(ARCH, teacher) + ARCH.hidden ** 2


@pytest.mark.parametrize("pair_mode", ["joint", "separate"])
def test_attention_dropout_reaches_the_attention_of_a_training_student(pair_mode):
    torch.manual_seed(0)
    default = build_student(ARCH, teacher_spec("minilm-l6"), pair_mode=pair_mode)
    off = build_student(ARCH, teacher_spec("minilm-l6"), pair_mode=pair_mode, attention_dropout=0.0)
    assert _n(off) == _n(default)
    inputs = {"input_ids": torch.randint(5, ARCH.vocab, (2, 16))}
    if pair_mode == "separate":
        inputs["input_ids_b"] = torch.randint(5, ARCH.vocab, (2, 16))
    for model in (default, off):
        model.train()
        for name, m in model.named_modules():  # every other dropout off: only attention dropout is left
            if isinstance(m, torch.nn.Dropout) and not name.endswith("attention.self.dropout"):
                m.p = 0.0
    # in training mode the default student still draws attention masks; the other does not
    assert not torch.equal(default(**inputs).logits, default(**inputs).logits)
    assert torch.equal(off(**inputs).logits, off(**inputs).logits)


def test_unknown_pair_mode_refused():
    with pytest.raises(ValueError, match="pair_mode"):
        build_student(ARCH, teacher_spec("minilm-l6"), pair_mode="siamese")


@pytest.mark.parametrize("pair_mode", ["joint", "separate"])
def test_student_save_reload_predicts_the_same(tmp_path, pair_mode):
    torch.manual_seed(0)
    model = build_student(ARCH, teacher_spec("codebert-base"), pair_mode=pair_mode).eval()
    model.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    inputs = _inputs(ARCH.vocab, pair=pair_mode == "separate")
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, again(**inputs).logits, atol=1e-6)


def test_separate_student_loads_without_this_package(tmp_path):
    """The saved folder carries pair_encoder.py and an auto_map: stock transformers loads it."""
    examples = classification_splits(TINY_DATA)["test"]
    a, b = [e.text_a for e in examples], [e.text_b for e in examples]
    tokenizer = train_tokenizer(a + b, ARCH.vocab)
    torch.manual_seed(0)
    model = build_student(ARCH, teacher_spec("codebert-base"), pair_mode="separate",
                          pad_token_id=tokenizer.pad_token_id).eval()
    with torch.no_grad():  # off the initial values, so a silent re-initialisation would show
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        expected = model(**pair_batch(tokenizer, a, b, 32)).logits  # (B, 2)
    model.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    logits = standalone_logits(tmp_path / "student", a, b, cwd=tmp_path)
    assert torch.allclose(logits, expected, atol=1e-5)


def test_unknown_teacher_named_in_error():
    with pytest.raises(ValueError, match="no-such-teacher"):
        load_teacher("no-such-teacher")


def test_hub_id_offline_is_a_value_error():
    with pytest.raises(ValueError, match="not-a-user/not-a-model"):
        load_teacher("not-a-user/not-a-model")


def test_embedded_minilm_loads_offline():
    model, tokenizer = load_teacher("minilm-l6", num_labels=2)
    assert model.config.model_type == "bert" and model.config.num_hidden_layers == 6
    enc = tokenizer(["def f(x): return x"], ["identity"], return_tensors="pt")
    with torch.no_grad():
        assert model(**enc).logits.shape == (1, 2)
    encoder, _ = load_encoder("minilm-l6")
    assert encoder.config.hidden_size == 384


def test_bilstm_param_count_and_budget_sizing():
    model = BiLSTMSoft(vocab=500, embed=20, hidden=30, dense=40)
    assert _n(model) == BiLSTMSoft.count_params(500, 20, 30, 40)
    budget = 3e6
    fit = BiLSTMSoft.for_budget(budget, vocab=2000)
    assert _n(fit) * 4 <= budget
    e = fit.config["embed"] + 1  # one step wider no longer fits
    assert BiLSTMSoft.count_params(2000, e, e, round(e * 4 / 3)) * 4 > budget
    with pytest.raises(ValueError):
        BiLSTMSoft.for_budget(1000, vocab=2000)
    assert fit.config["hidden"] == fit.config["embed"]  # the paper's 3:3:4 widths
    assert fit.config["dense"] == round(fit.config["embed"] * 4 / 3)
    three_mb = BiLSTMSoft.baseline("budget", 2000, target_mb=3.0)  # 3 MB is 3e6 bytes, not 3 MiB
    assert 2.95e6 < _n(three_mb) * 4 <= 3.0e6


def test_pair_bilstm_is_siamese_with_tang_features():
    """Pair model: one BiLSTM for both inputs, dense over [h1, h2, h1*h2, |h1-h2|]."""
    torch.manual_seed(0)
    model = BiLSTMSoft(vocab=100, embed=8, hidden=6, dense=10, pair=True).eval()
    assert _n(model) == BiLSTMSoft.count_params(100, 8, 6, 10, pair=True)
    assert model.fc1.in_features == 8 * 6
    a, b = torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9, 3, 4]])
    with torch.no_grad():
        ab, ba = model(a, input_ids_b=b).logits, model(b, input_ids_b=a).logits
    # the features are symmetric but for the order of (h1, h2): swapping changes the logits
    assert not torch.allclose(ab, ba)
    with pytest.raises(ValueError, match="input_ids_b"):
        model(a)
    fit = BiLSTMSoft.for_budget(3e6, vocab=2000, pair=True)
    assert fit.pair and _n(fit) * 4 <= 3e6
    e = fit.config["embed"] + 1
    assert BiLSTMSoft.count_params(2000, e, e, round(e * 4 / 3), pair=True) * 4 > 3e6


def test_bilstm_save_reload_and_padding_invariance(tmp_path):
    torch.manual_seed(0)
    model = BiLSTMSoft(vocab=100, embed=8, hidden=8, dense=8, pad_id=1).eval()
    ids = torch.tensor([[5, 6, 7, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    with torch.no_grad():
        padded = model(ids, mask).logits
        short = model(ids[:, :3], mask[:, :3]).logits
    assert torch.allclose(padded, short, atol=1e-6)  # the padding is never read
    model.save_pretrained(tmp_path)
    again = BiLSTMSoft.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.allclose(again(ids, mask).logits, padded)


def test_bilstm_reads_padded_batches_as_packed_sequences_forward_and_backward():
    """The unpacked pool (each direction over the padded batch, read at the row's last token)
    gives the packed-sequence BiLSTM's final states and gradients, for every row length from
    1 (and an all-padding row, read as its first token) to the batch's longest."""
    torch.manual_seed(0)
    model = BiLSTMSoft(vocab=50, embed=6, hidden=5, dense=7, pad_id=0, dropout=0.0)
    lengths = torch.tensor([9, 1, 4, 0, 9, 2])
    mask = (torch.arange(9) < lengths[:, None]).long()
    ids = torch.randint(1, 50, (6, 9))  # real tokens under the padding too: never read
    unpacked = model.pool(ids, mask)
    packed = model._packed_states(model.embedding(ids), mask.sum(1).clamp(min=1))
    torch.testing.assert_close(unpacked, packed, atol=1e-6, rtol=1e-5)
    grads = [torch.autograd.grad(h.square().sum(), model.lstm.weight_hh_l0_reverse)[0] for h in (unpacked, packed)]
    torch.testing.assert_close(*grads, atol=1e-6, rtol=1e-5)
    # the int8 variant's dynamic LSTM reads packed sequences: the same states within int8's error
    from training.quantize import quantize_classifier

    int8 = quantize_classifier(model, "int8")
    with torch.no_grad():
        assert (int8.pool(ids, mask) - unpacked).abs().max() < 0.05


def test_bilstm_under_bf16_autocast_on_a_cpu_without_native_bf16(monkeypatch):
    """oneDNN has no bf16 LSTM without AVX-512 (a BiLSTM_soft trial failed on such a CPU):
    there the LSTM runs in fp32 under autocast, so the pooled states are the fp32 ones, and
    gradients flow."""
    import training.models

    torch.manual_seed(0)
    model = BiLSTMSoft(vocab=50, embed=6, hidden=5, dense=7, pad_id=0, dropout=0.0)
    ids = torch.randint(1, 50, (3, 8))
    mask = (torch.arange(8) < torch.tensor([8, 3, 5])[:, None]).long()
    plain = model.pool(ids, mask)
    monkeypatch.setattr(training.models, "onednn_bf16_kernels", lambda: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = model.pool(ids, mask)
    assert under.dtype == torch.float32 and torch.equal(under, plain)
    under.square().sum().backward()
    assert model.lstm.weight_hh_l0_reverse.grad.abs().sum() > 0


def test_bi_encoder_teacher_keeps_pretrained_encoder(tmp_path):
    from tests.training.tiny_teacher import tiny_teacher_folder

    folder = tiny_teacher_folder(tmp_path / "t")
    model, _ = load_teacher(str(folder), pair_mode="separate")
    plain = AutoModelForSequenceClassification.from_pretrained(folder)
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight,
                       plain.bert.embeddings.word_embeddings.weight)
    inputs = _inputs(300, pair=True)
    model.eval().save_pretrained(tmp_path / "bi")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bi").eval()
    with torch.no_grad():
        logits = model(**inputs).logits  # (3, 2): (0, s*cos + b)
        assert torch.allclose(logits, again(**inputs).logits, atol=1e-6)
    assert torch.all(logits[:, 0] == 0)
    same = {"input_ids": inputs["input_ids"], "input_ids_b": inputs["input_ids"]}
    with torch.no_grad():  # identical inputs: cos = 1
        assert torch.allclose(model(**same).logits[:, 1], torch.full((3,), 20.0 - 8.0), atol=1e-4)
    # pooled as the encoder was pre-trained to be: the mean of the unmasked tokens' states
    ids, mask = inputs["input_ids"], torch.ones_like(inputs["input_ids"])
    mask[0, 5:] = 0
    with torch.no_grad():
        states = plain.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = torch.stack([states[i, : int(mask[i].sum())].mean(0) for i in range(3)])
        assert torch.allclose(model.pool(ids, mask), expected, atol=1e-5)


def _teacher_folder(model, tokenizer_from, dest):
    """`model` saved in `dest` beside the tokenizer files of the teacher folder `tokenizer_from`."""
    model.save_pretrained(dest)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tokenizer_from / name).is_file():
            shutil.copy(tokenizer_from / name, dest / name)
    return dest


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_teacher_saved_in_half_precision_loads_in_fp32(tmp_path, dtype):
    """transformers 5 loads a checkpoint in the dtype it was saved in: fine-tuning an fp16
    teacher in fp16 reached NaN, and the NaN teacher was cached."""
    from tests.training.tiny_teacher import tiny_teacher_folder

    folder = tiny_teacher_folder(tmp_path / "t")
    half = _teacher_folder(AutoModelForSequenceClassification.from_pretrained(folder).to(dtype), folder,
                           tmp_path / "half")
    for mode in ("joint", "separate"):
        model, _ = load_teacher(str(half), pair_mode=mode)
        assert {p.dtype for p in model.parameters()} == {torch.float32}, mode


def test_a_classifier_checkpoint_of_another_label_count_gets_a_new_head(tmp_path):
    from tests.training.tiny_teacher import tiny_teacher_folder

    folder = tiny_teacher_folder(tmp_path / "t")
    five = _teacher_folder(AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=5, ignore_mismatched_sizes=True), folder, tmp_path / "five")
    model, _ = load_teacher(str(five), num_labels=2)
    assert model.config.num_labels == 2 and model.classifier.out_features == 2


def test_cosine_pair_student_has_two_head_parameters():
    teacher = teacher_spec("minilm-l6")
    model = build_student(ARCH, teacher, pair_mode="separate", pair_head="cosine")
    h = ARCH.hidden
    # no pooler (h*h + h), no classifier (2h + 2); the head is s and b
    assert _n(model) == cost.params(ARCH, teacher) - (h * h + h) - (2 * h + 2) + 2
    assert _n(model) == cost.params(ARCH, teacher, head="pair_cosine")
    assert model.config.pooling == "mean"


def _roberta_bpe_folder(folder):
    """A tiny RoBERTa teacher whose tokenizer is vocab.json + merges.txt only, as
    microsoft/codebert-base ships it (no tokenizer.json)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["def add ( a , b ) : return a + b"] * 4, vocab_size=300,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    RobertaModel(RobertaConfig(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=40)).save_pretrained(folder)
    bpe.save_model(str(folder))
    return folder


def test_teacher_folders_with_weights_and_a_tokenizer_pass_the_check(tmp_path):
    from tests.training.tiny_teacher import tiny_teacher_folder

    check_teacher_loadable("minilm-l6")  # tokenizer.json, vocab.txt, model.safetensors
    check_teacher_loadable(str(tiny_teacher_folder(tmp_path / "bert")))  # tokenizer.json only
    roberta = _roberta_bpe_folder(tmp_path / "roberta")
    assert not (roberta / "tokenizer.json").exists()
    check_teacher_loadable(str(roberta))
    assert len(load_encoder(str(roberta))[1]) > 200  # its BPE, not the 5-token fallback


def _copy_teacher(src, dest, skip=()):
    dest.mkdir()
    for file in src.iterdir():
        if file.is_file() and file.name not in skip:
            shutil.copy(file, dest / file.name)
    return dest


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing_shard"])
def test_a_teacher_whose_safetensors_do_not_open_is_refused(tmp_path, damage):
    """Before any work: otherwise SafetensorError is raised inside a worker, after Ray started."""
    from tests.training.tiny_teacher import tiny_teacher_folder

    folder = _copy_teacher(tiny_teacher_folder(tmp_path / "ok"), tmp_path / "bad")
    weights = folder / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"this is not a safetensors file" * 100)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:  # a sharded checkpoint whose index names a shard that is not there
        weights.rename(folder / "model-00001-of-00002.safetensors")
        shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    bad = "00002-of-00002" if damage == "missing_shard" else "model.safetensors"
    with pytest.raises(ValueError, match=rf"cannot load teacher .*{bad}.* is not a readable safetensors file"):
        check_teacher_loadable(str(folder))


@pytest.mark.parametrize("source", ["minilm", "roberta"])
def test_a_teacher_folder_without_a_tokenizer_is_refused(tmp_path, source):
    """AutoTokenizer would fall back to a 5-token BertTokenizer: every word [UNK]."""
    from training.models import embedded_teacher_path

    src = embedded_teacher_path() if source == "minilm" else _roberta_bpe_folder(tmp_path / "src")
    tokenizer_files = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                       "special_tokens_map.json"}
    folder = _copy_teacher(src, tmp_path / "no-tokenizer", skip=tokenizer_files)
    with pytest.raises(ValueError, match=r"holds no tokenizer \(one of tokenizer\.json, vocab\.txt, "
                                         r"vocab\.json \+ merges\.txt\)"):
        check_teacher_loadable(str(folder))
    if source == "roberta":  # half of a BPE tokenizer is no tokenizer
        shutil.copy(src / "vocab.json", folder / "vocab.json")
        with pytest.raises(ValueError, match="holds no tokenizer"):
            check_teacher_loadable(str(folder))
        shutil.copy(src / "merges.txt", folder / "merges.txt")
        check_teacher_loadable(str(folder))


@pytest.mark.parametrize("damage", ["tokenizer", "tokenizer_model", "config"])
def test_a_teacher_whose_tokenizer_or_config_does_not_load_is_refused(tmp_path, damage):
    """Before any work: a tokenizer.json cut short, or a config.json whose hidden size is no
    multiple of its heads, failed inside a worker after Ray started (a traceback)."""
    from tests.training.tiny_teacher import tiny_teacher_folder

    folder = _copy_teacher(tiny_teacher_folder(tmp_path / "ok"), tmp_path / "bad")
    if damage == "tokenizer":
        (folder / "tokenizer.json").write_text("{")
        match = rf"cannot load teacher .*: the tokenizer in {folder} does not load \(JSONDecodeError"
    elif damage == "tokenizer_model":  # the tokenizers library's own error: a bare Exception
        tokenizer = json.loads((folder / "tokenizer.json").read_text())
        tokenizer["model"]["type"] = "Nope"
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
        match = rf"the tokenizer in {folder} does not load \(Exception: data did not match"
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "num_attention_heads": config["hidden_size"] - 1}))
        match = rf"the config.json of {folder} does not build a model \(ValueError: The hidden size"
    with pytest.raises(ValueError, match=match):
        check_teacher_loadable(str(folder))


def test_a_teacher_folder_without_weights_is_refused(tmp_path):
    from tests.training.tiny_teacher import tiny_teacher_folder

    folder = _copy_teacher(tiny_teacher_folder(tmp_path / "ok"), tmp_path / "bad", skip={"model.safetensors"})
    with pytest.raises(ValueError, match="holds none of model.safetensors"):
        check_teacher_loadable(str(folder))


@pytest.mark.parametrize("pair_mode", ["joint", "separate"])
def test_a_bert_family_student_takes_its_own_tokenizers_pad_id(pair_mode):
    """MiniLM's pad id is 0, the student tokenizer's <s> (its pad is 1): kept, the [CLS]
    embedding would be the zeroed padding row and never train."""
    model = build_student(ARCH, teacher_spec("minilm-l6"), pair_mode=pair_mode, pad_token_id=1)
    encoder = model.encoder if pair_mode == "separate" else model.bert
    assert encoder.config.pad_token_id == 1 and encoder.embeddings.word_embeddings.padding_idx == 1


def test_a_cosine_head_of_three_labels_is_refused():
    with pytest.raises(ValueError, match="num_labels == 2"):
        build_student(ARCH, teacher_spec("minilm-l6"), pair_mode="separate", pair_head="cosine", num_labels=3)


@pytest.mark.parametrize("pair_head", ["concat", "cosine"])
def test_a_pair_students_logits_ignore_padding(pair_head):
    torch.manual_seed(0)
    model = build_student(ARCH, teacher_spec("minilm-l6"), pair_mode="separate", pair_head=pair_head,
                          pad_token_id=1).eval()
    inputs = _inputs(ARCH.vocab, pair=True)
    padded = {k: torch.cat([v, torch.full((3, 4), 1 if "ids" in k else 0)], dim=1) for k, v in inputs.items()}
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, model(**padded).logits, atol=1e-5)


def test_emulated_names_the_half_precisions_a_device_converts(monkeypatch):
    """A row timed in bf16 or fp16 says whether its device emulates it: bf16 without
    AVX512-BF16/AMX (`native_bf16`), fp16 without AVX512-FP16/AMX-FP16 on a CPU; any other
    name is no half precision (None). Both spellings (quantize variants, bench dtypes) agree."""
    import training.models as models

    for name in ("fp32", "float32", "int8", "int8_emb", "onnx", "onnx_int8"):
        assert models.emulated(name, "cpu") is None
    assert models.emulated("bf16", "cpu") is models.emulated("bfloat16", "cpu") is (not models.native_bf16("cpu"))
    assert models.emulated("fp16", "cuda") is False  # every CUDA GPU torch runs on computes fp16
    for caps, native in (({}, False), ({"avx512_fp16": True}, True), ({"amx_fp16": True}, True),
                         ({"avx512_fp16": False, "amx_fp16": False, "avx2": True}, False)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
        models.native_fp16.cache_clear()
        assert models.emulated("fp16", "cpu") is models.emulated("float16", "cpu") is (not native)
    # a torch that cannot tell (no get_capabilities), and a CPU whose units these checks do not know
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    models.native_fp16.cache_clear()
    assert models.native_fp16("cpu") is None and models.emulated("fp16", "cpu") is None
    models.native_fp16.cache_clear()
    monkeypatch.setattr(models.platform, "machine", lambda: "aarch64")
    assert models.emulated("bf16", "cpu") is models.emulated("fp16", "cpu") is None
    assert models.emulated("fp16", "cuda") is False
