import json

import pytest

from vitsrt.config import (
    BertVits2Config,
    check_supported,
    load_config,
    parse_config,
    version_from_state_dict_keys,
)
from vitsrt.errors import ConfigError


def test_fixture_config_reads_as_is(fixture_dir, fixture_config_dict):
    config = load_config(fixture_dir / "config.json")
    assert config.version == "2.3"
    assert config.data.sampling_rate == 44100
    assert config.hop_length == 512
    assert config.model.hidden_channels == 32
    assert config.model.n_layers_trans_flow == 3
    assert config.speakers() == {"alice": 0, "bob": 1}
    # Keys we do not model (slm, n_layers_q ...) survive a round trip.
    dumped = json.loads(config.to_json())
    assert dumped["model"]["slm"] == fixture_config_dict["model"]["slm"]
    assert dumped["train"]["c_commit"] == fixture_config_dict["train"]["c_commit"]


def test_upstream_constructor_defaults_apply_when_keys_absent(fixture_config_dict):
    raw = json.loads(json.dumps(fixture_config_dict))
    for key in ("use_transformer_flow", "n_layers_trans_flow"):
        raw["model"].pop(key)
    raw["model"]["n_layers"] = 6
    config = parse_config(raw)
    assert config.model.use_transformer_flow is True
    assert config.model.n_layers_trans_flow == 4
    assert config.model.n_flow_layer == 4
    assert config.model.use_sdp is True
    assert config.model.flow_share_parameter is False


def test_unknown_keys_preserved_everywhere(fixture_config_dict):
    raw = json.loads(json.dumps(fixture_config_dict))
    raw["custom_top"] = {"a": 1}
    raw["model"]["my_extra"] = [1, 2]
    raw["data"]["another"] = "x"
    dumped = json.loads(parse_config(raw).to_json())
    assert dumped["custom_top"] == {"a": 1}
    assert dumped["model"]["my_extra"] == [1, 2]
    assert dumped["data"]["another"] == "x"


@pytest.mark.parametrize(
    ("version", "fragment"),
    [("2.1", "emotion"), ("2.2", "CLAP"), ("1.1.1", "1.x"), ("1.0", "1.x"), ("3.0", "supports")],
)
def test_unsupported_versions_get_a_reason(version, fragment):
    with pytest.raises(ConfigError, match=rf"unsupported version {version}: .*{fragment}"):
        check_supported(version)


@pytest.mark.parametrize("version", ["2.3", "2.0", "2.0.2", "v2.3"])
def test_supported_versions(version):
    assert check_supported(version) in ("2.0", "2.3")


def test_version_from_checkpoint_keys():
    base = {"enc_p.bert_proj.weight", "enc_p.ja_bert_proj.weight", "enc_p.en_bert_proj.weight"}
    assert version_from_state_dict_keys(base) == "2.3"
    assert version_from_state_dict_keys(base | {"enc_p.emo_proj.weight"}) == "2.1"
    assert version_from_state_dict_keys(base | {"enc_p.in_feature_net.0.weight"}) == "2.2"
    assert version_from_state_dict_keys({"enc_p.bert_proj.weight"}) == "1"
    assert version_from_state_dict_keys({"dec.conv_pre.weight"}) is None


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda c: c["model"].update(upsample_rates=[8, 8, 4, 2, 2]), "hop_length"),
        (lambda c: c["model"].update(resblock="3"), "model.resblock"),
        (lambda c: c["model"].update(hidden_channels=33), "divisible"),
        (lambda c: c["data"].update(sampling_rate=-1), "data.sampling_rate"),
        (lambda c: c["data"].update(spk2id={"x": 5}), "spk2id"),
        (lambda c: c["model"].update(n_layers=2), "n_layers"),
        (lambda c: c.update(version="2.2"), "unsupported version 2.2"),
    ],
)
def test_invalid_config_is_one_line_error(fixture_config_dict, mutate, fragment):
    raw = json.loads(json.dumps(fixture_config_dict))
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    listy = tmp_path / "list.json"
    listy.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(listy)


def test_empty_sections_take_upstream_defaults():
    config = BertVits2Config.model_validate({})
    assert config.model.upsample_rates == [8, 8, 2, 2, 2]
    assert config.hop_length == 512
