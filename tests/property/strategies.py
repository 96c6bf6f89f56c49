"""Hypothesis strategies the property tests share."""

from __future__ import annotations

from hypothesis import strategies as st


def msgpack_values(*, max_leaves: int) -> st.SearchStrategy[object]:
    """Any value msgpack can carry, maps and floats included (the canonical subset refuses
    both): what a hostile peer may put in any field of a structure."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False)
        | st.text(max_size=20)
        | st.binary(max_size=40),
        lambda inner: st.lists(inner, max_size=14) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=max_leaves,
    )
