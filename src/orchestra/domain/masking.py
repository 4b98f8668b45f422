"""Secret values hidden in a run's output: each occurrence replaced by as many asterisks as it
has bytes, so that the log's offsets stay those the worker reported."""

from __future__ import annotations

from collections.abc import Iterable


def mask_values(values: Iterable[str]) -> tuple[bytes, ...]:
    """The byte strings to look for, longest first (a value holding a shorter one is masked
    whole), empty and repeated values left out."""
    found = {v.encode("utf-8") for v in values if v}
    return tuple(sorted(found, key=len, reverse=True))


def mask(data: bytes, masks: Iterable[bytes]) -> bytes:
    """`data` with every occurrence of each of `masks` replaced by asterisks."""
    masked: bytearray | None = None
    for value in masks:
        start = (masked if masked is not None else data).find(value)
        if start < 0:
            continue
        if masked is None:
            masked = bytearray(data)
        while start >= 0:
            masked[start : start + len(value)] = b"*" * len(value)
            start = masked.find(value, start + len(value))
    return data if masked is None else bytes(masked)
