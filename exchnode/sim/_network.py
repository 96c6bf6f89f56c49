"""An in-memory network: the nodes' real aiohttp servers and clients over simulated links.

Theory of operation
-------------------
A :class:`MemoryNetwork` holds the links of a federation (one per pair of
neighbours) and, for each node, a :class:`NodeEndpoint`: the
``exchnode.aio.Network`` a ``Node`` is given instead of TCP and TLS.  The
node's link server registers its aiohttp protocol factory with
:meth:`NodeEndpoint.listen`; its link clients get a connector
(:class:`_MemoryConnector`) that, instead of opening a socket, makes a pair of
in-memory transports between the client's ``ResponseHandler`` and a fresh
server protocol of the neighbour.  Everything above the transport -- HTTP,
the link protocol, custody, the services' endpoints -- is the library's own.

**Peer authentication.**  Each transport presents the certificate of the
node at its other end as ``get_extra_info("ssl_object").getpeercert(
binary_form=True)``, exactly what ``aio._tls.peer_certificate`` reads after a
real handshake, so the link server's ``authenticate`` (the name constraints,
the CRLs) and the client's check of the server's name run unchanged.  What
OpenSSL adds in a real handshake (chain to a root, CRLs of every CA) is not
simulated: the network presents only certificates the simulation issued.

**Links in virtual time.**  A byte written goes on its link in that
direction: the link is busy for ``size / bandwidth`` seconds per write (a
first-in, first-out queue shared by every connection on it), and arrives
``latency`` seconds after it has left.  Opening a connection costs two round
trips (TCP and the TLS 1.3 handshake).  Each receiving transport keeps its
own queue, delivered strictly in order and held while the protocol has
paused reading.  A link that is **cut** resets its open connections and
swallows new connection attempts until the client's timeout; a node that is
**down** (not listening) refuses them.

**Figures.**  Each link counts the bytes written each way (HTTP and what it
carries; the TLS records' overhead is not simulated), the connections
opened, and the requests by method and path (read from the request line a
client writes first on a connection or after each answer).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio import STREAM_PATH, TRANSFER_PATH
from exchnode.errors import UsageError

__all__ = ["LinkFigures", "MemoryNetwork", "NodeEndpoint"]

_HOST_SUFFIX = ".sim.invalid"
_PORT = 443


@dataclass(slots=True)
class LinkFigures:
    """What crossed one link: bytes each way, connections, requests by ``METHOD path``."""

    ends: tuple[str, str]
    sent: dict[str, int] = field(default_factory=dict)  # sender -> bytes
    connections: int = 0
    requests: dict[str, int] = field(default_factory=dict)  # "POST /exchnode/v1/transfer" -> n
    resets: int = 0
    #: seconds the link spent sending, per sender (its bandwidth's queue): how slow it is
    busy: dict[str, float] = field(default_factory=dict)


class _Link:
    """One link between two neighbours: its state (cut, latency, bandwidth) and its figures."""

    def __init__(self, a: str, b: str) -> None:
        self.ends = (a, b)
        self.latency = 0.0
        self.bandwidth: float | None = None  # bytes per second; None: unlimited
        self.cut = False
        self.busy_until: dict[str, float] = {a: 0.0, b: 0.0}
        self.transports: list[_MemoryTransport] = []
        self.figures = LinkFigures((a, b), {a: 0, b: 0}, busy={a: 0.0, b: 0.0})

    def departure(self, sender: str, size: int, now: float) -> float:
        """When the last byte of ``size`` bytes written now has left (the link's queue)."""
        if self.bandwidth is None:
            return now
        start = max(now, self.busy_until[sender])
        self.busy_until[sender] = start + size / self.bandwidth
        self.figures.busy[sender] += size / self.bandwidth
        return self.busy_until[sender]

    def reset(self) -> None:
        """Cut every open connection (both ends hear a reset)."""
        transports, self.transports = self.transports, []
        for transport in transports:
            if not transport.closed:
                self.figures.resets += 1
                transport.reset()


class _FrameCounter:
    """Counts the binary WebSocket frames a client writes (RFC 6455 §5.2): a transfer each.

    Only headers are kept: a payload's bytes are skipped as they pass.
    """

    def __init__(self, requests: dict[str, int]) -> None:
        self._requests = requests
        self._header = b""
        self._skip = 0  # payload bytes of the current frame still to pass

    def feed(self, chunk: bytes) -> None:
        while chunk:
            if self._skip:
                passed = min(self._skip, len(chunk))
                self._skip -= passed
                chunk = chunk[passed:]
                continue
            self._header += chunk
            chunk = b""
            header = self._header
            if len(header) < 2:
                return
            opcode, length, offset = header[0] & 0x0F, header[1] & 0x7F, 2
            if length in (126, 127):
                offset = 4 if length == 126 else 10
                if len(header) < offset:
                    return
                length = int.from_bytes(header[2:offset], "big")
            if header[1] & 0x80:
                offset += 4  # the mask key: every client frame has one
            if len(header) < offset:
                return
            if opcode == 0x2:
                key = f"POST {TRANSFER_PATH}"
                self._requests[key] = self._requests.get(key, 0) + 1
            self._header, chunk, self._skip = b"", header[offset:], length


class _PeerCertificate:
    """Stands where the TLS ``ssl_object`` is: only ``getpeercert(binary_form=True)``."""

    def __init__(self, der: bytes) -> None:
        self._der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | dict[str, Any]:
        if not binary_form:
            raise UsageError("the simulated network presents certificates in binary form only")
        return self._der


class _MemoryTransport(asyncio.Transport):
    """One end of an in-memory connection on a link (see the module docstring)."""

    def __init__(
        self,
        network: MemoryNetwork,
        link: _Link,
        local: NodeEndpoint,
        peer_certificate: bytes,
        *,
        client: bool,
    ) -> None:
        super().__init__()
        self._network = network
        self._link = link
        self._local = local
        self._ssl = _PeerCertificate(peer_certificate)
        self._client = client
        self._protocol: asyncio.BaseProtocol | None = None
        self.peer: _MemoryTransport | None = None
        self.closed = False  # no more writes from this end
        self._lost = False  # connection_lost delivered to this end's protocol
        self._incoming: deque[tuple[float, bytes | None]] = deque()  # None: end of stream
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._limits = (16 * 1024, 64 * 1024)
        self._expect_request = client  # the next write starts a request line
        #: After the client's upgrade to the link stream (SPEC §15.8): its frames, parsed as
        #: they are written, so each transfer counts as a POST would.
        self._frames: _FrameCounter | None = None

    # --- asyncio.Transport ----------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        return default  # no socket, no peername: the audit log writes no address

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def is_closing(self) -> bool:
        return self.closed

    def is_reading(self) -> bool:
        return not self._paused and not self.closed

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._schedule()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high = 64 * 1024 if high is None else high
        self._limits = (high // 4 if low is None else low, high)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._limits

    def get_write_buffer_size(self) -> int:
        return 0  # written bytes are on the link at once; the link's queue is its own

    def can_write_eof(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed or not data:
            return
        chunk = bytes(data)
        if self._frames is not None:
            self._frames.feed(chunk)
        elif self._client and self._expect_request:
            self._note_request(chunk)
        loop = self._network.loop
        figures = self._link.figures
        sender = self._local.name
        figures.sent[sender] = figures.sent.get(sender, 0) + len(chunk)
        self._network.node_bytes(sender, sent=len(chunk))
        arrival = self._link.departure(sender, len(chunk), loop.time()) + self._link.latency
        peer = self.peer
        if peer is not None:
            peer._arrive(arrival, chunk)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        """Close after what was written has arrived: the peer hears the end, then the loss."""
        if self.closed:
            return
        self.closed = True
        peer = self.peer
        if peer is not None:
            departure = self._link.departure(self._local.name, 0, self._network.loop.time())
            peer._arrive(departure + self._link.latency, None)
        self._network.loop.call_soon(self._connection_lost, None, context=self._local.context)

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._incoming.clear()
        peer = self.peer
        if peer is not None and not peer.closed:
            peer._arrive(self._network.loop.time() + self._link.latency, None)
        self._network.loop.call_soon(self._connection_lost, None, context=self._local.context)

    # --- the simulation's side ------------------------------------------------------

    def reset(self) -> None:
        """The link was cut: this end loses what was in flight and hears a reset."""
        self.closed = True
        self._incoming.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._network.loop.call_soon(
            self._connection_lost,
            ConnectionResetError("link cut"),
            context=self._local.context,
        )

    def _note_request(self, chunk: bytes) -> None:
        line, _, _ = chunk[:256].partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) == 3 and parts[2].startswith(b"HTTP/"):
            key = f"{parts[0].decode('ascii', 'replace')} {parts[1].decode('ascii', 'replace')}"
            requests = self._link.figures.requests
            requests[key] = requests.get(key, 0) + 1
            self._expect_request = False
            if key == f"GET {STREAM_PATH}":
                self._frames = _FrameCounter(requests)

    def _arrive(self, when: float, chunk: bytes | None) -> None:
        if self.closed and chunk is not None:
            return
        if self._incoming and self._incoming[-1][0] > when:
            when = self._incoming[-1][0]  # in order, whatever the link's figures did since
        self._incoming.append((when, chunk))
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or not self._incoming or self._lost:
            return
        loop = self._network.loop
        self._timer = loop.call_at(self._incoming[0][0], self._deliver, context=self._local.context)

    def _deliver(self) -> None:
        self._timer = None
        now = self._network.loop.time()
        protocol = self._protocol
        while self._incoming and self._incoming[0][0] <= now and not self._lost:
            if self._paused and self._incoming[0][1] is not None:
                return  # resume_reading schedules the rest
            _, chunk = self._incoming.popleft()
            if chunk is None:
                self._end_of_stream()
                return
            if self._client:
                self._expect_request = True  # an answer came: the next write is a request
            self._network.node_bytes(self._local.name, received=len(chunk))
            if isinstance(protocol, asyncio.Protocol):
                protocol.data_received(chunk)
        self._schedule()

    def _end_of_stream(self) -> None:
        protocol = self._protocol
        keep_open = isinstance(protocol, asyncio.Protocol) and protocol.eof_received()
        if not keep_open or self.closed:
            self.closed = True
            self._connection_lost(None)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._incoming.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        links = self._link.transports
        if self in links:
            links.remove(self)
        if self._protocol is not None:
            self._protocol.connection_lost(exc)


class _MemoryConnector(aiohttp.BaseConnector):
    """Connects a node's link client to its neighbour's server over the in-memory network."""

    def __init__(self, network: MemoryNetwork, endpoint: NodeEndpoint) -> None:
        super().__init__(limit=4)
        self._network = network
        self._endpoint = endpoint

    async def _create_connection(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> ResponseHandler:
        return await self._network.connect(self._endpoint, req.url.host or "", self._factory)


class NodeEndpoint:
    """One node's place on the network: the ``exchnode.aio.Network`` its ``Node`` is given."""

    def __init__(self, network: MemoryNetwork, name: str, certificate: x509.Certificate) -> None:
        self._network = network
        self.name = name
        self.certificate_der = certificate.public_bytes(Encoding.DER)
        self.context = contextvars.copy_context()
        self.factory: Callable[[], asyncio.BaseProtocol] | None = None

    def connector(self) -> aiohttp.BaseConnector:
        return _MemoryConnector(self._network, self)

    def listen(
        self, address: tuple[str, int], factory: Callable[[], asyncio.BaseProtocol]
    ) -> tuple[str, int]:
        self.factory = factory
        return self._network.host(self.name), _PORT

    def stop_listening(self) -> None:
        self.factory = None


class MemoryNetwork:
    """The links of a simulated federation and the nodes' endpoints (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._links: dict[frozenset[str], _Link] = {}
        self._endpoints: dict[str, NodeEndpoint] = {}
        self._by_host: dict[str, str] = {}
        #: per node: [bytes sent, bytes received] over all its links
        self.node_figures: dict[str, list[int]] = {}

    @staticmethod
    def host(name: str) -> str:
        return f"{name}{_HOST_SUFFIX}"

    def url(self, name: str) -> str:
        """The address a node is reached at (never resolved: the name picks the endpoint)."""
        return f"https://{self.host(name)}:{_PORT}"

    def endpoint(
        self, name: str, certificate: x509.Certificate, context: contextvars.Context
    ) -> NodeEndpoint:
        """The endpoint of ``name``; ``context`` is the one its callbacks run in (its CPU)."""
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            endpoint = NodeEndpoint(self, name, certificate)
            self._endpoints[name] = endpoint
            self._by_host[self.host(name)] = name
            self.node_figures[name] = [0, 0]
        endpoint.context = context
        return endpoint

    def add_link(self, a: str, b: str) -> None:
        key = frozenset((a, b))
        if len(key) != 2:
            raise UsageError(f"a link joins two different nodes, got {a} and {b}")
        if key in self._links:
            raise UsageError(f"link {a}-{b} is listed twice")
        self._links[key] = _Link(a, b)

    def _link(self, a: str, b: str) -> _Link:
        link = self._links.get(frozenset((a, b)))
        if link is None:
            raise UsageError(f"there is no link between {a} and {b}")
        return link

    def links(self) -> list[LinkFigures]:
        return [link.figures for link in self._links.values()]

    def cut(self, a: str, b: str) -> None:
        link = self._link(a, b)
        link.cut = True
        link.reset()

    def restore(self, a: str, b: str) -> None:
        self._link(a, b).cut = False

    def shape(self, a: str, b: str, *, latency: float, bandwidth: float | None) -> None:
        """A link's one-way latency (seconds) and bandwidth (bytes/s; None: no limit) from now."""
        if latency < 0 or (bandwidth is not None and bandwidth <= 0):
            raise UsageError(
                f"link {a}-{b}: latency >= 0 and bandwidth > 0, got {latency}, {bandwidth}"
            )
        link = self._link(a, b)
        link.latency = latency
        link.bandwidth = bandwidth

    def node_bytes(self, name: str, *, sent: int = 0, received: int = 0) -> None:
        figures = self.node_figures[name]
        figures[0] += sent
        figures[1] += received

    def disconnect(self, name: str) -> None:
        """A node went down: every connection it had is gone (its peers hear a reset)."""
        for link in self._links.values():
            if name in link.ends:
                for transport in list(link.transports):
                    if not transport.closed:
                        transport.reset()

    async def connect(
        self,
        source: NodeEndpoint,
        host: str,
        client_factory: Callable[[], ResponseHandler],
    ) -> ResponseHandler:
        target_name = self._by_host.get(host)
        if target_name is None:
            raise OSError(f"{host} is not on the simulated network")
        link = self._link(source.name, target_name)
        if link.cut:
            await asyncio.Future()  # a cut link swallows the attempt: the client times out
        if link.latency:
            await asyncio.sleep(4 * link.latency)  # TCP and TLS 1.3: two round trips
        target = self._endpoints[target_name]
        factory = target.factory
        if factory is None:
            raise ConnectionRefusedError(f"{target_name} is not listening")
        if link.cut:
            raise ConnectionResetError(f"link {source.name}-{target_name} cut while connecting")
        link.figures.connections += 1
        client_end = _MemoryTransport(self, link, source, target.certificate_der, client=True)
        server_end = _MemoryTransport(self, link, target, source.certificate_der, client=False)
        client_end.peer, server_end.peer = server_end, client_end
        link.transports += [client_end, server_end]
        server_protocol = factory()
        server_end.set_protocol(server_protocol)
        self.loop.call_soon(server_protocol.connection_made, server_end, context=target.context)
        protocol = client_factory()
        client_end.set_protocol(protocol)
        protocol.connection_made(client_end)
        return protocol
