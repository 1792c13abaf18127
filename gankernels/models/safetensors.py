"""The safetensors file format, read and written without the `safetensors` package (and never with pickle).

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header length N; N bytes
of UTF-8 JSON, padded with spaces to a multiple of 8, mapping each tensor name to {"dtype", "shape",
"data_offsets": [begin, end]} (offsets relative to the byte buffer), plus an optional "__metadata__" of str -> str;
then the byte buffer: every tensor's data, C order, little-endian, covering the buffer exactly with no holes or
overlaps. `save_file` lays tensors out as the reference writer does (by descending dtype, then by name), so its
files are byte-identical to the reference's; `load_file` checks the whole header against the file's size before it
reads any data.
"""

from __future__ import annotations

import json
import os
import struct
import sys

import torch

from .._io import atomic_write

MAX_HEADER_SIZE = 100_000_000  # as the reference implementation

# name -> torch dtype, in the order of the reference's Dtype enum (its writer sorts by it, descending, then by name)
_DTYPE_ORDER = [
    ("BOOL", "bool"),
    ("U8", "uint8"),
    ("I8", "int8"),
    ("F8_E5M2", "float8_e5m2"),
    ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E8M0", "float8_e8m0fnu"),
    ("F8_E4M3FNUZ", "float8_e4m3fnuz"),
    ("F8_E5M2FNUZ", "float8_e5m2fnuz"),
    ("I16", "int16"),
    ("U16", "uint16"),
    ("F16", "float16"),
    ("BF16", "bfloat16"),
    ("I32", "int32"),
    ("U32", "uint32"),
    ("F32", "float32"),
    ("C64", "complex64"),
    ("F64", "float64"),
    ("I64", "int64"),
    ("U64", "uint64"),
]
# only the dtypes this torch has (the unsigned and float8 ones are recent)
DTYPES = {
    name: getattr(torch, attr) for name, attr in _DTYPE_ORDER if isinstance(getattr(torch, attr, None), torch.dtype)
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_RANK = {name: i for i, (name, _) in enumerate(_DTYPE_ORDER)}


def _tensor_bytes(tensor: torch.Tensor):
    """A contiguous CPU tensor's bytes as a numpy uint8 view (no copy): written from, or read into."""
    return tensor.reshape(-1).view(torch.uint8).numpy()


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write `tensors` (str -> torch.Tensor, any device, layout or dtype in DTYPES) and optional `metadata`
    (str -> str) to `path` as a safetensors file, atomically (temporary file in the same directory, fsync, rename).

    Each tensor is stored as a contiguous CPU copy; tensors that share storage are simply stored twice.
    """
    if sys.byteorder != "little":
        raise NotImplementedError("safetensors files are little-endian; this host is big-endian")
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of str -> torch.Tensor, got {type(tensors).__name__}")
    prepared = []
    for key, tensor in tensors.items():
        if not isinstance(key, str):
            raise TypeError(f"tensor names must be str, got {key!r}")
        if key == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensors[{key!r}] must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype not in _NAMES:
            raise TypeError(f"tensors[{key!r}] has dtype {tensor.dtype}, which safetensors cannot store")
        if tensor.layout != torch.strided:
            raise TypeError(f"tensors[{key!r}] has layout {tensor.layout}; only dense tensors can be stored")
        # clone: .contiguous() keeps odd strides of size-1 dimensions (e.g. 0), which the byte view below refuses
        prepared.append((key, tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)))
    header = {}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict of str -> str, got {type(metadata).__name__}")
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
        header["__metadata__"] = dict(sorted(metadata.items()))

    # the reference order: descending dtype (so larger elements come first and stay aligned), then name
    prepared.sort(key=lambda item: (-_RANK[_NAMES[item[1].dtype]], item[0]))
    offset = 0
    for key, tensor in prepared:
        nbytes = tensor.numel() * tensor.element_size()
        header[key] = {
            "dtype": _NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    # compact JSON with UTF-8 kept as is, as serde_json writes it
    try:
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"tensor names and metadata must be valid Unicode (no lone surrogates): {e}") from None
    text += b" " * (-len(text) % 8)
    chunks = [struct.pack("<Q", len(text)), text]
    chunks += [_tensor_bytes(tensor) for _, tensor in prepared if tensor.numel() > 0]
    atomic_write(path, chunks)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {duplicate!r} in the header")
    return dict(pairs)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_header(path):
    """Parse and validate the header of the safetensors file at `path` against the file's size.

    -> (metadata dict, [(name, dtype name, shape, begin, end)] sorted by begin, start of the buffer in the file).
    """
    name = os.fspath(path)

    def bad(why: str) -> ValueError:
        return ValueError(f"{name}: not a valid safetensors file: {why}")

    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise bad(f"{file_size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_SIZE:
            raise bad(f"header length {n} is above the limit of {MAX_HEADER_SIZE} bytes")
        if 8 + n > file_size:
            raise bad(f"header length {n} runs past the end of the file ({file_size} bytes)")
        raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("the header is not UTF-8") from None
    if not text.startswith("{"):
        raise bad("the header is not a JSON object")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as e:  # json.JSONDecodeError or a duplicate key
        raise bad(f"the header is not valid JSON ({e})") from None

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("'__metadata__' must be an object of str -> str")
    buffer_size = file_size - 8 - n
    entries = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {key!r}: an entry must have exactly 'dtype', 'shape' and 'data_offsets'")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            known = ", ".join(DTYPES)
            raise bad(f"tensor {key!r}: unknown or unsupported dtype {dtype!r} (known: {known})")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise bad(f"tensor {key!r}: shape must be a list of non-negative ints, got {shape!r}")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
            raise bad(f"tensor {key!r}: data_offsets must be [begin, end] of non-negative ints, got {offsets!r}")
        begin, end = offsets
        if not begin <= end <= buffer_size:
            raise bad(f"tensor {key!r}: data_offsets {offsets} outside the {buffer_size}-byte buffer")
        numel = 1
        for d in shape:
            numel *= d  # Python ints: no overflow
        nbytes = numel * DTYPES[dtype].itemsize
        if end - begin != nbytes:
            raise bad(f"tensor {key!r}: data_offsets span {end - begin} bytes, but {dtype} {shape} needs {nbytes}")
        entries.append((key, dtype, shape, begin, end))

    # the tensors must tile the buffer exactly: no overlap, no hole, nothing after the last one
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for key, _, _, begin, end in entries:
        if begin < position:
            raise bad(f"tensor {key!r}: data_offsets [{begin}, {end}] overlap the previous tensor's data")
        if begin > position:
            raise bad(f"tensor {key!r}: a hole in the buffer before data_offsets [{begin}, {end}]")
        position = end
    if position != buffer_size:
        raise bad(f"the tensors cover {position} bytes of a {buffer_size}-byte buffer")
    return metadata, entries, 8 + n


def load_metadata(path) -> dict:
    """The "__metadata__" (str -> str) of the safetensors file at `path`, {} when it has none. Validates the header."""
    return _read_header(path)[0]


def load_file(path, device="cpu") -> dict:
    """Read every tensor of the safetensors file at `path` -> {name: tensor on `device`}, in file order.

    The header is validated against the file's size first (ValueError naming the path and the tensor); then each
    tensor is read straight into its own CPU tensor.
    """
    if sys.byteorder != "little":
        raise NotImplementedError("safetensors files are little-endian; this host is big-endian")
    _, entries, start = _read_header(path)
    name = os.fspath(path)
    device = torch.device(device)
    out = {}
    with open(path, "rb") as f:
        for key, dtype, shape, begin, end in entries:
            tensor = torch.empty(shape, dtype=DTYPES[dtype])
            if end > begin:
                f.seek(start + begin)
                if f.readinto(_tensor_bytes(tensor)) != end - begin:
                    raise ValueError(f"{name}: tensor {key!r}: the file ended early (did it change while reading?)")
                if dtype == "BOOL" and tensor.view(torch.uint8).max() > 1:
                    raise ValueError(f"{name}: tensor {key!r}: BOOL data holds bytes other than 0 and 1")
            out[key] = tensor.to(device)
    return out
