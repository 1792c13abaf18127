"""gankernels.models.safetensors: round trips, the exact byte layout of the reference implementation, and refusal
of corrupted or malicious files."""

import json
import os
import struct

import pytest
import torch

from gankernels.models import safetensors
from gankernels.models.safetensors import DTYPES, load_file, load_metadata, save_file


def _sample(dtype: torch.dtype, shape=(3, 4)) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_complex:
        return torch.randn(shape, generator=g, dtype=dtype)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 3).to(dtype)
    info = torch.iinfo(dtype)
    low, high = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(low, high, shape, generator=g).to(dtype)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (so NaNs and float8 compare too)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def _craft(path, header, buffer: bytes = b"", raw_header: bytes | None = None) -> None:
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + buffer)


@pytest.mark.parametrize("name", list(DTYPES))
def test_round_trip_every_dtype(tmp_path, name):
    dtype = DTYPES[name]
    tensors = {
        "x": _sample(dtype),
        "scalar": _sample(dtype, ()),
        "empty": _sample(dtype, (0, 5)),
        "one": _sample(dtype, (1,)),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, path)
    loaded = load_file(path)
    assert set(loaded) == set(tensors)
    for key, tensor in tensors.items():
        assert _same(loaded[key], tensor), key
        assert loaded[key].device.type == "cpu"


def test_round_trip_mixed_noncontiguous_and_shared(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {
        "t": base.t(),  # non-contiguous
        "view": base[1],  # shares storage with base
        "base": base,
        "bf16": torch.randn(5, 3).to(torch.bfloat16),
        "mask": torch.tensor([True, False, True]),
        "step": torch.tensor(7, dtype=torch.int64),
        "weight.ünïcode": torch.ones(2, dtype=torch.float16),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, path, metadata={"format": "pt", "note": "héllo {json}"})
    loaded = load_file(path)
    for key, tensor in tensors.items():
        assert _same(loaded[key], tensor.contiguous()), key
    assert load_metadata(path) == {"format": "pt", "note": "héllo {json}"}
    save_file({"a": torch.zeros(1)}, path)
    assert load_metadata(path) == {}


def test_byte_layout_matches_reference(tmp_path):
    """Bytes worked out by hand from the format (and equal to the reference implementation's own tests)."""
    path = tmp_path / "a.safetensors"
    save_file({"attn.0": torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)}, path)
    assert path.read_bytes() == (
        b"\x40\x00\x00\x00\x00\x00\x00\x00"  # header length 64, no padding needed
        b'{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'
        b"\x00\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40\x00\x00\xa0\x40"
    )
    save_file({"attn0": torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3)}, path)
    assert path.read_bytes()[:80] == (
        b"\x48\x00\x00\x00\x00\x00\x00\x00"  # 65 bytes of JSON padded with 7 spaces to 72
        b'{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       '
    )
    save_file({}, path, metadata={"framework": "pt"})
    assert path.read_bytes() == b'\x28\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{"framework":"pt"}}     '
    save_file({}, path)
    assert path.read_bytes() == b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "


def test_layout_sorted_by_dtype_then_name(tmp_path):
    path = tmp_path / "o.safetensors"
    save_file({"b": torch.tensor([1, -1], dtype=torch.int8), "a": torch.tensor([1.0], dtype=torch.float16)}, path)
    assert path.read_bytes() == (
        b"\x70\x00\x00\x00\x00\x00\x00\x00"  # 106 bytes of JSON + 6 spaces
        b'{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"b":{"dtype":"I8","shape":[2],"data_offsets":[2,4]}}'
        b"      "
        b"\x00\x3c\x01\xff"  # float16 1.0, then int8 1, -1
    )
    save_file({"z": torch.zeros(1), "y": torch.zeros(1), "d": torch.zeros(1, dtype=torch.float64)}, path)
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    assert [k for k in header] == ["d", "y", "z"]  # F64 (8-byte) before F32 (4-byte), then by name


def test_save_refuses_bad_input(tmp_path):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(TypeError, match="'w'"):
        save_file({"w": [1.0, 2.0]}, path)
    with pytest.raises(TypeError, match="'c'"):
        save_file({"c": torch.zeros(2, dtype=torch.complex128)}, path)
    with pytest.raises(TypeError, match="names must be str"):
        save_file({3: torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="__metadata__"):
        save_file({"__metadata__": torch.zeros(1)}, path)
    with pytest.raises(TypeError, match="'step'"):
        save_file({"w": torch.zeros(1)}, path, metadata={"step": 3})
    with pytest.raises(TypeError, match="tensors must be a dict"):
        save_file([torch.zeros(1)], path)
    assert not path.exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(3)}, path)

    def crash(fd):
        raise OSError("power cut")

    monkeypatch.setattr(safetensors.os, "fsync", crash)
    with pytest.raises(OSError, match="power cut"):
        save_file({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_file(path)["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["w.safetensors"]  # no temporary file left behind


def _good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    save_file({"a": torch.arange(4, dtype=torch.float32), "b": torch.ones(2, dtype=torch.int16)}, path)
    return path


def test_refuses_truncated_and_bad_header_length(tmp_path):
    data = _good_file(tmp_path).read_bytes()
    path = tmp_path / "bad.safetensors"
    cases = [
        (data[:-1], "outside"),  # truncated buffer: the last tensor runs past the end
        (data[:5], "shorter than"),  # not even the length
        (data[:40], "past the end"),  # truncated header
        (struct.pack("<Q", 100_000_001) + data[8:], "above the limit"),
        (struct.pack("<Q", 2**64 - 1) + data[8:], "above the limit"),
        (data + b"\x00", "cover"),  # trailing bytes after the last tensor
    ]
    for content, message in cases:
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"bad.safetensors.*{message}"):
            load_file(path)
        with pytest.raises(ValueError, match="bad.safetensors"):
            load_metadata(path)


def test_refuses_bad_entries(tmp_path):
    path = tmp_path / "bad.safetensors"
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    cases = [
        ({"w": {**f32, "data_offsets": [0, 16]}}, 8, "'w'.*outside"),  # offsets out of range
        ({"w": {**f32, "data_offsets": [8, 0]}}, 8, "'w'.*outside"),
        ({"w": {**f32, "dtype": "F128"}}, 8, "'w'.*dtype"),
        ({"w": {**f32, "dtype": 5}}, 8, "'w'.*dtype"),
        ({"w": {**f32, "shape": [-2]}}, 8, "'w'.*shape"),
        ({"w": {**f32, "shape": [2.0]}}, 8, "'w'.*shape"),
        ({"w": {**f32, "shape": 2}}, 8, "'w'.*shape"),
        ({"w": {**f32, "shape": [3]}}, 8, "'w'.*needs 12"),  # end - begin != numel * itemsize
        ({"w": {**f32, "data_offsets": [0, True]}}, 8, "'w'.*data_offsets"),
        ({"w": {"dtype": "F32", "shape": [2]}}, 8, "'w'.*exactly"),
        ({"w": [1, 2]}, 8, "'w'"),
        ({"w": f32, "v": {**f32, "data_offsets": [4, 12]}}, 12, "'v'.*overlap"),  # overlapping
        ({"w": f32, "v": f32}, 8, "overlap"),  # the same bytes twice
        ({"w": {**f32, "data_offsets": [4, 12]}}, 12, "'w'.*hole"),  # a gap before the first tensor
        ({"__metadata__": {"k": 1}, "w": f32}, 8, "__metadata__"),
        ({"__metadata__": ["x"], "w": f32}, 8, "__metadata__"),
    ]
    for header, size, message in cases:
        _craft(path, header, bytes(size))
        with pytest.raises(ValueError, match=f"bad.safetensors.*{message}"):
            load_file(path)


def test_refuses_bad_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    for raw, message in [
        (b"[1, 2]  ", "JSON object"),
        (b"{not json", "not valid JSON"),
        (b'{"a": \xff}  ', "UTF-8"),
        (b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
         "duplicate key 'w'"),
    ]:  # fmt: skip
        _craft(path, None, b"\x00", raw_header=raw)
        with pytest.raises(ValueError, match=f"bad.safetensors.*{message}"):
            load_file(path)


def test_refuses_bool_bytes_other_than_0_1(tmp_path):
    path = tmp_path / "bad.safetensors"
    _craft(path, {"m": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x02")
    with pytest.raises(ValueError, match="bad.safetensors.*'m'"):
        load_file(path)


def test_accepts_any_offset_order_and_unpadded_header(tmp_path):
    """Other writers may order entries freely and skip the padding: both are valid files."""
    path = tmp_path / "other.safetensors"
    header = {
        "late": {"dtype": "U8", "shape": [3], "data_offsets": [4, 7]},
        "early": {"dtype": "I16", "shape": [2], "data_offsets": [0, 4]},
        "none": {"dtype": "F32", "shape": [0, 3], "data_offsets": [7, 7]},
    }
    _craft(path, header, struct.pack("<hh", -2, 300) + b"\x01\x02\x03", raw_header=json.dumps(header).encode() + b"\n")
    loaded = load_file(path)
    assert loaded["early"].tolist() == [-2, 300] and loaded["late"].tolist() == [1, 2, 3]
    assert loaded["none"].shape == (0, 3)
