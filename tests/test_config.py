import json
import os

import pytest

from vitsrt.config import (
    BertVits2Config,
    approx_generator_parameters,
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
    [("2.1", "emotion"), ("1.1.1", "1.x"), ("1.0", "1.x"), ("3.0", "supports")],
)
def test_unsupported_versions_get_a_reason(version, fragment):
    with pytest.raises(ConfigError, match=rf"unsupported version {version}: .*{fragment}"):
        check_supported(version)


@pytest.mark.parametrize("version", ["2.3", "2.0", "2.0.2", "v2.3", "2.2"])
def test_supported_versions(version):
    assert check_supported(version) in ("2.0", "2.2", "2.3")


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
        (lambda c: c.update(version="2.1"), "unsupported version 2.1"),
        (lambda c: c["model"].update(hidden_channels=1e6), "model.hidden_channels: Input should be less than or equal"),
        (lambda c: c["model"].update(inter_channels=-4), "model.inter_channels: Input should be greater than 0"),
        (lambda c: c["model"].update(filter_channels=32.5), "model.filter_channels: Input should be a valid integer"),
        (lambda c: c["model"].update(gin_channels=10**12), "model.gin_channels: Input should be less than or equal"),
        (lambda c: c["model"].update(n_layers=10**6), "model.n_layers: Input should be less than or equal"),
        (lambda c: c["model"].update(upsample_rates=[10**6, 2, 2, 2, 2]), "model.upsample_rates.0"),
        (lambda c: c["model"].update(resblock_kernel_sizes=[], resblock_dilation_sizes=[]),
         "model.resblock_kernel_sizes: List should have at least 1 item"),
        (lambda c: c["model"].update(resblock_dilation_sizes=[[1, -3, 5]] * 3), "model.resblock_dilation_sizes.0.1"),
        (lambda c: c["model"].update(upsample_initial_channel=16), "must be >= 2**len(upsample_rates) (32)"),
        (lambda c: c["data"].update(n_speakers=10**9), "data.n_speakers: Input should be less than or equal"),
        (lambda c: c["data"].update(filter_length=-2048), "data.filter_length: Input should be greater than 0"),
        (lambda c: c["train"].update(learning_rate=float("inf")), "train.learning_rate: Input should be a finite"),
        (lambda c: c["model"].update(hidden_channels=8192, filter_channels=32768),
         "billion parameters (limit 1 billion)"),
        (lambda c: c["data"].update(spk2id={"x" * 500 + "\n": 9}), "outside 0..n_speakers-1"),
    ],
)
def test_invalid_config_is_one_line_error(fixture_config_dict, mutate, fragment):
    raw = json.loads(json.dumps(fixture_config_dict))
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 240


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


def test_hostile_config_files_are_one_line_errors(tmp_path):
    directory = tmp_path / "dir.json"
    directory.mkdir()
    with pytest.raises(ConfigError, match=r"dir\.json is a directory, not a config file$"):
        load_config(directory)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (8 * 1024 * 1024) + b"{}")  # valid JSON, just over the cap
    with pytest.raises(ConfigError, match=r"huge\.json is larger than 8 MiB; not a config\.json$"):
        load_config(huge)
    deep = tmp_path / "deep.json"
    deep.write_text('{"data": {"spk2id": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    with pytest.raises(ConfigError, match=r"deep\.json is nested too deeply to be a config\.json$"):
        load_config(deep)
    long_int = tmp_path / "long_int.json"
    long_int.write_text('{"model": {"hidden_channels": ' + "9" * 5000 + "}}")
    with pytest.raises(ConfigError, match=r"long_int\.json is not usable JSON: Exceeds the limit \(4300 digits\)"):
        load_config(long_int)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"data": {"spk2id": {"\xe9": 0}}}')
    with pytest.raises(ConfigError, match=r"latin1\.json is not UTF-8 text \(invalid continuation byte at byte 22\)$"):
        load_config(latin1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_config_is_refused_without_blocking(tmp_path):
    # Nobody writes to the FIFO: a plain open() would wait forever, the loader must refuse it at once.
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"is not a regular file \(a FIFO, device or socket cannot be a config\)$"):
        load_config(fifo)


def test_estimated_size_is_a_lower_bound_of_the_real_model():
    torch = pytest.importorskip("torch")
    from vitsrt.train.models.synthesizer import SynthesizerTrn

    config = BertVits2Config.model_validate({"model": {"hidden_channels": 64, "filter_channels": 128}})
    actual = sum(p.numel() for p in SynthesizerTrn(config).parameters())
    estimate = approx_generator_parameters(config)
    assert 0.5 * actual < estimate <= actual, (estimate, actual)
    del torch
