from __future__ import annotations

import pytest

from hat.errors import HatError
from hat.space import SubTransformerConfig
from tests.conftest import ROOT

HAT_CONFIG = ROOT / "tests" / "data" / "HAT_wmt14ende_xeon_137.9ms.yml"


def test_yaml_and_json_round_trip(tmp_path, wmt_space):
    for seed in range(20):
        config = wmt_space.sample(seed=seed)
        path = tmp_path / f"{seed}.yaml"
        config.to_yaml(path)
        loaded = SubTransformerConfig.from_yaml(path)
        assert loaded == config and loaded.archid == config.archid and loaded.space == "wmt14_en_de"
        assert SubTransformerConfig.from_json(config.to_json()) == config


def test_archid_is_deterministic_and_distinguishes_configs(wmt_space):
    a, b = wmt_space.sample(seed=1), wmt_space.sample(seed=2)
    assert a.archid == SubTransformerConfig.from_dict(a.to_dict()).archid
    assert a.archid != b.archid
    assert len(a.archid) == 16
    # The space name is metadata, not identity.
    assert SubTransformerConfig.from_dict({**a.to_dict(), "space": "other"}).archid == a.archid


def test_loads_hat_published_config(wmt_space):
    config = SubTransformerConfig.from_yaml(HAT_CONFIG)
    wmt_space.validate(config)
    assert config.encoder_embed_dim == 512 and config.decoder_layers == 1
    assert config.encoder_heads == (4, 8, 8, 8, 8, 8)
    assert config.decoder_ende_attn == (1,) and config.decoder_ffn_dims == (3072,)


def test_hat_config_with_longer_lists_keeps_active_prefix(tmp_path):
    text = HAT_CONFIG.read_text().replace("decoder-ffn-embed-dim-all-subtransformer: [3072]",
                                          "decoder-ffn-embed-dim-all-subtransformer: [3072, 1024, 1024]")
    path = tmp_path / "c.yml"
    path.write_text(text)
    assert SubTransformerConfig.from_yaml(path).decoder_ffn_dims == (3072,)


def test_value_outside_space_names_field_value_and_choices(wmt_space):
    config = wmt_space.sample(seed=0)
    bad = SubTransformerConfig.from_dict({**config.to_dict(), "decoder_ffn_dims": [4096] * config.decoder_layers})
    with pytest.raises(HatError, match=r"decoder_ffn_dims\[0\] = 4096 is not in space 'wmt14_en_de' \(allowed: 3072, 2048, 1024\)"):
        wmt_space.validate(bad)


def test_config_for_another_space_is_refused(tiny_space, wmt_space):
    with pytest.raises(HatError, match="made for space 'tiny', not 'wmt14_en_de'"):
        wmt_space.validate(tiny_space.sample(seed=0))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": 1}, "unknown config key"),
        ({"encoder_heads": [8, 8]}, "same length"),
        ({"decoder_layers": 99}, "decoder_layers = 99 but the per-layer lists have"),
        ({"encoder_embed_dim": "512"}, "encoder_embed_dim must be an integer"),
        ({"decoder_ffn_dims": 3072}, "must be a list"),
    ],
)
def test_bad_config_dicts(wmt_space, change, message):
    data = {**wmt_space.sample(seed=3).to_dict(), **change}
    with pytest.raises(HatError, match=message):
        SubTransformerConfig.from_dict(data)


def test_bad_config_files_name_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("encoder_embed_dim: [\n")
    with pytest.raises(HatError, match="malformed YAML") as info:
        SubTransformerConfig.from_yaml(path)
    assert str(path) in str(info.value)
    path.write_text("encoder_embed_dim: 512\n")
    with pytest.raises(HatError, match="missing key"):
        SubTransformerConfig.from_yaml(path)
