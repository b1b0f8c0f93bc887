"""The stage contract (vitsrt.stages): families are data, and the API answers for families other than
Bert-VITS2 without special cases."""

from __future__ import annotations

import pytest

from vitsrt.errors import VitsrtError
from vitsrt.stages import BERT_VITS2, STAGE_NAMES, Family, Stage, Tensor, family
from vitsrt.voice import STAGES, Graphs

SIZES = {"hidden": 192, "latent": 192, "gin": 256, "hop": 256, "bert_dim": 1024}

_G = Tensor("g", "float32", ("B", "gin", 1), when="multi_speaker")
_Y_MASK = Tensor("y_mask", "float32", ("B", 1, "F"))

# Original VITS as piper trains it: phone ids and lengths only; a speaker input only when multi-speaker.
VITS = Family(
    "vits",
    (
        Stage(
            "encoder",
            inputs=(
                Tensor("phone_ids", "int64", ("B", "T")),
                Tensor("lengths", "int64", ("B",)),
                Tensor("sid", "int64", ("B",), when="multi_speaker"),
            ),
            outputs=(Tensor("m_p", "float32", ("B", "latent", "T")), Tensor("x_mask", "float32", ("B", 1, "T")), _G),
        ),
        Stage("flow", inputs=(Tensor("z_p", "float32", ("B", "latent", "F")), _Y_MASK, _G),
              outputs=(Tensor("z", "float32", ("B", "latent", "F")),)),
        Stage("decoder", inputs=(Tensor("z", "float32", ("B", "latent", "F")), _Y_MASK, _G),
              outputs=(Tensor("audio", "float32", ("B", 1, "F*hop")),)),
    ),
)

# A family whose voices may bundle their own BERT model as an extra stage in front of the encoder.
BERT_STAGE = Stage(
    "bert_en",
    inputs=(Tensor("input_ids", "int64", ("B", "W")), Tensor("attention_mask", "int64", ("B", "W"))),
    outputs=(Tensor("hidden_states", "float32", ("B", "W", "bert_dim")),),
    when="bert_model",
)
WITH_BERT = Family("with-bert", (BERT_STAGE, *BERT_VITS2.stages))


def test_vits_single_speaker_has_no_speaker_tensors():
    encoder = VITS.stage("encoder")
    assert [t.name for t in encoder.inputs_for()] == ["phone_ids", "lengths"]
    assert [t.name for t in encoder.outputs_for()] == ["m_p", "x_mask"]
    assert [t.name for t in VITS.stage("decoder").inputs_for()] == ["z", "y_mask"]


def test_vits_multi_speaker_adds_sid_and_g():
    encoder = VITS.stage("encoder")
    assert [t.name for t in encoder.inputs_for({"multi_speaker"})] == ["phone_ids", "lengths", "sid"]
    assert encoder.outputs_for({"multi_speaker"})[-1].shape(SIZES) == ["B", 256, 1]
    assert VITS.required == ("encoder", "flow", "decoder")


def test_extra_bert_stage_only_for_voices_with_the_feature():
    assert [s.name for s in WITH_BERT.stages_for()] == list(BERT_VITS2.names)
    assert [s.name for s in WITH_BERT.stages_for({"bert_model"})] == ["bert_en", *BERT_VITS2.names]
    assert "bert_en" not in WITH_BERT.required
    assert BERT_STAGE.outputs[0].shape(SIZES) == ["B", "W", 1024]  # W (word pieces) stays symbolic
    assert BERT_STAGE.length_axis == "T"


def test_bert_vits2_contract():
    assert BERT_VITS2.names == ("encoder", "duration", "duration_dp_only", "flow", "decoder")
    assert BERT_VITS2.required == ("encoder", "duration", "flow", "decoder")
    assert BERT_VITS2.stage("decoder").outputs[0].shape(SIZES) == ["B", 1, "F*256"]
    assert BERT_VITS2.stage("flow").length_axis == "F" and BERT_VITS2.stage("duration").length_axis == "T"
    assert family("bert-vits2") is BERT_VITS2
    assert STAGES == STAGE_NAMES


def test_manifest_graphs_follow_the_contract():
    fields = Graphs.model_fields
    assert tuple(fields) == BERT_VITS2.names
    assert [n for n, f in fields.items() if f.is_required()] == list(BERT_VITS2.required)


def test_unknown_family_stage_and_size_are_one_line_errors():
    with pytest.raises(VitsrtError, match="no stage contract for model family 'xtts'"):
        family("xtts")
    with pytest.raises(VitsrtError, match="has no stage 'vocoder'"):
        BERT_VITS2.stage("vocoder")
    with pytest.raises(VitsrtError, match="size 'gin'"):
        _G.shape({})
