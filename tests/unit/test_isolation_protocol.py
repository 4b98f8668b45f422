"""The isolation fields of `assign` (protocol/messages.py): left out when unset, so that a
worker older than them (which refuses fields it does not know) still takes plain runs."""

from __future__ import annotations

import json

import pytest

from orchestra.errors import ProtocolError
from orchestra.protocol import messages as m


def assignment(**fields: object) -> m.Assign:
    return m.Assign(
        run="0f0e0d0c-0b0a-4908-8706-050403020100",
        project="p",
        job="j",
        parameters={},
        workspace="j",
        steps=[m.AssignedStep(name="s", command=["true"])],
        abort_grace=10,
        url="http://127.0.0.1:8080",
        **fields,  # type: ignore[arg-type]
    )


def test_an_assignment_without_isolation_carries_no_isolation_fields() -> None:
    sent = json.loads(m.encode(assignment()))
    assert "sandbox" not in sent and "limits" not in sent
    assert m.decode_master_message(m.encode(assignment())) == assignment()


def test_an_assignment_with_isolation_carries_it_whole() -> None:
    sandbox = m.AssignedSandbox(network=False)
    limits = m.AssignedLimits(memory_mb=64, cpu_seconds=2)
    encoded = m.encode(assignment(sandbox=sandbox, limits=limits))
    assert json.loads(encoded)["sandbox"] == {"network": False}
    decoded = m.decode_master_message(encoded)
    assert isinstance(decoded, m.Assign)
    assert decoded.sandbox == sandbox and decoded.limits == limits


def test_a_limit_that_is_not_a_positive_whole_number_is_a_protocol_error() -> None:
    encoded = json.loads(m.encode(assignment()))
    for bad in ({"memory_mb": 0}, {"processes": -1}, {"open_files": 1.5}, {"nice": 1}):
        with pytest.raises(ProtocolError):
            m.decode_master_message(json.dumps({**encoded, "limits": bad}))
