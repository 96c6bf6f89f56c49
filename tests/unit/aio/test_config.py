"""NodeConfig checks itself; a Node runs the signed directory unless it is given another."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.aio import (
    DirectoryService,
    Node,
    NodeConfig,
    NodeLimits,
    NodeTimers,
    Peer,
    TlsFiles,
)
from exchnode.core import StaticDirectory
from exchnode.errors import UsageError
from exchnode.federation import Relation
from exchnode.testing import IssuedNode, SyntheticPKI

PARENT = Peer(name="520100", relation=Relation.PARENT, url="https://127.0.0.1:7443")
CHILD = Peer(name="520102", relation=Relation.CHILD, url="https://127.0.0.1:7444")


def test_defaults_listen_on_a_free_loopback_port_with_no_neighbours() -> None:
    config = NodeConfig()
    assert config.peers == ()
    assert config.listen == ("127.0.0.1", 0)
    assert config.limits == NodeLimits()
    assert config.timers == NodeTimers()
    assert config.advertised_url == ""


def test_peers_become_a_tuple_and_the_config_a_value() -> None:
    config = NodeConfig(peers=[PARENT, CHILD])
    assert config.peers == (PARENT, CHILD)
    assert config == NodeConfig(peers=(PARENT, CHILD))
    assert hash(config) == hash(NodeConfig(peers=(PARENT, CHILD)))


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"peers": [PARENT, PARENT]}, "520100 is listed twice"),
        ({"peers": PARENT}, "not one Peer"),
        ({"peers": ["520100"]}, "Peer values"),
        ({"listen": ("127.0.0.1", 70000)}, "listen"),
        ({"listen": "127.0.0.1:7443"}, "listen"),
        ({"advertise": "http://10.0.0.1:7443"}, "advertise"),
        ({"advertise": "https://10.0.0.1"}, "advertise"),
        ({"limits": NodeTimers()}, "limits must be a NodeLimits"),
        ({"timers": None}, "timers must be a NodeTimers"),
    ],
)
def test_a_bad_setting_is_refused_by_name(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        NodeConfig(**settings)  # type: ignore[arg-type]


def test_the_advertised_url_is_advertise_else_built_from_listen() -> None:
    assert NodeConfig(listen=("10.0.0.1", 7443)).advertised_url == "https://10.0.0.1:7443"
    assert NodeConfig(listen=None).advertised_url == ""
    config = NodeConfig(listen=("0.0.0.0", 7443), advertise="https://10.0.0.9:7443")
    assert config.advertised_url == "https://10.0.0.9:7443"


# --- which directory a node looks keys up in -------------------------------------------------


@pytest.fixture
def issued() -> IssuedNode:
    pki = SyntheticPKI()
    return pki.node("520000.tongji", pki.root("520000"))


def node(issued: IssuedNode, tmp_path: Path, **options: object) -> Node:
    pki = SyntheticPKI()
    return Node(
        identity=issued.identity,
        store=tmp_path / "node.sqlite",
        tls=TlsFiles(tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "verify.pem"),
        trust=pki.trust_store([pki.root("520000")]),
        config=NodeConfig(listen=("10.0.0.1", 7443), timers=NodeTimers(directory_refresh=5.0)),
        **options,  # type: ignore[arg-type]
    )


def test_by_default_the_node_runs_the_signed_directory(issued: IssuedNode, tmp_path: Path) -> None:
    first = node(issued, tmp_path)
    assert first.node_directory is not None
    assert first.directory is first.node_directory
    assert first.node_directory.address("520000.tongji", 0.0) == "https://10.0.0.1:7443"


def test_an_attached_directory_service_is_the_one_it_runs(
    issued: IssuedNode, tmp_path: Path
) -> None:
    config = NodeConfig(listen=("10.0.0.1", 7443))
    service = DirectoryService.for_node(issued.identity, config)
    attached = node(issued, tmp_path, services=[service])
    assert attached.directory is service.directory
    assert attached.node_directory is service.directory
    with pytest.raises(UsageError, match="not both"):
        node(issued, tmp_path, services=[service], directory=StaticDirectory([]))
    with pytest.raises(UsageError, match="one DirectoryService"):
        node(
            issued, tmp_path, services=[service, DirectoryService.for_node(issued.identity, config)]
        )


def test_a_static_directory_runs_no_directory_service(issued: IssuedNode, tmp_path: Path) -> None:
    static = StaticDirectory([issued.identity.peer])
    closed = node(issued, tmp_path, directory=static)
    assert closed.directory is static
    assert closed.node_directory is None


def test_config_must_be_a_node_config(issued: IssuedNode, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="NodeConfig"):
        Node(
            identity=issued.identity,
            store=tmp_path / "node.sqlite",
            tls=TlsFiles(tmp_path / "c", tmp_path / "k", tmp_path / "v"),
            trust=SyntheticPKI().trust_store([]),
            config={"listen": None},  # type: ignore[arg-type]
        )


def test_directory_lookup_timers_reach_the_directory_service(issued: IssuedNode) -> None:
    config = NodeConfig(timers=NodeTimers(directory_lookup_timeout=1.5, directory_negative_ttl=0.0))
    service = DirectoryService.for_node(issued.identity, config)
    assert (service.lookup_timeout, service.negative_ttl) == (1.5, 0.0)
    with pytest.raises(UsageError, match="directory_negative_ttl must be 0 or more"):
        NodeTimers(directory_negative_ttl=-1.0)
    with pytest.raises(UsageError, match="directory_lookup_timeout must be a positive number"):
        NodeTimers(directory_lookup_timeout=0.0)
