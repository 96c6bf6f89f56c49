"""A small cast of nodes across levels, with fixed keys and a fixed clock."""

from __future__ import annotations

NOW = 1_795_000_000.0  # a fixed instant (2026-11-18); the core never reads the clock

SENDER = "520102.gongan"  # a county department in Guiyang
RECIPIENT = "522301.minzheng"  # a county department in another prefecture
OTHER = "520100.fagai"  # a city department
HUB = "520100"  # the Guiyang city hub
