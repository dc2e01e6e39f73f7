"""Arrow ↔ NumPy for the columns Tandem stores, without importing pandas.

pyarrow imports pandas, when it is installed, on its first NumPy conversion in either
direction (``Array.to_numpy``, ``pa.array(ndarray)``, ``pa.table(dict)``): it probes for
pandas types. That import costs ~0.3–0.5 s of every process and ~45 MB of resident memory,
although none of these conversions needs pandas. The columns Tandem stores are int64,
float64, timestamps and strings; here they are read from and written to Arrow's buffers
directly, which pyarrow does without the probe (and, for numbers, without a copy).
Anything else falls back to pyarrow's own conversion.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: Arrow type name -> NumPy dtype of the fixed-width types read from their data buffer.
_FIXED = {"int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
          "double": np.float64}


def arrow_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An Arrow column as NumPy: signed integers and float64 without nulls straight from the data
    buffers (a view when it has one chunk), strings without nulls as an object array of
    ``str``; other types and columns with nulls through ``to_numpy`` (pandas may load)."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    kind = str(column.type)
    if column.null_count == 0 and kind in ("string", "large_string"):
        return np.array(column.to_pylist(), dtype=object)
    dtype = _FIXED.get(kind)
    if dtype is None or column.null_count:
        return column.to_numpy(zero_copy_only=False)  # an Array with nulls: NaN, no error
    size = np.dtype(dtype).itemsize
    parts = [np.frombuffer(c.buffers()[1], dtype=dtype, count=len(c), offset=c.offset * size)
             for c in chunks if len(c)]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def numpy_to_arrow(values: np.ndarray | Sequence[Any], type_: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``type_`` (no nulls): int64/float64 from the NumPy
    buffer, strings from their UTF-8 bytes; other types through ``pa.array``."""
    import pyarrow as pa

    kind = str(type_)
    if kind in ("int64", "double"):
        data = np.ascontiguousarray(values, dtype=_FIXED[kind])
        return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])
    if kind == "string":
        texts = values.tolist() if isinstance(values, np.ndarray) else list(values)
        if not all(isinstance(v, str) for v in texts):  # None/NaN must not become "None"/"nan"
            bad = next(v for v in texts if not isinstance(v, str))
            raise TypeError(f"a text column holds {bad!r} ({type(bad).__name__}), not a string")
        encoded = [v.encode() for v in texts]
        ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        if len(ends) and ends[-1] > np.iinfo(np.int32).max:  # past 32-bit offsets: pyarrow's way
            return pa.array(texts, type=type_)
        offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
        offsets[1:] = ends
        return pa.Array.from_buffers(type_, len(encoded), [
            None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
    return pa.array(values, type=type_)


def table_from_columns(columns: Mapping[str, Any], schema: pa.Schema) -> pa.Table:
    """An Arrow table of ``schema`` from one sequence of values per field (no nulls)."""
    import pyarrow as pa

    return pa.Table.from_arrays(
        [numpy_to_arrow(columns[f.name], f.type) for f in schema], schema=schema)


def column_values(table: pd.DataFrame | pa.Table | Mapping[str, Any], name: str) -> np.ndarray:
    """Column ``name`` of an Arrow table, a pandas frame or a mapping of columns as NumPy
    (strings: objects)."""
    pa = sys.modules.get("pyarrow")  # not loaded: it cannot be an Arrow table
    if pa is not None and isinstance(table, pa.Table):
        return arrow_to_numpy(table.column(name))
    return np.asarray(table[name])
