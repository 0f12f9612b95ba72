"""The recording file format: framed, zstd-compressed orjson chunks, crash-safe and seekable.

A session file is a sequence of chunks. Each chunk is

    MAGIC (4 bytes) | payload length (u32) | crc32 of payload (u32) | t_first (f64) | t_last (f64)
    | entry count (u32) | payload = zstd(orjson([[kind, t, data], ...]))

Entries are buffered and written as one chunk at most every second, then flushed, so a killed
run loses at most the last second, and a truncated or corrupt file reads up to its last whole
chunk. Seeking scans only the 32-byte chunk headers (tens of thousands per hour), never the
payloads. The first chunk holds one ``header`` entry with the schema version.
"""

from __future__ import annotations

import struct
import zlib

import orjson
import zstandard

MAGIC = b"APR\x01"
CHUNK_HEADER = struct.Struct("<4sIIddI")
SCHEMA_VERSION = 1

KIND_HEADER = "header"
KIND_FRAME = "frame"
KIND_RECORD = "record"
KIND_EVENT = "event"
KIND_ACTION = "action"
KIND_SUMMARY = "summary"
KIND_PHASE = "phase"


class RecordingError(ValueError):
    """A recording that cannot be read at all (not ours, or a newer schema)."""


def encode_chunk(entries: list[tuple[str, float, object]], compressor: zstandard.ZstdCompressor) -> bytes:
    payload = compressor.compress(orjson.dumps(entries, option=orjson.OPT_SERIALIZE_NUMPY))
    t_first = entries[0][1] if entries else 0.0
    t_last = entries[-1][1] if entries else 0.0
    header = CHUNK_HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), t_first, t_last, len(entries))
    return header + payload


def decode_payload(payload: bytes, crc: int, decompressor: zstandard.ZstdDecompressor) -> list[list]:
    if zlib.crc32(payload) != crc:
        raise ValueError("checksum mismatch")
    return orjson.loads(decompressor.decompress(payload))
