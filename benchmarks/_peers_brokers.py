"""The peers' three-broker chains for ``benchmarks/peers.py``: RabbitMQ and NATS on loopback.

Private to the peers benchmark.  Each chain mirrors exchnode's 3-hop path: a
county broker where messages are published, a city broker, a province broker
where they are consumed, every message stored at each of them in turn.  Each
chain lives in one temporary folder (data, logs, configuration, the Erlang
cookie) removed by :meth:`Chain.stop`, which also kills every process it
started (see ``_peers_system``).  Nothing listens beyond 127.0.0.1.

**RabbitMQ** (:class:`RabbitChain`): three nodes ``county@localhost``,
``city@localhost``, ``province@localhost``, each with its own AMQP port,
distribution port, ``RABBITMQ_MNESIA_BASE``/``LOG_BASE``, ``rabbitmq.conf``
(with ``cluster_name``), enabled-plugins file (``rabbitmq_federation``, enabled
offline: the file is read at boot, no ``rabbitmq-plugins`` call) and an empty
``rabbitmq-env.conf`` so that ``/etc/rabbitmq`` cannot change them.  One
``epmd`` of our own on a private port (``ERL_EPMD_PORT``, loopback) serves the
three; ``HOME`` is the chain's folder, holding the ``.erlang.cookie``.  The
server script is Debian's ``/usr/lib/rabbitmq/bin/rabbitmq-server`` itself,
not the ``/usr/sbin`` wrapper, which as root re-runs it through ``su rabbitmq``
and drops this environment.  Everything the brokers need (a user, the durable
queue, the federation upstreams and policies) is a definitions file imported
at boot: no ``rabbitmqctl`` round trips, each of which starts an Erlang VM.

Federation: **exchange federation**, county -> city -> province, ``ack-mode:
on-confirm``.  The durable direct exchange ``exchnode.bench`` exists at all
three brokers; the city's is federated from the county's, the province's from
the city's (``max-hops`` 2), and the province binds the durable queue
``exchnode.bench`` that the consumer reads.  Each link keeps a durable queue
at its upstream (``federation: exchnode.bench -> city`` at the county,
``... -> province`` at the city), so every persistent message is stored at
the county (the publisher's confirm says so), then at the city, then at the
province, and each link acknowledges upstream only once the downstream broker
has confirmed it stored the message: custody moving hop by hop, as in
exchnode.  Queue federation was tried first (it *moves* messages between
same-named queues, the closer analogue) and does not chain: a federated queue
pulls from its upstream only for consumers that are not themselves federation
links, so the city's queue, whose only consumer is the province's link, never
asks the county for anything (measured: nothing left the county).  One
difference to keep in mind: a message published at the county while no link
has declared its queue there is routed nowhere; the driver sends probes until
one arrives at the province before it measures anything.

Erlang's schedulers busy-wait by default, which on a machine shared by three
VMs and the clients burns cores for nothing; every node runs with
``+sbwt none +sbwtdcpu none +sbwtdio none`` (RabbitMQ's advice for shared
hosts), as any operator sharing two cores would.

**NATS** (:class:`NatsChain`): three ``nats-server`` processes chained as leaf
nodes (county is a leaf of city, city a leaf of province), each with
JetStream in its own domain (``county``, ``city``, ``province``) on file
storage in the chain's folder.  The streams themselves are made by the
clients (``_peers_client.py``, role ``nats-setup``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from _peers_system import (
    Group,
    Unavailable,
    ensure_program,
    find_program,
    make_folder,
    remove_folder,
)

from exchnode.testing import free_port

LEVELS = ("county", "city", "province")
QUEUE = EXCHANGE = "exchnode.bench"  # AMQP exchange and queue, NATS subject
USER, PASSWORD = "bench", "bench"


def wait_listening(port: int, group: Group, timeout: float, what: str) -> None:
    """Until something accepts on 127.0.0.1:``port``; fails early if ``group`` died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if not group.alive():
            raise RuntimeError(f"{what} exited while starting:\n{group.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what} did not listen on {port} within {timeout:g} s:\n{group.tail()}"
            )
        time.sleep(0.1)


class Chain:
    """Brokers county -> city -> province in one folder; ``stop`` kills them and removes it."""

    system = ""

    def __init__(self, base: Path) -> None:
        self.folder = make_folder(f"exchnode-bench-peers-{self.system}-", base)
        self.groups: list[Group] = []
        self.ports: dict[str, int] = {}

    def wait_ready(self, timeout: float) -> None:
        """Until every broker listens for clients."""
        raise NotImplementedError

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far per broker (every process of its session, reaped children too)."""
        return {group.name: group.cpu_seconds() for group in self.groups}

    def alive(self) -> bool:
        return all(group.alive() for group in self.groups)

    def tails(self) -> dict[str, str]:
        return {group.name: group.tail() for group in self.groups}

    def stop(self) -> None:
        for group in self.groups:
            group.kill()
        remove_folder(self.folder)

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rabbit_password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + SHA-256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


class RabbitChain(Chain):
    system = "rabbitmq"

    def __init__(self, base: Path, erl_args: str | None = None, prefetch: int = 1000) -> None:
        server = ensure_program("rabbitmq-server", "rabbitmq-server", service="rabbitmq-server")
        # /usr/sbin/rabbitmq-server is Debian's wrapper (su rabbitmq as root): take the script
        # beside it, which is the server script itself on other installs too.
        self.script = server.resolve().parent / "rabbitmq-server"
        if not self.script.is_file():
            raise Unavailable(
                f"rabbitmq-server's script not found beside {server.resolve()}", kind="broken"
            )
        epmd = find_program("epmd", ["/usr/lib/erlang/bin"])
        if epmd is None:
            raise Unavailable(
                "epmd (Erlang) not found, though rabbitmq-server is installed", kind="broken"
            )
        self.prefetch = prefetch  # each link's unacknowledged messages (RabbitMQ's default)
        self.erl_args = "+sbwt none +sbwtdcpu none +sbwtdio none" if erl_args is None else erl_args
        super().__init__(base)
        home = self.folder / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        self.epmd_port = free_port()
        self.ports = {level: free_port() for level in LEVELS}
        self.env_common = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        try:
            epmd_group = Group(
                "epmd",
                [str(epmd), "-address", "127.0.0.1", "-port", str(self.epmd_port)],
                env=self.env_common,
                log=self.folder / "epmd.log",
                cwd=self.folder,
            )
            self.groups.append(epmd_group)
            wait_listening(self.epmd_port, epmd_group, 15, "epmd")
            for level in LEVELS:
                self.groups.append(self._start_node(level))
        except BaseException:
            self.stop()
            raise

    def uri(self, level: str) -> str:
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.ports[level]}/%2F"

    def _start_node(self, level: str) -> Group:
        folder = self.folder / level
        folder.mkdir()
        (folder / "enabled_plugins").write_text("[rabbitmq_federation].\n")
        (folder / "rabbitmq-env.conf").write_text("")
        (folder / "definitions.json").write_text(json.dumps(self._definitions(level), indent=1))
        (folder / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{self.ports[level]}",
                    f"cluster_name = {level}",
                    "loopback_users = none",
                    f"load_definitions = {folder / 'definitions.json'}",
                    "disk_free_limit.absolute = 50MB",
                    "log.file.level = warning",
                    "log.console = false",
                    "",
                ]
            )
        )
        env = {
            **self.env_common,
            "RABBITMQ_NODENAME": f"{level}@localhost",
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.ports[level]),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": self.erl_args,
        }
        return Group(
            f"rabbitmq-{level}",
            [str(self.script)],
            env=env,
            log=folder / "stdout.log",
            cwd=folder,
        )

    def _definitions(self, level: str) -> dict[str, Any]:
        """The user, the exchange, and this level's upstream and policy or (province) queue."""
        upstream = {"city": "county", "province": "city"}.get(level)
        definitions: dict[str, Any] = {
            "users": [
                {
                    "name": USER,
                    "password_hash": rabbit_password_hash(PASSWORD),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": ["administrator"],
                    "limits": {},
                }
            ],
            "vhosts": [{"name": "/"}],
            "permissions": [
                {"user": USER, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
            ],
            "exchanges": [
                {
                    "name": EXCHANGE,
                    "vhost": "/",
                    "type": "direct",
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
            ],
            "queues": [],
            "bindings": [],
            "parameters": [],
            "policies": [],
        }
        if level == "province":
            definitions["queues"].append(
                {
                    "name": QUEUE,
                    "vhost": "/",
                    "durable": True,
                    "auto_delete": False,
                    "arguments": {},
                }
            )
            definitions["bindings"].append(
                {
                    "source": EXCHANGE,
                    "vhost": "/",
                    "destination": QUEUE,
                    "destination_type": "queue",
                    "routing_key": QUEUE,
                    "arguments": {},
                }
            )
        if upstream is not None:
            definitions["parameters"].append(
                {
                    "component": "federation-upstream",
                    "vhost": "/",
                    "name": upstream,
                    "value": {
                        "uri": self.uri(upstream),
                        "ack-mode": "on-confirm",
                        "prefetch-count": self.prefetch,
                        "max-hops": 2,  # county -> city -> province
                        "reconnect-delay": 1,
                        "trust-user-id": False,
                    },
                }
            )
            definitions["policies"].append(
                {
                    "vhost": "/",
                    "name": "federate",
                    "pattern": "^exchnode\\.bench$",
                    "apply-to": "exchanges",
                    "definition": {"federation-upstream": upstream},
                    "priority": 0,
                }
            )
        return definitions

    def wait_ready(self, timeout: float) -> None:
        for group, level in zip(self.groups[1:], LEVELS, strict=True):
            wait_listening(self.ports[level], group, timeout, f"RabbitMQ {level}")


class NatsChain(Chain):
    system = "nats"

    def __init__(self, base: Path) -> None:
        server = ensure_program("nats-server", "nats-server", service="nats-server")
        super().__init__(base)
        self.ports = {level: free_port() for level in LEVELS}
        leaf = {level: free_port() for level in ("city", "province")}
        parent = {"county": "city", "city": "province"}
        try:
            for level in LEVELS:
                folder = self.folder / level
                folder.mkdir()
                lines = [
                    f"server_name: {level}",
                    f"listen: 127.0.0.1:{self.ports[level]}",
                    "max_payload: 1MB",
                    "jetstream {",
                    f"  store_dir: {json.dumps(str(folder / 'jetstream'))}",
                    f"  domain: {level}",
                    "  max_memory_store: 256MB",
                    "  max_file_store: 8GB",
                    "}",
                    "leafnodes {",
                ]
                if level in leaf:
                    lines.append(f"  listen: 127.0.0.1:{leaf[level]}")
                if level in parent:
                    lines.append(
                        f'  remotes: [ {{ url: "nats-leaf://127.0.0.1:{leaf[parent[level]]}" }} ]'
                    )
                lines.append("}")
                config = folder / "nats.conf"
                config.write_text("\n".join(lines) + "\n")
                self.groups.append(
                    Group(
                        f"nats-{level}",
                        [str(server), "-c", str(config)],
                        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                        log=folder / "server.log",
                        cwd=folder,
                    )
                )
        except BaseException:
            self.stop()
            raise

    def url(self, level: str) -> str:
        return f"nats://127.0.0.1:{self.ports[level]}"

    def wait_ready(self, timeout: float) -> None:
        for group, level in zip(self.groups, LEVELS, strict=True):
            wait_listening(self.ports[level], group, timeout, f"nats-server {level}")
