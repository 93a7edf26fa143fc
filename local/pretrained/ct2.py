"""Reader of CTranslate2's ``model.bin`` (binary version 6, written by
CTranslate2 3.x and 4.x), without CTranslate2 itself.

Layout: uint32 version, spec name, uint32 revision, uint32 variable count,
then per variable its name, uint8 rank, uint32 dims, uint8 dtype id, uint32
byte count and the raw bytes; then uint32 alias count and (alias, target)
name pairs. Strings are uint16 length (with the trailing NUL) + bytes.
"""

import struct
from pathlib import Path
from typing import BinaryIO, Dict

import numpy as np

# CTranslate2's DataType enum order (ctranslate2/specs/model_spec.py).
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class CT2FormatError(ValueError):
    pass


def _unpack(f: BinaryIO, fmt: str, path: Path):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise CT2FormatError(f"{path}: truncated CTranslate2 model file")
    return struct.unpack("<" + fmt, data)


def _string(f: BinaryIO, path: Path) -> str:
    (length,) = _unpack(f, "H", path)
    raw = f.read(length)
    if len(raw) != length:
        raise CT2FormatError(f"{path}: truncated CTranslate2 model file")
    return raw[:-1].decode("utf-8")


def read_ct2(path: str) -> Dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model file by its spec name
    (``encoder/layer_0/self_attention/linear_0/weight``); aliases resolve to
    the array they name. bfloat16 variables come back as float32."""
    path = Path(path)
    with open(path, "rb") as f:
        (version,) = _unpack(f, "I", path)
        if version != 6:
            raise CT2FormatError(f"{path}: CTranslate2 binary version {version} is not supported (6)")
        spec = _string(f, path)
        _unpack(f, "I", path)  # spec revision
        (count,) = _unpack(f, "I", path)
        variables = {}
        for _ in range(count):
            name = _string(f, path)
            (rank,) = _unpack(f, "B", path)
            shape = _unpack(f, f"{rank}I", path) if rank else ()
            (dtype_id,) = _unpack(f, "B", path)
            (num_bytes,) = _unpack(f, "I", path)
            raw = f.read(num_bytes)
            if len(raw) != num_bytes:
                raise CT2FormatError(f"{path}: truncated at variable {name}")
            if dtype_id >= len(DTYPES):
                raise CT2FormatError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            if DTYPES[dtype_id] == "bfloat16":
                bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
                array = bits.view(np.float32)
            else:
                array = np.frombuffer(raw, dtype=DTYPES[dtype_id])
            variables[name] = array.reshape(shape)
        (num_aliases,) = _unpack(f, "I", path)
        for _ in range(num_aliases):
            alias, target = _string(f, path), _string(f, path)
            variables[alias] = variables[target]
    if not variables:
        raise CT2FormatError(f"{path}: no variables in spec {spec}")
    return variables
