"""``audit trace --reach FILE``: the nodes an operator may ask beyond the local node folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.audit import Role
from exchnode.errors import UsageError
from exchnode.node.trace import read_reach_file


def test_entries_name_a_url_and_token_files_relative_to_the_file(tmp_path: Path) -> None:
    reach = tmp_path / "reach.toml"
    reach.write_text(
        '[[node]]\nname = "520102"\nurl = "http://10.1.0.2:8080"\n'
        'auditor_token_file = "reach/520102.auditor"\n'
        'operator_token_file = "reach/520102.operator"\n'
        '[[node]]\nname = "520100"\nurl = "http://10.1.0.1:8080"\n'
        'auditor_token_file = "/etc/exchnode/520100.auditor"\n'
    )
    hub, city = read_reach_file(reach)
    assert (hub.name, hub.url) == ("520102", "http://10.1.0.2:8080")
    assert hub.tokens == {
        Role.AUDITOR: tmp_path / "reach/520102.auditor",
        Role.OPERATOR: tmp_path / "reach/520102.operator",
    }
    assert city.tokens == {Role.AUDITOR: Path("/etc/exchnode/520100.auditor")}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", r"has no \[\[node\]\] entries"),
        ("[[node]]\nname = 1\n", r"node\[0\]: name is missing"),
        ('[[node]]\nname = "520102"\nurl = "http://x"\n', "auditor_token_file is missing"),
        ("[[node]\n", "is not TOML"),
    ],
)
def test_a_bad_reach_file_is_one_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    reach = tmp_path / "reach.toml"
    reach.write_text(text)
    with pytest.raises(UsageError, match=problem):
        read_reach_file(reach)


def test_a_missing_reach_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read .*nowhere\.toml"):
        read_reach_file(tmp_path / "nowhere.toml")
