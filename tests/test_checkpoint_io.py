import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

from vitsrt.errors import CheckpointError
from vitsrt.train.checkpoint import extract_state_dict, load_state_dict_checked, read_checkpoint, save_checkpoint


class _Tiny(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.lin = nn.Linear(2, width)
        self.emb = nn.Embedding(4, 2)


class _Exploit:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"asks to run code \(os\.system\); refused") as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
    assert not marker.exists()


def test_truncated_and_garbage_files(tmp_path):
    good = tmp_path / "good.pth"
    save_checkpoint(good, _Tiny())
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    expected = r"is truncated or not a checkpoint \(PytorchStreamReader failed reading zip archive\)$"
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        read_checkpoint(garbage)
    text = tmp_path / "config.json"
    text.write_text('{"model": {}}')
    with pytest.raises(CheckpointError):
        read_checkpoint(text)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")


def test_upstream_dict_and_bare_state_dict_and_module_prefix(tmp_path):
    model = _Tiny()
    save_checkpoint(tmp_path / "G_5.pth", model, learning_rate=2e-4, iteration=5)
    raw = read_checkpoint(tmp_path / "G_5.pth")
    assert set(raw) == {"model", "iteration", "optimizer", "learning_rate"}
    assert raw["iteration"] == 5
    bare = model.state_dict()
    prefixed = OrderedDict((f"module.{k}", v) for k, v in bare.items())
    for obj in (raw, bare, prefixed):
        other = _Tiny()
        load_state_dict_checked(other, extract_state_dict(obj))
        for key, value in other.state_dict().items():
            assert torch.equal(value, bare[key])


def test_key_and_shape_errors_name_the_key():
    state = _Tiny().state_dict()
    missing = {k: v for k, v in state.items() if k != "lin.bias"}
    with pytest.raises(CheckpointError, match=r"missing key lin\.bias \(expected shape \[3\]\)"):
        load_state_dict_checked(_Tiny(), missing)
    with pytest.raises(CheckpointError, match=r"shape mismatch for lin\.weight: expected \[4, 2\], found \[3, 2\]"):
        load_state_dict_checked(_Tiny(width=4), {**state, "lin.bias": torch.zeros(4)})
    with pytest.raises(CheckpointError, match=r"unexpected key extra\.w"):
        load_state_dict_checked(_Tiny(), {**state, "extra.w": torch.zeros(1)})


def test_not_a_state_dict():
    with pytest.raises(CheckpointError, match="not a tensor"):
        extract_state_dict({"model": {"a": 1}})
    with pytest.raises(CheckpointError):
        extract_state_dict([1, 2, 3])


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_checkpoint(tmp_path / "G_1.pth", _Tiny())
    save_checkpoint(tmp_path / "G_1.pth", _Tiny())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G_1.pth"]


def test_many_key_mismatches_are_one_summary_with_file_keys_clipped():
    foreign = {f"other.{i}\n{'x' * 300}": torch.zeros(1) for i in range(3)}
    with pytest.raises(CheckpointError) as info:
        load_state_dict_checked(_Tiny(), foreign, source="G.pth")
    message = str(info.value)
    assert message.startswith(
        "G.pth does not fit the model: 3 of 3 model tensors are not in the checkpoint and 3 of 3 checkpoint "
        "tensors have no place in the model (e.g. missing key lin.weight, unexpected key 'other.0\\n"
    )
    assert "\n" not in message and len(message) < 260


def test_model_entry_that_is_not_a_dict():
    with pytest.raises(CheckpointError, match=r"^G\.pth: its 'model' entry is a list, not a state_dict$"):
        extract_state_dict({"model": [torch.zeros(1)]}, source="G.pth")
    with pytest.raises(CheckpointError, match=r"^G\.pth: the state_dict is empty$"):
        extract_state_dict({"model": {}}, source="G.pth")
