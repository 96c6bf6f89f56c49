"""``exchnode simulate``: whole federations in one process, under a simulated clock.

The library's real nodes and services (``exchnode.aio``) over an in-memory
network (:class:`MemoryNetwork`: the real aiohttp servers and clients over
in-memory transports that present each end's certificate as TLS does) and
in-memory stores, on an event loop whose time is virtual
(:class:`VirtualClockLoop`: it jumps to the next timer instead of waiting, and
runs no thread), deterministic from a seed, with faults on a schedule
(:func:`load_schedule`: a node down and up, a link cut, a partition, a slow
link).  :func:`simulate` runs a :class:`Scenario` -- by default a province
from its GB/T 2260 division list (:func:`province_topology`; Guizhou ``52``
ships) -- and returns a :class:`Report`: per node (state bytes, bytes sent
and received, CPU), per link (bytes each way, connections, transfers), the
messages (every one sent delivered exactly once, or not) and how long the
federation took to converge and to catch up after each fault.

Tests use it for fault schedules; operators for "what happens to my
province if city hub 520100 is down for six hours" (``python -m exchnode.sim``,
``exchnode simulate``).  Never for production traffic: keys are synthetic.
"""

from __future__ import annotations

from exchnode.sim._clock import CURRENT_NODE, SimulationStalled, VirtualClockLoop
from exchnode.sim._faults import FAULT_KINDS, Fault, load_schedule, parse_duration, parse_schedule
from exchnode.sim._network import LinkFigures, MemoryNetwork, NodeEndpoint
from exchnode.sim._report import (
    CatalogReport,
    LinkReport,
    MessageReport,
    NodeReport,
    RecoveryReport,
    Report,
)
from exchnode.sim._runner import (
    SERVICES,
    SIMULATION_TIMERS,
    Scenario,
    Simulation,
    deep_size,
    simulate,
)
from exchnode.sim._topology import (
    DEPARTMENTS,
    Division,
    Topology,
    department_names,
    load_divisions,
    province_topology,
)

__all__ = [
    "CURRENT_NODE",
    "DEPARTMENTS",
    "FAULT_KINDS",
    "SERVICES",
    "SIMULATION_TIMERS",
    "CatalogReport",
    "Division",
    "Fault",
    "LinkFigures",
    "LinkReport",
    "MemoryNetwork",
    "MessageReport",
    "NodeEndpoint",
    "NodeReport",
    "RecoveryReport",
    "Report",
    "Scenario",
    "Simulation",
    "SimulationStalled",
    "Topology",
    "VirtualClockLoop",
    "deep_size",
    "department_names",
    "load_divisions",
    "load_schedule",
    "parse_duration",
    "parse_schedule",
    "province_topology",
    "simulate",
]
