"""Feast's online encodings, for whole columns at once: serialized entity keys and serialized ValueProtos.

The bytes are exactly those Feast 0.67 writes (``feast.infra.key_encoding_utils.serialize_entity_key`` version 3 and
``ValueProto.SerializeToString()`` of ``feast.type_map.python_values_to_proto_values``), built with numpy instead of
one protobuf object per value:

* entity key, one int64 join key: ``<I 1`` ``<I STRING`` ``<I len(name)`` name ``<I INT64`` ``<I 8`` ``<q value``
* int64 feature: tag 0x20 (field 4 ``int64_val``, varint) + the value as an unsigned 64-bit varint
* float32 feature: tag 0x35 (field 6 ``float_val``, fixed32) + 4 little-endian bytes; NaN or null -> ``b""`` (unset)
* float32 list: tag 0x82 0x01 (field 16 ``float_list_val``) + varint length + [0x0a + varint 4n + n floats]
* int64 list: tag 0x72 (field 14 ``int64_list_val``) + varint length + [0x0a + varint m + the n values as packed
  unsigned 64-bit varints, m bytes in all]; the empty list is ``0x72 0x00``
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.protos.feast.types.Value_pb2 import ValueType as ProtoValueType

from feature_repo.catalog import CREATED_TIMESTAMP, EVENT_TIMESTAMP, ValueType, ViewSpec

SUPPORTED_KEY_VERSION = 3
INT64_TAG = b"\x20"
FLOAT_TAG = b"\x35"
FLOAT_LIST_TAG = b"\x82\x01"
INT64_LIST_TAG = b"\x72"
PACKED_VALUES_TAG = b"\x0a"
MAX_VARINT_BYTES = 10


def varint(value: int) -> bytes:
    """Protobuf varint of a non-negative int."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def split_fixed(matrix: np.ndarray) -> list[bytes]:
    """The rows of a 2-D uint8 matrix as bytes objects."""
    blob, width = matrix.tobytes(), matrix.shape[1]
    return [blob[start : start + width] for start in range(0, len(blob), width)]


def split_ragged(matrix: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """The first ``lengths[i]`` bytes of each row of a 2-D uint8 matrix, as bytes objects."""
    blob = matrix[np.arange(matrix.shape[1])[None, :] < lengths[:, None]].tobytes()
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]
    return [blob[start:end] for start, end in zip(starts, ends, strict=True)]


def entity_keys(join_key: str, values: np.ndarray, version: int) -> list[bytes]:
    """Serialized entity keys of int64 join key values (Feast's ``serialize_entity_key``)."""
    if version != SUPPORTED_KEY_VERSION:
        raise ValueError(f"entity_key_serialization_version {version} is not supported; use {SUPPORTED_KEY_VERSION}")
    name = join_key.encode("utf8")
    prefix = struct.pack("<III", 1, ProtoValueType.STRING, len(name)) + name
    prefix += struct.pack("<II", ProtoValueType.INT64, 8)
    matrix = np.empty((len(values), len(prefix) + 8), dtype=np.uint8)
    matrix[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    matrix[:, len(prefix) :] = np.ascontiguousarray(values, dtype="<i8").view(np.uint8).reshape(-1, 8)
    return split_fixed(matrix)


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of int64 values (negatives as their unsigned 64-bit form, 10 bytes): a (n, 10) uint8 matrix
    whose row i starts with value i's varint, and each varint's length in bytes."""
    unsigned = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    groups = np.stack([(unsigned >> np.uint64(7 * k)) & np.uint64(0x7F) for k in range(MAX_VARINT_BYTES)], axis=1)
    more = np.stack([(unsigned >> np.uint64(7 * k)) != 0 for k in range(1, MAX_VARINT_BYTES)], axis=1)
    groups[:, :-1] |= more.astype(np.uint64) << np.uint64(7)
    return groups.reshape(-1, MAX_VARINT_BYTES).astype(np.uint8), 1 + more.sum(axis=1)


def _int64_values(column: pa.Array) -> list[bytes]:
    varints, n_bytes = _varints(column.to_numpy())
    matrix = np.empty((len(n_bytes), 1 + MAX_VARINT_BYTES), dtype=np.uint8)
    matrix[:, 0] = INT64_TAG[0]
    matrix[:, 1:] = varints
    return split_ragged(matrix, 1 + n_bytes)


def _int64_list_header(payload: int) -> bytes:
    inner = PACKED_VALUES_TAG + varint(payload) if payload else b""
    return INT64_LIST_TAG + varint(len(inner) + payload) + inner


def _int64_list_values(column: pa.Array) -> list[bytes]:
    if column.null_count:
        raise ValueError("null arrays cannot be encoded")
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    varints, n_bytes = _varints(flat)
    blob = varints[np.arange(MAX_VARINT_BYTES)[None, :] < n_bytes[:, None]].tobytes()  # every varint, in order
    element_ends = np.concatenate([[0], np.cumsum(n_bytes)])
    ends = element_ends[np.cumsum(pc.list_value_length(column).to_numpy())].tolist()
    starts = [0, *ends[:-1]] if ends else []
    # the header varies with each row's payload size, so rows are joined one by one (a few bytes of header each)
    return [_int64_list_header(end - start) + blob[start:end] for start, end in zip(starts, ends, strict=True)]


def _float32_values(column: pa.Array) -> list[bytes]:
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype="<f4")  # nulls come back as NaN
    matrix = np.empty((len(values), 5), dtype=np.uint8)
    matrix[:, 0] = FLOAT_TAG[0]
    matrix[:, 1:] = values.view(np.uint8).reshape(-1, 4)
    encoded = split_fixed(matrix)
    for index in np.flatnonzero(np.isnan(values)).tolist():  # Feast stores NaN and null as an unset Value
        encoded[index] = b""
    return encoded


def _float_list_header(length: int) -> bytes:
    inner = PACKED_VALUES_TAG + varint(4 * length) if length else b""
    return FLOAT_LIST_TAG + varint(len(inner) + 4 * length) + inner


def _float32_list_values(column: pa.Array) -> list[bytes]:
    if column.null_count:
        raise ValueError("null arrays cannot be encoded")
    lengths = pc.list_value_length(column).to_numpy()
    flat = np.ascontiguousarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype="<f4").view(np.uint8)
    distinct = np.unique(lengths).tolist()
    if len(distinct) == 1:  # the usual case: one embedding size, rows contiguous in ``flat``
        return _float32_lists_of_length(distinct[0], flat.reshape(len(column), -1))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    encoded: list[bytes] = [b""] * len(column)
    for length in distinct:
        rows = np.flatnonzero(lengths == length)
        row_bytes = flat[(4 * offsets[rows])[:, None] + np.arange(4 * length)[None, :]]
        for row, value in zip(rows.tolist(), _float32_lists_of_length(length, row_bytes), strict=True):
            encoded[row] = value
    return encoded


def _float32_lists_of_length(length: int, row_bytes: np.ndarray) -> list[bytes]:
    """Encode float lists of one length, given as a (rows, 4 * length) uint8 matrix of their little-endian floats."""
    header = np.frombuffer(_float_list_header(length), dtype=np.uint8)
    matrix = np.empty((row_bytes.shape[0], len(header) + 4 * length), dtype=np.uint8)
    matrix[:, : len(header)] = header
    matrix[:, len(header) :] = row_bytes
    return split_fixed(matrix)


ENCODERS = {
    ValueType.int64: _int64_values,
    ValueType.float32: _float32_values,
    ValueType.float32_list: _float32_list_values,
    ValueType.int64_list: _int64_list_values,
}


def feature_values(dtype: ValueType, column: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """Serialized ValueProtos of one feature column of a catalogue dtype."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return ENCODERS[dtype](column)


def value_texts(dtype: ValueType, column: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """The SQLite store's ``value_text`` of each value: ``str()`` of an int64 or float32 scalar, None otherwise."""
    if dtype in (ValueType.float32_list, ValueType.int64_list):
        return [None] * len(column)
    values = column.to_numpy(zero_copy_only=False) if isinstance(column, pa.Array) else column.to_numpy()
    if dtype is ValueType.float32:
        return [None if value != value else str(value) for value in values.astype(np.float32).tolist()]
    return [str(value) for value in values.tolist()]


@dataclass(frozen=True)
class OnlineBatch:
    """Latest rows of one feature view, one per entity, encoded for an online store.

    ``table`` holds the source rows (join key, timestamps, features); ``keys[i]`` and ``values[feature][i]`` are
    the serialized entity key and ValueProto of row i; timestamps are microseconds since the epoch, UTC.
    """

    spec: ViewSpec
    table: pa.Table
    keys: list[bytes]
    values: dict[str, list[bytes]]
    event_micros: np.ndarray
    created_micros: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def encode_batch(spec: ViewSpec, table: pa.Table, key_version: int) -> OnlineBatch:
    """Encode rows of a view (one per entity) the way Feast's materialization does."""
    return OnlineBatch(
        spec=spec,
        table=table,
        keys=entity_keys(spec.entity.join_key, table[spec.entity.join_key].to_numpy(), key_version),
        values={f.name: feature_values(f.dtype, table[f.name]) for f in spec.features},
        event_micros=table[EVENT_TIMESTAMP].cast(pa.int64()).to_numpy(),
        created_micros=table[CREATED_TIMESTAMP].cast(pa.int64()).to_numpy(),
    )
