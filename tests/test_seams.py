"""The seams are complete: every implementation has every call of its protocol, with the
same parameters, so a flow that works on one target works on the other."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from flows.adapters.bigquery import BigQueryDatasets
from flows.adapters.duckdb_warehouse import DuckDBWarehouse
from flows.adapters.lake import Lake
from flows.adapters.targets import CloudTarget, LocalTarget, Target
from flows.core.lake_layout import LakeStore
from flows.core.loading import Warehouse

pytestmark = pytest.mark.unit


def protocol_members(protocol: type) -> dict[str, Any]:
    """The calls and attributes a protocol declares (not those of `object` or `Protocol`)."""
    names = {
        name
        for klass in protocol.__mro__
        if klass not in (object,) and klass.__module__.startswith("flows.")
        for name in (*vars(klass), *getattr(klass, "__annotations__", {}))
        if not name.startswith("_") or name in ("__enter__", "__exit__")
    }
    return {name: getattr(protocol, name, None) for name in sorted(names)}


def parameters(function: Any) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is not inspect.Parameter.VAR_POSITIONAL
    ]


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (Warehouse, DuckDBWarehouse),
        (Warehouse, BigQueryDatasets),
        (Target, LocalTarget),
        (Target, CloudTarget),
        (LakeStore, Lake),
    ],
)
def test_every_implementation_has_every_call_of_its_protocol(
    protocol: type, implementation: type
) -> None:
    members = protocol_members(protocol)
    assert len(members) >= 3
    fields = getattr(implementation, "__dataclass_fields__", {})
    for name, declared in members.items():
        assert hasattr(implementation, name) or name in fields, f"{implementation.__name__}.{name}"
        if callable(declared) and not isinstance(declared, property):
            # the protocol's parameters, in order, come first (an implementation may add
            # optional ones after them)
            wanted = parameters(declared)
            have = parameters(getattr(implementation, name))
            assert have[: len(wanted)] == wanted, f"{implementation.__name__}.{name}: {have}"


def test_retention_is_a_declared_capability() -> None:
    assert DuckDBWarehouse.supports_retention is True
    assert BigQueryDatasets.supports_retention is False
