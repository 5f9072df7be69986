"""How long reads take a run's records out of a recorder: as plain rows, or packed
into a few values a page (no Python object made per record)."""

from __future__ import annotations

from typing import NamedTuple

LogRow = tuple[int, str, bytes]  # seq, type, stored bytes


class Packed(NamedTuple):
    """Consecutive records of one run packed into one value each: what an export reads
    without making a Python object per record."""

    first: int  # the first record's seq
    last: int
    records: int  # how many
    seqs: str  # the records' seqs, comma-separated, in the order their bytes are
    lengths: str  # each record's length in bytes, comma-separated
    data: bytes  # the records' bytes, one after another
    nul: bool  # a record starts with a NUL byte (is sealed)
