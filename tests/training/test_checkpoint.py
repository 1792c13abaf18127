"""Checkpoints: atomic writes (a failure leaves the old file intact and no temporary behind), safe loading."""

import os
import pickle

import pytest
import torch

from gankernels.training.checkpoint import atomic_write, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    state = {
        "w": torch.randn(3, 4),
        "step": 7,
        "nested": {"lr": 0.1, "names": ["a", "b"]},
        "bf16": torch.ones(2).bfloat16(),
    }
    path = tmp_path / "ck.pt"
    save_checkpoint(state, path)
    got = load_checkpoint(path)
    assert torch.equal(got["w"], state["w"]) and got["step"] == 7 and got["nested"] == state["nested"]
    assert got["bf16"].dtype == torch.bfloat16


def test_failed_write_keeps_previous(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"v": 1}, path)

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, boom)
    assert load_checkpoint(path) == {"v": 1}
    assert os.listdir(tmp_path) == ["ck.pt"]  # the temporary file was removed


def test_refuses_code_and_garbage(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    save_checkpoint({"a": 1}, tmp_path / "ok.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a gankernels checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="state"):
        save_checkpoint([1], tmp_path / "x.pt")
