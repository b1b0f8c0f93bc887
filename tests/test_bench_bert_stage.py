"""Smoke test of the BERT-stage benchmark (benchmarks/bert_stage.py): a tiny random BERT (hidden 1024, one kept
layer) and a tiny random Bert-VITS2 voice, exported with and without BERT, one quick run; the record holds what
the issue asks for (latency, first audio, stage times with BERT's share, throughput at two client counts), and
the arms really differ (only the BERT arm spends time in a "bert" stage)."""

from __future__ import annotations

import json

import pytest

for _module in ("torch", "transformers", "safetensors", "jieba", "pypinyin"):
    pytest.importorskip(_module, reason=f"{_module} is needed to build and run a Bert-VITS2 voice with BERT")

from vitsrt.benchmarks import bert_stage  # noqa: E402
from vitsrt.errors import VitsrtError  # noqa: E402


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bert-stage")
    code = bert_stage.main(["--size", "tiny", "--repeats", "2", "--clients", "1,2", "--requests-per-client", "1",
                            "--passes", "2", "--cache-dir", str(out / "cache"), "--json", str(out / "r.json"),
                            "--markdown", str(out / "r.md")])
    assert code == 0
    return json.loads((out / "r.json").read_text(encoding="utf-8")), (out / "r.md").read_text(encoding="utf-8")


def test_record_header_and_bert(record) -> None:
    result, _ = record
    assert result["benchmark"] == bert_stage.BENCHMARK
    for field in ("created", "command", "cpu", "cpu_cores", "load_avg_start", "load_avg_end", "versions",
                  "engine_options", "voices"):
        assert field in result
    assert result["threads"] == 2 and result["engine_options"]["threads"] == 2
    bert = result["bert"]
    assert (bert["layers"], bert["hidden"], bert["kept_layers"]) == (3, 1024, 1)  # hidden_states[-3]
    assert bert["graph_mb"] > 0 and bert["weights"] == "float32"
    assert set(result["voices"]) == set(bert_stage.ARMS)
    assert set(result["load_avg_parts"]) == {"latency", "c=1", "c=2"}


def test_latency_rows(record) -> None:
    result, _ = record
    rows = result["latency"]
    assert [r["label"] for r in rows] == [label for label, _ in bert_stage.TEXTS]
    for row in rows:
        # One sentence each; every character is one token of the written vocabulary ([CLS] and [SEP] around).
        assert row["sentences"] == 1
        assert row["unknown_tokens"] == 0 and row["bert_tokens"] == row["chars"] + 2
        with_bert, without = row["arms"]["bert"], row["arms"]["no-bert"]
        for arm in (with_bert, without):
            assert arm["one_shot_ms"]["count"] == 2 and arm["first_audio_ms"]["count"] == 2
            assert 0 < arm["first_audio_ms"]["p50"] <= arm["stream_total_ms"]["p50"]
            assert arm["audio_s"] > 0
        # Only the BERT arm runs a BERT stage (the negative control of the instrumentation).
        assert with_bert["bert_ms"]["min"] > 0 and "bert" in with_bert["one_shot_stages_ms"]
        assert "bert" not in without["stream_stages_ms"] and without["bert_share_of_first_audio"] == 0
        assert 0 < with_bert["bert_share_of_first_audio"] < 1
        paired = sorted(a["first_audio_s"] - b["first_audio_s"]
                        for a, b in zip(with_bert["samples"]["stream"], without["samples"]["stream"], strict=True))
        assert row["first_audio_added_ms"] == pytest.approx(1000 * (paired[0] + paired[1]) / 2)  # median of 2
    assert rows[0]["ids"] < rows[1]["ids"] < rows[2]["ids"]


def test_throughput_levels(record) -> None:
    result, markdown = record
    assert [e["clients"] for e in result["throughput"]] == [1, 2]
    for entry in result["throughput"]:
        for arm, level in entry["arms"].items():
            assert level["ok"] == entry["clients"] * 2 and level["errors"] == 0  # 2 passes x 1 per client
            assert level["requests_per_s"] > 0 and level["rtfx"] > 0
            assert ("bert" in level["stages"]["per_request_ms"]) == (arm == "bert")
    assert "BERT share of first audio" in markdown and "| 2 | no-bert |" in markdown


def test_vocabulary() -> None:
    texts = [text for _, text in bert_stage.TEXTS]
    tokens = bert_stage.vocabulary(500, texts)
    assert len(tokens) == 500 == len(set(tokens))
    assert tokens[:5] == list(bert_stage.SPECIAL_TOKENS)
    assert {c for text in texts for c in text} <= set(tokens)
    with pytest.raises(VitsrtError, match="cannot hold"):
        bert_stage.vocabulary(50, texts)


def test_large_shape_is_chinese_roberta_large() -> None:
    shape = bert_stage.LARGE_BERT
    assert (shape.layers, shape.hidden, shape.heads, shape.intermediate, shape.vocab) == (24, 1024, 16, 4096, 21128)
