"""Minimal, dependency-free safetensors reader/writer (numpy + optional torch).

File format (https://github.com/huggingface/safetensors):
  * 8 bytes: little-endian u64 N = length of the JSON header,
  * N bytes: UTF-8 JSON object
        {"__metadata__": {"format": "pt", ...},            (string -> string)
         "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
    padded with trailing spaces so that 8 + N is a multiple of 8,
  * the raw little-endian tensor bytes; data_offsets are relative to the start of
    this data section.

The writer is deterministic: header keys and tensor data are written in sorted
name order ("__metadata__" first), the JSON is compact, the tensors are packed
contiguously without gaps.  Writing the same tensors twice gives identical bytes.

An "entry" is a tuple (dtype: str, shape: tuple[int, ...], data: bytes).
"""

import json
import struct

import numpy as np

# safetensors dtype string -> (numpy dtype used to hold the raw bytes, item size)
_RAW_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),      # raw bits, see bf16_* helpers
    "F8_E4M3": np.dtype("u1"),    # raw bits, see e4m3_* helpers
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
}


def dtype_itemsize(dtype):
    return _RAW_DTYPES[dtype].itemsize


def _numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


# --------------------------------------------------------------------------- #
# Writer / reader
# --------------------------------------------------------------------------- #
def serialize(tensors, metadata=None):
    """tensors: dict name -> (dtype, shape, bytes). Returns the file bytes."""
    meta = {"format": "pt"}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise TypeError("safetensors metadata values must be strings: %r" % (k,))
            meta[k] = v
    header = {"__metadata__": dict(sorted(meta.items()))}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("reserved tensor name")
        dtype, shape, data = tensors[name]
        shape = [int(s) for s in shape]
        if dtype not in _RAW_DTYPES:
            raise ValueError("unsupported dtype %s for %s" % (dtype, name))
        expect = _numel(shape) * dtype_itemsize(dtype)
        if len(data) != expect:
            raise ValueError("%s: %d bytes, expected %d for %s%s" % (name, len(data), expect, dtype, shape))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(bytes(data))
    hjson = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    pad = (-(8 + len(hjson))) % 8
    hjson += b" " * pad
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs)


def write_safetensors(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def parse(buf):
    """Returns (dict name -> (dtype, shape, bytes), metadata dict)."""
    if len(buf) < 8:
        raise ValueError("truncated safetensors file")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError("header length %d exceeds file size" % n)
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = memoryview(buf)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dtype = info["dtype"]
        shape = tuple(int(s) for s in info["shape"])
        b, e = info["data_offsets"]
        if not (0 <= b <= e <= len(data)):
            raise ValueError("%s: bad data_offsets %r" % (name, (b, e)))
        if e - b != _numel(shape) * dtype_itemsize(dtype):
            raise ValueError("%s: size mismatch" % name)
        out[name] = (dtype, shape, bytes(data[b:e]))
    return out, meta


def read_safetensors(path, with_metadata=False):
    with open(path, "rb") as f:
        buf = f.read()
    tensors, meta = parse(buf)
    return (tensors, meta) if with_metadata else tensors


# --------------------------------------------------------------------------- #
# bfloat16
# --------------------------------------------------------------------------- #
def bf16_decode(bits):
    """uint16 array of bf16 bit patterns -> float32 array."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def bf16_encode(x):
    """float array -> uint16 bf16 bit patterns (round to nearest even)."""
    u = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    rounded[nan] = 0x7FC0
    return rounded


# --------------------------------------------------------------------------- #
# float8 e4m3fn (OCP): 1 sign, 4 exponent (bias 7), 3 mantissa bits, no inf,
# S.1111.111 is NaN, max finite 448, subnormals m/8 * 2^-6.
# --------------------------------------------------------------------------- #
def _e4m3_table():
    t = np.zeros(256, dtype=np.float64)
    for code in range(256):
        s = -1.0 if code & 0x80 else 1.0
        e = (code >> 3) & 0xF
        m = code & 0x7
        if e == 0xF and m == 0x7:
            t[code] = np.nan
        elif e == 0:
            t[code] = s * (m / 8.0) * 2.0 ** -6
        else:
            t[code] = s * (1.0 + m / 8.0) * 2.0 ** (e - 7)
    return t


E4M3_TABLE = _e4m3_table()          # code -> value (float64, exact)
E4M3_MAX = 448.0
_E4M3_POS = E4M3_TABLE[:0x7F]       # codes 0x00..0x7E, non-negative, increasing


def e4m3_decode(codes):
    """uint8 array of e4m3fn codes -> float64 array (exact)."""
    return E4M3_TABLE[np.asarray(codes, dtype=np.uint8)]


def e4m3_encode(x):
    """float array -> uint8 e4m3fn codes, round-to-nearest-even, saturating to +-448.

    NaN inputs map to 0x7F.  (Inputs beyond 448 are clamped; the OCP "satfinite"
    convention used by DeepSeek's quantizer, which scales so |x| <= 448 anyway.)
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), E4M3_MAX)
    hi = np.searchsorted(_E4M3_POS, a, side="left")      # first code with value >= a
    hi = np.minimum(hi, len(_E4M3_POS) - 1)
    lo = np.maximum(hi - 1, 0)
    vhi = _E4M3_POS[hi]
    vlo = _E4M3_POS[lo]
    dlo = a - vlo
    dhi = vhi - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0) & (hi != lo))
    exact = vhi == a
    code = np.where(exact | pick_hi, hi, lo).astype(np.uint8)
    code = np.where(np.signbit(x), code | 0x80, code).astype(np.uint8)
    code[np.isnan(x)] = 0x7F
    return code


# --------------------------------------------------------------------------- #
# numpy / torch helpers
# --------------------------------------------------------------------------- #
_NP_TO_ST = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def entry_from_numpy(arr, dtype=None):
    """numpy array -> entry.  dtype overrides the stored type:
    "BF16" (rounds float input to bf16), "F8_E4M3" (expects uint8 codes)."""
    arr = np.asarray(arr)
    if dtype is None:
        dtype = _NP_TO_ST[arr.dtype]
    if dtype == "BF16":
        raw = bf16_encode(arr) if arr.dtype != np.uint16 else arr
    elif dtype == "F8_E4M3":
        if arr.dtype != np.uint8:
            raise TypeError("F8_E4M3 entries take uint8 codes; use e4m3_encode first")
        raw = arr
    else:
        raw = arr.astype(_RAW_DTYPES[dtype], copy=False)
    raw = np.ascontiguousarray(raw.astype(_RAW_DTYPES[dtype], copy=False))
    return (dtype, tuple(int(s) for s in arr.shape), raw.tobytes())


def entry_raw_numpy(entry):
    """entry -> numpy array of the raw stored element type (uint16 for BF16, uint8 for F8)."""
    dtype, shape, data = entry
    return np.frombuffer(data, dtype=_RAW_DTYPES[dtype]).reshape(shape)


def entry_to_numpy(entry):
    """entry -> numpy array of values: F8_E4M3 -> float64 (exact), BF16 -> float32,
    everything else its natural numpy type."""
    dtype = entry[0]
    raw = entry_raw_numpy(entry)
    if dtype == "F8_E4M3":
        return e4m3_decode(raw)
    if dtype == "BF16":
        return bf16_decode(raw)
    if dtype == "BOOL":
        return raw.astype(bool)
    return raw.copy()


def entry_to_torch(entry, dtype=None):
    import torch
    t = torch.from_numpy(np.ascontiguousarray(entry_to_numpy(entry)))
    return t.to(dtype) if dtype is not None else t


def entry_from_torch(t, dtype=None):
    return entry_from_numpy(t.detach().cpu().numpy(), dtype)


def load_numpy(path):
    """path -> dict name -> numpy array (values, see entry_to_numpy)."""
    return {k: entry_to_numpy(v) for k, v in read_safetensors(path).items()}
