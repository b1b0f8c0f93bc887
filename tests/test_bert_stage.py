"""The Bert-VITS2 BERT stage: export (vitsrt.export.bert) and the serve-side tokenizer/expansion (vitsrt.text.bert).

The reference is the fixture written by running upstream Bert-VITS2 2.3 with tiny random stand-in BERTs
(../shared/fixtures/bertvits2-2.3-frontend: `bert/` models, `cases.jsonl` with `bert_text`/`bert_input_ids`,
`bert.npz` with the [1024, T] features). The stand-ins are exported once per module into a temporary
root; every public case is tokenized with the exported tokenizer.json, run through bert.onnx on ONNX
Runtime (CPU), expanded by `word2ph_blank` and compared with the stored features.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FRONTEND_ABSENT as _ABSENT
from conftest import FRONTEND_FIXTURE
from vitsrt.errors import TooManyIdsError, VitsrtError
from vitsrt.text.bert import (
    GRAPH_NAME,
    MANIFEST_NAME,
    TOKENIZER_NAME,
    BertTokenizer,
    batch_feeds,
    expand_by_word2ph,
    read_bert_manifest,
)

STAND_INS = {
    "ZH": "chinese-roberta-wwm-ext-large",
    "JP": "deberta-v2-large-japanese-char-wwm",
    "EN": "deberta-v3-large",
}
LANGS = list(STAND_INS)
TOLERANCE = 1e-4  # the fixture's stated tolerance for float32 BERT features
BATCH_TOLERANCE = 1e-5


def _export_stack() -> None:
    for module in ("torch", "transformers", "tokenizers", "sentencepiece", "safetensors", "onnxruntime", "onnx"):
        pytest.importorskip(module, reason=f"{module} is needed to export a BERT (the bert extra)")


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _hidden(session, manifest, rows: list[np.ndarray]) -> np.ndarray:
    feeds = batch_feeds(rows, manifest.inputs, pad_id=manifest.pad.id)
    return session.run(["hidden"], feeds)[0]


# ----- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    path = FRONTEND_FIXTURE / "cases.jsonl"
    if not path.is_file():
        pytest.skip(_ABSENT)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    if not (FRONTEND_FIXTURE / "bert.npz").is_file():
        pytest.skip(_ABSENT)
    with np.load(FRONTEND_FIXTURE / "bert.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, cases):
    """The three stand-ins exported into one root (float32 weights), with an ORT session each."""
    _export_stack()
    from vitsrt.export.bert import export_bert

    root = tmp_path_factory.mktemp("bert-exports")
    out = {}
    for lang, name in STAND_INS.items():
        graph = export_bert(FRONTEND_FIXTURE / "bert" / name, root)
        out[lang] = (graph, _session(graph.graph))
    return out


def _lang_cases(cases: list[dict], lang: str) -> list[dict]:
    chosen = [c for c in cases if c["lang"] == lang]
    assert chosen, f"no public {lang} cases in the fixture"
    return chosen


def _worst_diff(graph, session, cases: list[dict], reference: dict[str, np.ndarray], lang: str) -> float:
    tokenizer = BertTokenizer.from_dir(graph.directory)
    worst = 0.0
    for case in _lang_cases(cases, lang):
        ids, _ = tokenizer.encode(case["bert_text"])
        features = expand_by_word2ph(_hidden(session, graph.manifest, [ids])[0], case["word2ph_blank"])
        want = reference[f"{case['id']}_{case['bert_slot']}"]
        assert features.shape == want.shape == tuple(case["bert_shape"])
        worst = max(worst, float(np.abs(features - want).max()))
    return worst


def _writable_copy(source: Path, target: Path, *, weights: bool = True) -> Path:
    """A copy of a (read-only) fixture model directory whose files the test may rewrite."""
    target.mkdir()
    for path in source.iterdir():
        if weights or path.suffix != ".safetensors":
            shutil.copyfile(path, target / path.name)
    return target


def _copy_without_weights(source: Path, target: Path) -> Path:
    return _writable_copy(source, target, weights=False)


# ----- the stand-ins against the fixture ---------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_tokenizer_reproduces_fixture_ids(exports, cases, lang):
    graph, _ = exports[lang]
    tokenizer = BertTokenizer.from_dir(graph.directory)
    chosen = _lang_cases(cases, lang)
    for case in chosen:
        ids, tokens = tokenizer.encode(case["bert_text"])
        assert ids.dtype == np.int64
        assert ids.tolist() == case["bert_input_ids"], case["id"]
        assert tokens == case["bert_tokens"], case["id"]
    unk = graph.manifest.unk.id
    assert any(unk in c["bert_input_ids"] for c in chosen), f"no {lang} case exercises [UNK]"


@pytest.mark.parametrize("lang", LANGS)
def test_features_match_upstream(exports, cases, reference, lang):
    graph, session = exports[lang]
    worst = _worst_diff(graph, session, cases, reference, lang)
    print(f"{lang}: max |features - bert.npz| = {worst:.3g}")
    assert worst <= TOLERANCE


def test_perturbed_weight_is_caught(tmp_path, exports, cases, reference):
    """Negative control: one stand-in weight element moved by 0.05 -> the same comparison fails."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from vitsrt.export.bert import export_bert

    source = FRONTEND_FIXTURE / "bert" / STAND_INS["EN"]
    copy = _writable_copy(source, tmp_path / "perturbed")
    weights = copy / "model.safetensors"
    with safe_open(str(weights), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    name = next(n for n in tensors if n.endswith("encoder.layer.0.output.LayerNorm.weight"))
    tensors[name] = tensors[name].copy()
    tensors[name][7] += np.float16(0.05)
    save_file(tensors, str(weights), metadata=metadata)

    graph = export_bert(copy, tmp_path / "out")
    assert graph.key != exports["EN"][0].key
    assert _worst_diff(graph, _session(graph.graph), cases, reference, "EN") > TOLERANCE


@pytest.mark.parametrize("lang", LANGS)
def test_padded_batch_equals_single_runs(exports, cases, lang):
    graph, session = exports[lang]
    tokenizer = BertTokenizer.from_dir(graph.directory)
    rows = sorted((tokenizer.encode(c["bert_text"])[0] for c in _lang_cases(cases, lang)), key=len)
    short, long = rows[0], rows[-1]
    assert len(short) < len(long)
    batched = _hidden(session, graph.manifest, [short, long])
    for b, row in enumerate((short, long)):
        single = _hidden(session, graph.manifest, [row])[0]
        assert np.abs(batched[b, : len(row)] - single).max() <= BATCH_TOLERANCE


@pytest.mark.parametrize("lang", LANGS)
def test_graph_io_and_manifest(exports, lang):
    import onnx

    graph, session = exports[lang]
    manifest = read_bert_manifest(graph.directory)
    assert manifest == graph.manifest
    expected_inputs = ["input_ids", "attention_mask", *(["token_type_ids"] if lang == "ZH" else [])]
    assert manifest.inputs == expected_inputs
    assert [i.name for i in session.get_inputs()] == expected_inputs
    assert [o.name for o in session.get_outputs()] == ["hidden"]
    assert all(i.shape[:2] == ["B", "N"] for i in session.get_inputs())
    assert session.get_outputs()[0].shape == ["B", "N", 1024]
    assert (manifest.hidden_size, manifest.num_layers, manifest.layer, manifest.max_tokens) == (1024, 3, 1, 512)
    assert graph.directory.name == manifest.key[:16]
    model = onnx.load(str(graph.graph))
    layer_ids = {n.split("layer.")[1].split(".")[0] for n in (i.name for i in model.graph.initializer) if "layer." in n}
    assert layer_ids == {"0"}, f"graph should hold exactly the one layer hidden_states[-3] needs: {layer_ids}"


# ----- content addressing ------------------------------------------------------------------------------


def test_reexport_reuses_the_directory(exports):
    from vitsrt.export.bert import export_bert

    first, _ = exports["EN"]
    before = {p.name: p.stat().st_mtime_ns for p in first.directory.iterdir()}
    again = export_bert(FRONTEND_FIXTURE / "bert" / STAND_INS["EN"], first.directory.parent)
    assert again.reused and not first.reused
    assert again.directory == first.directory and again.manifest == first.manifest
    assert {p.name: p.stat().st_mtime_ns for p in again.directory.iterdir()} == before
    assert len({g.key for g, _ in exports.values()}) == 3  # three models, three directories


def test_altered_export_is_rebuilt(tmp_path, exports):
    from vitsrt.export.bert import export_bert
    from vitsrt.voice import sha256_file

    first, _ = exports["EN"]
    root = tmp_path / "root"
    shutil.copytree(first.directory, root / first.directory.name)
    altered = root / first.directory.name / TOKENIZER_NAME
    altered.write_text(altered.read_text(encoding="utf-8") + " ", encoding="utf-8")
    graph = export_bert(FRONTEND_FIXTURE / "bert" / STAND_INS["EN"], root)
    assert not graph.reused and graph.directory == root / first.directory.name
    assert all(sha256_file(graph.directory / n) == d for n, d in graph.manifest.files.items())
    assert sorted(p.name for p in root.iterdir()) == [first.directory.name]  # no staging left behind


def test_fp16_weights_half_the_file_same_features(tmp_path, exports, cases, reference):
    """The stand-ins' weights are float16 values already, so float16 storage changes no feature."""
    from vitsrt.export.bert import export_bert

    graph = export_bert(FRONTEND_FIXTURE / "bert" / STAND_INS["EN"], tmp_path, fp16=True)
    full, _ = exports["EN"]
    assert graph.manifest.fp16_weights and graph.key != full.key
    assert graph.graph.stat().st_size < 0.6 * full.graph.stat().st_size
    assert _worst_diff(graph, _session(graph.graph), cases, reference, "EN") <= TOLERANCE


# ----- directories that are not a BERT -----------------------------------------------------------------




def _bad_dir(kind: str, tmp_path: Path) -> Path:
    zh = FRONTEND_FIXTURE / "bert" / STAND_INS["ZH"]
    target = tmp_path / kind
    if kind == "missing":
        return target
    if kind == "empty":
        target.mkdir()
    elif kind == "gpt2-config":
        target.mkdir()
        (target / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 64}))
    elif kind == "one-layer":
        _copy_without_weights(zh, target)
        config = json.loads((zh / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
        shutil.copyfile(zh / "model.safetensors", target / "model.safetensors")
    elif kind == "small-vocab":
        _copy_without_weights(zh, target)
        config = json.loads((zh / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, "vocab_size": 100}))
        shutil.copyfile(zh / "model.safetensors", target / "model.safetensors")
    elif kind == "no-weights":
        _copy_without_weights(zh, target)
    elif kind == "garbage-weights":
        _copy_without_weights(zh, target)
        (target / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    elif kind == "layer0-missing":
        from safetensors import safe_open
        from safetensors.numpy import save_file

        _copy_without_weights(zh, target)
        with safe_open(str(zh / "model.safetensors"), framework="numpy") as handle:
            kept = {n: handle.get_tensor(n) for n in handle.keys() if "layer.0.attention.self.query" not in n}  # noqa: SIM118
            save_file(kept, str(target / "model.safetensors"), metadata=handle.metadata())
    return target


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", "not a directory"),
        ("empty", "no config.json"),
        ("gpt2-config", "model_type 'gpt2' is not a supported BERT"),
        ("one-layer", "at least 2 layers"),
        ("small-vocab", "reach past the model's 100-row embedding"),
        ("no-weights", "no weights"),
        ("garbage-weights", "cannot be loaded"),
        ("layer0-missing", "lacks or mis-shapes 2 weights"),
    ],
)
def test_not_a_bert_directory_is_one_clear_error(tmp_path, kind, words):
    _export_stack()
    if not FRONTEND_FIXTURE.is_dir():
        pytest.skip(_ABSENT)
    from vitsrt.export.bert import export_bert

    with pytest.raises(VitsrtError) as caught:
        export_bert(_bad_dir(kind, tmp_path), tmp_path / "out")
    message = str(caught.value)
    assert words in message and "\n" not in message, message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----- the graph is hidden_states[-3] for any depth and each supported model type ---------------------


def _tiny_model(model_type: str, layers: int, target: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, DebertaV2Config, DebertaV2Model, RobertaConfig, RobertaModel

    sizes = {"vocab_size": 340, "hidden_size": 64, "num_hidden_layers": layers, "num_attention_heads": 4,
             "intermediate_size": 32, "max_position_embeddings": 512, "pad_token_id": 0}
    if model_type == "bert":
        model = BertModel(BertConfig(**sizes, type_vocab_size=2))
    elif model_type == "roberta":
        model = RobertaModel(RobertaConfig(**sizes, type_vocab_size=1))
    else:
        model = DebertaV2Model(DebertaV2Config(
            **sizes, type_vocab_size=0, relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
            norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, conv_kernel_size=3,
            max_relative_positions=-1, layer_norm_eps=1e-7,
        ))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():  # no LayerNorm at exactly 1/0, so every layer changes the features
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    model.save_pretrained(target)
    zh = FRONTEND_FIXTURE / "bert" / STAND_INS["ZH"]
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(zh / name, target / name)
    return target


@pytest.mark.parametrize(("model_type", "layers"), [("bert", 5), ("roberta", 4), ("deberta-v2", 4)])
def test_graph_equals_hidden_states_minus_3(tmp_path, cases, model_type, layers):
    """Random tiny models deeper than the stand-ins: the graph's output is transformers' full-model
    hidden_states[-3] and measurably not [-2] or [-4] (the layer index cannot be off by one unseen)."""
    _export_stack()
    import torch
    from transformers import AutoModel

    from vitsrt.export.bert import export_bert

    source = _tiny_model(model_type, layers, tmp_path / model_type)
    graph = export_bert(source, tmp_path / "out")
    assert graph.manifest.layer == layers - 2
    session = _session(graph.graph)
    full = AutoModel.from_pretrained(str(source), local_files_only=True, attn_implementation="eager").float().eval()
    rows = [np.asarray(c["bert_input_ids"]) for c in _lang_cases(cases, "ZH")[:2]]
    got = _hidden(session, graph.manifest, rows)
    feeds = {k: torch.from_numpy(v) for k, v in batch_feeds(rows, graph.manifest.inputs).items()}
    with torch.no_grad():
        states = full(**feeds, output_hidden_states=True).hidden_states
    mask = feeds["attention_mask"].numpy().astype(bool)
    diff = {i: float(np.abs(got - states[i].numpy())[mask].max()) for i in (-2, -3, -4)}
    assert diff[-3] <= TOLERANCE, diff
    assert diff[-2] > 100 * TOLERANCE and diff[-4] > 100 * TOLERANCE, diff


# ----- tokenizers against their sources on random text -------------------------------------------------


def _random_texts(pool: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 24))) for _ in range(count)]


def test_character_tokenizer_matches_bert_japanese_tokenizer(cases):
    """BertJapaneseTokenizer (basic words, character subwords; transformers' Python tokenizer) vs the rebuilt
    tokenizers pipeline on random text: vocabulary and unknown characters, every kind of space, width
    variants, characters whose NFKC form holds a space, controls, special-token strings."""
    _export_stack()
    from transformers import AutoTokenizer

    from vitsrt.export.bert import build_tokenizer

    source_dir = FRONTEND_FIXTURE / "bert" / STAND_INS["JP"]
    tokenizer, kind = build_tokenizer(source_dir)
    assert kind == "character"
    source = AutoTokenizer.from_pretrained(str(source_dir), local_files_only=True)
    vocab_chars = sorted({ch for c in _lang_cases(cases, "JP") for ch in c["bert_text"]})
    pool = [*vocab_chars, *"挨耕龍aZ09", *" \u3000\t\n\r", *"ｶﾞﾊﾟ①㍿ﬁ", "゛", "゜", "¨", "\u3099",
            "\x00", "\u200b", "\ufffd", "\u2028", "[UNK]", "[MASK]", "[CLS]", "!", "(", "、", "…"]
    for text in _random_texts(pool, 400, seed=1):
        assert tokenizer.encode(text).ids == source(text)["input_ids"], repr(text)


def test_export_time_tokenizer_check_catches_a_difference(monkeypatch):
    """Negative control for the character pipeline and for export's own probe check: without the rules for
    characters whose NFKC form holds a space, '゛' tokenizes differently from BertJapaneseTokenizer, and
    build_tokenizer refuses to write such a tokenizer."""
    _export_stack()
    if not FRONTEND_FIXTURE.is_dir():
        pytest.skip(_ABSENT)
    import vitsrt.export.bert as bert_export

    source_dir = FRONTEND_FIXTURE / "bert" / STAND_INS["JP"]
    monkeypatch.setattr(bert_export, "_PROBES", ("あ゛い",))
    assert bert_export.build_tokenizer(source_dir)[1] == "character"
    monkeypatch.setattr(bert_export, "_nfkc_space_guards", lambda vocab: [])
    with pytest.raises(VitsrtError, match="disagrees with its source"):
        bert_export.build_tokenizer(source_dir)


def _train_spm(tmp_path: Path, cases: list[dict], model_type: str, **options) -> Path:
    import sentencepiece as spm

    target = tmp_path / f"spm-{model_type}"
    target.mkdir()
    lines = [c["norm_text"] for c in cases] * 3
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(target / "spm"), vocab_size=800, model_type=model_type,
        character_coverage=0.98, hard_vocab_limit=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]", num_threads=1,
        minloglevel=2, **options,
    )
    (target / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "DebertaV2Tokenizer"}))
    return target


def _path_score(processor, ids: list[int]) -> float:
    return sum(processor.get_score(i) for i in ids)  # unknown pieces score alike in both (min score - 10)


@pytest.mark.parametrize("model", ["fixture-bpe", "unigram", "bpe-byte-fallback"])
def test_sentencepiece_tokenizer_matches_sentencepiece(tmp_path, cases, model):
    """The rebuilt spm.model tokenizer vs SentencePiece itself (what DebertaV2Tokenizer runs) on random
    text; the fixture's BPE model and two trained here (Unigram as in real DeBERTa-v3, BPE with bytes).

    BPE is exact. Unigram segmentations are exact except at near-ties: SentencePiece sums piece scores in
    float32, tokenizers in float64, so two segmentations whose totals differ below float32 resolution can
    come out either way. Each such case must be a near-tie that the rebuilt tokenizer resolves to the
    higher (exact) score."""
    _export_stack()
    import sentencepiece as spm

    from vitsrt.export.bert import build_tokenizer

    if model == "fixture-bpe":
        source_dir = FRONTEND_FIXTURE / "bert" / STAND_INS["EN"]
    elif model == "unigram":
        source_dir = _train_spm(tmp_path, cases, "unigram")
    else:
        source_dir = _train_spm(tmp_path, cases, "bpe", byte_fallback=True)
    tokenizer, kind = build_tokenizer(source_dir)
    assert kind == "sentencepiece"
    processor = spm.SentencePieceProcessor(model_file=str(source_dir / "spm.model"))
    cls, sep = processor.piece_to_id("[CLS]"), processor.piece_to_id("[SEP]")
    words = sorted({w for c in cases for w in c["norm_text"].split()})
    pool = [*words, *(" " * 6), "é", "ñ", "Ｈｅｌｌｏ", "ﬁ", "①", "\t", "\n", "\u3000", "\x00", "\u200b", "...", "—"]
    texts = _random_texts(pool, 400, seed=2)
    near_ties = 0
    for text in texts:
        got, want = tokenizer.encode(text).ids, [cls, *processor.encode(text), sep]
        if got == want:
            continue
        assert model == "unigram", repr(text)
        ours, theirs = _path_score(processor, got[1:-1]), _path_score(processor, want[1:-1])
        resolution = len(want) * float(np.spacing(np.float32(abs(theirs))))
        assert processor.decode(got[1:-1]) == processor.decode(want[1:-1]), repr(text)
        assert theirs <= ours <= theirs + resolution, (repr(text), ours, theirs)
        near_ties += 1
    assert near_ties <= len(texts) // 10
    print(f"{model}: {near_ties} of {len(texts)} random texts split differently at float32 near-ties")


def test_deberta_spm_without_tokenizer_class_is_sentencepiece(tmp_path, cases):
    """microsoft/deberta-v3-large's tokenizer_config.json names no tokenizer class; upstream still reads its
    spm.model with DebertaV2Tokenizer, and so does the export."""
    _export_stack()
    from vitsrt.export.bert import build_tokenizer

    source = _writable_copy(FRONTEND_FIXTURE / "bert" / STAND_INS["EN"], tmp_path / "deberta")
    config_path = source / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["tokenizer_class"]
    config_path.write_text(json.dumps(config))
    tokenizer, kind = build_tokenizer(source)
    assert kind == "sentencepiece"
    for case in _lang_cases(cases, "EN"):
        assert tokenizer.encode(case["bert_text"]).ids == case["bert_input_ids"], case["id"]


# ----- serve side --------------------------------------------------------------------------------------


def test_tokenizer_length_limit(exports):
    graph, _ = exports["ZH"]
    tokenizer = BertTokenizer.from_dir(graph.directory)
    assert tokenizer.max_tokens == 512
    ids, _ = tokenizer.encode("天" * 510)
    assert ids.size == 512
    with pytest.raises(TooManyIdsError, match="513 BERT tokens, over this BERT's limit of 512"):
        tokenizer.encode("天" * 511)
    small = BertTokenizer(graph.directory / TOKENIZER_NAME, max_tokens=4)
    assert small.encode("天气")[0].size == 4
    with pytest.raises(TooManyIdsError):
        small.encode("天气晴")


def test_bad_bert_directory_on_the_serve_side(tmp_path, exports):
    with pytest.raises(VitsrtError, match="not found"):
        BertTokenizer.from_dir(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"format": "vitsrt-bert"}')
    with pytest.raises(VitsrtError, match="not a vitsrt BERT manifest"):
        BertTokenizer.from_dir(tmp_path)
    graph, _ = exports["EN"]
    shutil.copy(graph.directory / MANIFEST_NAME, tmp_path / MANIFEST_NAME)
    (tmp_path / TOKENIZER_NAME).write_text("{not json")
    with pytest.raises(VitsrtError, match="not a tokenizers file"):
        BertTokenizer.from_dir(tmp_path)
    assert (graph.directory / GRAPH_NAME).is_file()


def test_expand_by_word2ph():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((4, 3)).astype(np.float32)
    word2ph = [3, 0, 2, 1]
    got = expand_by_word2ph(hidden, word2ph)
    columns = [hidden[i] for i, n in enumerate(word2ph) for _ in range(n)]
    assert got.shape == (3, 6) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, np.stack(columns, axis=1))
    with pytest.raises(VitsrtError, match="3 entries for 4 BERT tokens"):
        expand_by_word2ph(hidden, [1, 1, 1])
    with pytest.raises(VitsrtError, match="negative"):
        expand_by_word2ph(hidden, [1, -1, 1, 1])
    with pytest.raises(VitsrtError, match=r"\[tokens, hidden\]"):
        expand_by_word2ph(hidden[None], word2ph)


def test_batch_feeds():
    feeds = batch_feeds([[2, 7, 3], [2, 3]], ["input_ids", "attention_mask", "token_type_ids"], pad_id=9)
    np.testing.assert_array_equal(feeds["input_ids"], [[2, 7, 3], [2, 3, 9]])
    np.testing.assert_array_equal(feeds["attention_mask"], [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(feeds["token_type_ids"], np.zeros((2, 3)))
    assert all(v.dtype == np.int64 for v in feeds.values())
    assert list(batch_feeds([[1, 2]])) == ["input_ids", "attention_mask"]
    with pytest.raises(ValueError, match="unknown BERT graph inputs"):
        batch_feeds([[1]], ["position_ids"])


def test_serve_module_imports_no_torch_or_transformers():
    code = (
        "import sys, vitsrt.text.bert\n"
        "bad = [m for m in ('torch', 'transformers', 'sentencepiece') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
