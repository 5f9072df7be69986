"""Reading Arrow columns in the projections: a dictionary-coded text column as numbers,
a table's rows as tuples, an array with some places replaced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


class Coded:
    """A dictionary-coded text column of the timeline as numbers: each row's code in
    one dictionary, -1 where null; texts are compared once each, rows as numbers."""

    def __init__(self, column: pa.Array):
        self.codes = pc.fill_null(column.indices, -1) if column.null_count else column.indices
        self.code = {name: code for code, name in enumerate(column.dictionary.to_pylist())}

    def among(self, *names: str) -> pa.Array:
        found = None
        for code in {self.code[name] for name in names if name in self.code}:
            this = pc.equal(self.codes, code)
            found = this if found is None else pc.or_(found, this)
        return found if found is not None else pc.equal(self.codes, -2)

    def starts(self, *prefixes: str) -> pa.Array:
        return self.among(*(name for name in self.code if name.startswith(prefixes)))


def rows_of(table: pa.Table) -> Iterator[tuple[Any, ...]]:
    return zip(*(column.to_pylist() for column in table.columns), strict=True)


def counting(count: int) -> pa.Array:
    """0, 1, … count - 1."""
    return pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count),
                             start=pa.scalar(-1, pa.int64()))


def patched(values: pa.Array, patches: dict[int, Any]) -> pa.Array:
    """`values` with those at the places `patches` names replaced."""
    if not patches:
        return values
    places = sorted(patches)
    mask = pc.is_in(counting(len(values)), value_set=pa.array(places, pa.int64()))
    return pc.replace_with_mask(values, mask, pa.array([patches[p] for p in places],
                                                       values.type))
