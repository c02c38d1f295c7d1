"""Hostile-input suite, p2p (issue 12 item 7 and bans): real node.py validators on loopback,
attacked from outside by clients that speak the handshake with keys of their own (seeded).

- 60 random keys try to take the slots of a node whose slots are few: they get the share of
  other peers and no more; the validators still connect (evicting the least useful) and the
  chain finalises;
- connections from one IP beyond the per-IP limit are refused, handshaken or not;
- 10 peers that never read are dropped, and the node's RSS stays within a stated bound;
- a peer sending junk is dropped, refused for its ban, admitted after it, banned twice as
  long for a second offence;
- on the path between two validators (issue 12 item 9), a relay that flips one byte of one
  sealed frame, or replays one: the link closes, the validator is not banned and redials, the
  chain keeps committing; and no plaintext message type is ever seen on that wire.

Afterwards every node holds the same hash at every height, the blocks committed before the
attack are still there, and blocks kept coming during it."""
from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from ledger.genesis import devnet_keys, load_genesis
from ledger.encoding import encode
from ledger.keys import PrivateKey
from ledger.tx import transfer
from net import p2p
from net.secret import Ephemeral, SecretLink
from tests.nodeproc import NodeProcess, check_agreement, heights, validator_processes, wait_until

SEED = 12
N = 4
KEYS = [PrivateKey.from_label(f"hostile p2p validator {i}") for i in range(N)]
MIN_BLOCKS_PER_S = 0.2   # block rate during an attack, at --block-time 0.2 on 2 busy cores


def p2p_port(node: NodeProcess) -> int:
    return int(node.extra[node.extra.index("--p2p-port") + 1])


def vm_rss(node: NodeProcess) -> int:
    """Resident memory of the node process, in bytes (/proc/<pid>/status VmRSS)."""
    assert node.proc is not None
    text = Path(f"/proc/{node.proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024


class Intruder:
    """An outsider with its own key: handshakes like a node, then does what the test says."""

    def __init__(self, key: PrivateKey, node: NodeProcess):
        g = load_genesis(Path(node.extra[node.extra.index("--genesis") + 1]))
        self.key, self.chain_id, self.genesis_hash, self.port = key, g.chain_id, g.hash, p2p_port(node)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.link: SecretLink | None = None

    async def open(self, rcvbuf: int | None = None) -> None:
        sock = socket.socket()
        if rcvbuf is not None:  # a peer that never reads then stalls the sender after little
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)

    async def join(self, rcvbuf: int | None = None) -> bool:
        """Connect and handshake; True if the node admitted us (its first message, a status,
        arrives), False if it closed the link (refused, before or after the handshake)."""
        await self.open(rcvbuf)
        eph = Ephemeral.generate()
        hello = p2p.Hello(self.key.public_key, self.chain_id, self.genesis_hash, eph.public)
        try:
            _, self.link = await asyncio.wait_for(p2p.handshake(self.reader, self.writer, self.key, hello, eph,
                                                                None), 10)
        except (p2p.PeerError, OSError):
            return False
        return await self.read_something()

    async def read_something(self, timeout: float = 10) -> bool:
        """True if data arrives, False at EOF (AssertionError if neither within timeout)."""
        try:
            return await asyncio.wait_for(self.reader.read(1 << 16), timeout) != b""
        except ConnectionError:
            return False
        except asyncio.TimeoutError:
            raise AssertionError(f"the node neither talked nor closed within {timeout} s") from None

    async def closed_by_node(self, timeout: float) -> bool:
        """Read (and discard) until EOF: True if the node closed the link within timeout."""
        async def drain() -> None:
            while await self.reader.read(1 << 16):
                pass
        try:
            await asyncio.wait_for(drain(), timeout)
            return True
        except ConnectionError:
            return True
        except asyncio.TimeoutError:
            return False

    async def send_sealed(self, payload: bytes) -> None:
        """A payload of our choice, sealed as the link expects: the node opens it and judges it."""
        self.writer.write(self.link.send.seal(payload))
        await self.writer.drain()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def intruder_keys(n: int, tag: str) -> list[PrivateKey]:
    rng = random.Random(f"{SEED}/{tag}")
    return [PrivateKey.from_label(f"intruder {tag} {rng.getrandbits(64)}") for _ in range(n)]


def block_rate(nodes: list[NodeProcess], seconds: float) -> float:
    start = min(heights(nodes))
    time.sleep(seconds)
    return (min(heights(nodes)) - start) / seconds


def block_hashes(node: NodeProcess, top: int) -> list[str]:
    with node.client() as c:
        return [c.block(h)["header"]["hash"] for h in range(1, top + 1)]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """Four validators; node 0 lets 16 peers per IP in (the never-readers all come from
    127.0.0.1) and bans for 2 s first; node 1 keeps the defaults."""
    nodes = validator_processes(tmp_path_factory.mktemp("hostile-p2p") / "tn", KEYS,
                                extra={0: ["--p2p-max-per-ip", "16", "--p2p-ban", "2"]})
    try:
        for n in nodes:
            n.start()
        wait_until(lambda: min(heights(nodes)) >= 3, 60, "four validators finalising")
        yield nodes
    finally:
        for n in nodes:
            n.kill()


def after_attack(nodes: list[NodeProcess], before: list[str]) -> None:
    """Same hash at every height on every node; nothing committed before the attack lost."""
    top = check_agreement(nodes)
    assert top > len(before)
    for n in nodes:
        assert block_hashes(n, len(before)) == before


def test_sixty_random_keys_cannot_keep_the_validators_out(tmp_path):
    """Node 0 has 12 slots, all open to other peers, and lets any number in per IP: 60 keys
    take the 12 and are refused beyond them; the three validators started after still get in
    (each evicting an intruder) and the four finalise."""
    nodes = validator_processes(tmp_path / "tn", KEYS, extra={0: [
        "--p2p-max-peers", "12", "--p2p-max-other-peers", "12", "--p2p-max-per-ip", "100"]})
    try:
        nodes[0].start()

        async def attack() -> tuple[int, int]:
            intruders = [Intruder(k, nodes[0]) for k in intruder_keys(60, "slots")]
            admitted = []
            for i in range(0, 60, 10):   # ten at a time, within the node's handshakes in flight
                admitted += await asyncio.gather(*(x.join() for x in intruders[i:i + 10]))
            held = [x for x, ok in zip(intruders, admitted) if ok]
            for n in nodes[1:]:
                await asyncio.to_thread(n.start)
            await asyncio.to_thread(wait_until, lambda: min(heights(nodes)) >= 5, 90,
                                    "the validators finalising beside the intruders")
            evicted = [await x.closed_by_node(0.5) for x in held]
            for x in intruders:
                x.close()
            return sum(admitted), sum(evicted)

        admitted, evicted = asyncio.run(attack())
        assert admitted == 12          # the share of other peers, and not one more
        assert evicted >= 3            # one per validator that needed a slot
        rate = block_rate(nodes, 3)
        assert rate >= MIN_BLOCKS_PER_S, rate
        check_agreement(nodes)
    finally:
        for n in nodes:
            n.kill()


def test_connections_from_one_ip_beyond_the_limit_are_refused(network):
    """Node 1 keeps the default limit of 8 per IP: of 30 keys from 127.0.0.1 8 get in, and of
    20 connections that never say hello 12 are closed at once (8 wait out the handshake)."""
    node = network[1]
    before = block_hashes(node, min(heights(network)))

    async def attack() -> tuple[int, float, list[bool]]:
        intruders = [Intruder(k, node) for k in intruder_keys(30, "per-ip")]
        admitted = [await x.join() for x in intruders]
        stalled = [Intruder(k, node) for k in intruder_keys(20, "stalled")]
        for x in stalled:
            await x.open()
        early = await asyncio.gather(*(x.closed_by_node(1.0) for x in stalled))
        rate = await asyncio.to_thread(block_rate, network, 3)
        for x in intruders + stalled:
            x.close()
        return sum(admitted), rate, list(early)

    admitted, rate, early = asyncio.run(attack())
    assert admitted == p2p.Limits.max_per_ip
    assert sum(early) == 20 - p2p.Limits.max_per_ip
    assert rate >= MIN_BLOCKS_PER_S, rate
    after_attack(network, before)


def test_ten_peers_that_never_read_are_dropped_and_rss_stays_bounded(network):
    """Ten keys join node 0 with a 4 KiB receive buffer and never read, while 24,000
    transfers are gossiped to them.  Each costs the node at most its send queue (4 MiB) and
    a frame being written (a tx batch, <= 1 MiB), so RSS may grow by at most
    10 x 5 MiB + 16 MiB (the node's own work on the transfers); all ten are dropped."""
    node = network[0]
    before = block_hashes(node, min(heights(network)))
    users = devnet_keys(4)
    with node.client() as c:
        chain_id = c.chain_id
    txs = [transfer(u, chain_id, nonce, users[(i + 1) % 4].address, 1).raw.hex()
           for nonce in range(6000) for i, u in enumerate(users)]
    bound = 10 * (p2p.Limits.send_queue_bytes + (1 << 20)) + (16 << 20)

    async def attack() -> tuple[int, int, list[bool]]:
        intruders = [Intruder(k, node) for k in intruder_keys(10, "never-read")]
        joined = [await x.join(rcvbuf=4096) for x in intruders]   # then they never read again
        assert all(joined)
        rss0 = vm_rss(node)
        with node.client() as c:
            for i in range(0, len(txs), 500):
                await asyncio.to_thread(c.batch, [("broadcast_tx", {"tx": t}) for t in txs[i:i + 500]])
        peak = rss0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            peak = max(peak, vm_rss(node))
            with node.client() as c:
                if await asyncio.to_thread(lambda: c.status()["mempool_size"]) == 0:
                    break
            await asyncio.sleep(0.2)
        dropped = await asyncio.gather(*(x.closed_by_node(p2p.Limits.write_timeout + 20) for x in intruders))
        peak = max(peak, vm_rss(node))
        for x in intruders:
            x.close()
        return rss0, peak, list(dropped)

    rss0, peak, dropped = asyncio.run(attack())
    print(f"node 0 RSS {rss0 / 2**20:.1f} MiB -> peak {peak / 2**20:.1f} MiB (+{(peak - rss0) / 2**20:.1f} MiB, "
          f"bound {bound / 2**20:.0f} MiB); dropped {sum(dropped)} of 10")
    assert all(dropped)
    assert peak - rss0 <= bound
    after_attack(network, before)
    with node.client() as c:
        assert c.status()["mempool_size"] == 0   # every transfer committed


def test_a_peer_sending_junk_is_dropped_then_refused_for_its_ban(network):
    """Node 0 bans for 2 s first: junk drops the intruder, it is refused at once on return,
    admitted after the ban, and a second offence bans it for 4 s."""
    node = network[0]
    before = block_hashes(node, min(heights(network)))
    junk = encode(["no-such-type", 1])
    key = intruder_keys(1, "junk")[0]

    async def attack() -> list[bool]:
        seen = []
        x = Intruder(key, node)
        seen.append(await x.join())                   # admitted
        await x.send_sealed(junk)
        seen.append(not await x.closed_by_node(5))    # dropped
        x.close()
        seen.append(await x.join())                   # refused: banned
        x.close()
        await asyncio.sleep(2.5)
        seen.append(await x.join())                   # the ban is over
        await x.send_sealed(junk)
        seen.append(not await x.closed_by_node(5))
        x.close()
        await asyncio.sleep(2.5)
        seen.append(await x.join())                   # still banned: the second ban is 4 s
        x.close()
        return seen

    assert asyncio.run(attack()) == [True, False, False, True, False, False]
    log = node.log.read_text()
    who = key.public_key.hex()[:16]
    assert re.search(rf"banned peer {who} \(.*\) for 2\.0 s \(offence 1\): unknown message type", log), log[-2000:]
    assert re.search(rf"banned peer {who} \(.*\) for 4\.0 s \(offence 2\)", log)
    after_attack(network, before)


# ---- on the path: sealed links (issue 12 item 9) -------------------------------------------

class OnPath:
    """A TCP relay on loopback through which node 0 dials node 1.  It splits both streams
    into frames (each link's frame 0 is the plain hello, frame 1 the sealed auth, then
    messages), keeps them, and on request alters one message frame from node 0 to node 1:
    "flip" flips one byte of it, "replay" sends it twice.  Which frame and which byte come
    from the seeded schedule."""

    def __init__(self, target_port: int, rng: random.Random):
        self.target_port, self.rng = target_port, rng
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.frames: list[dict[str, list[bytes]]] = []   # per link: "ab" (0 -> 1) and "ba" frames
        self.closed: list[threading.Event] = []
        self.action: tuple[str, int] | None = None        # (what, skip this many message frames first)
        self.done: tuple[int, int] | None = None          # (link, frame index) altered
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, what: str) -> None:
        with self.lock:
            self.action, self.done = (what, self.rng.randrange(10)), None

    def links(self) -> int:
        with self.lock:
            return len(self.frames)

    def messages(self, link: int, direction: str) -> int:
        """Frames after the handshake (hello, auth) relayed on that link in that direction."""
        with self.lock:
            return max(0, len(self.frames[link][direction]) - 2)

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:   # closed: the test is over
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:   # node 1 not up yet: node 0 redials
                a.close()
                continue
            with self.lock:
                link = len(self.frames)
                self.frames.append({"ab": [], "ba": []})
                self.closed.append(threading.Event())
            for src, dst, direction in ((a, b, "ab"), (b, a, "ba")):
                threading.Thread(target=self._pump, args=(link, src, dst, direction, (a, b)), daemon=True).start()

    def _pump(self, link: int, src: socket.socket, dst: socket.socket, direction: str,
              both: tuple[socket.socket, socket.socket]) -> None:
        try:
            while True:
                prefix = recv_exactly(src, 4)
                if prefix is None:
                    break
                body = recv_exactly(src, int.from_bytes(prefix, "big"))
                if body is None:
                    break
                dst.sendall(self._relay(link, direction, prefix + body))
        except OSError:
            pass
        finally:
            for sock in both:   # either side closing closes the relay, as a real link would
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.closed[link].set()

    def _relay(self, link: int, direction: str, data: bytes) -> bytes:
        """What goes on for one frame: itself, altered, or twice."""
        with self.lock:
            frames = self.frames[link][direction]
            frames.append(data)
            if direction != "ab" or len(frames) <= 2 or self.action is None:
                return data
            what, skip = self.action
            if skip:
                self.action = (what, skip - 1)
                return data
            self.action, self.done = None, (link, len(frames) - 1)
        if what == "replay":
            return data + data
        i = self.rng.randrange(4, len(data))
        return data[:i] + bytes([data[i] ^ 1 << self.rng.randrange(8)]) + data[i + 1:]


def recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    """n bytes, or None at EOF."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


@pytest.fixture(scope="module")
def on_path(tmp_path_factory):
    """Four validators; node 0's link to node 1 runs through an OnPath relay (node 1 does not
    dial node 0, so that link is the only one between them)."""
    nodes = validator_processes(tmp_path_factory.mktemp("on-path") / "tn", KEYS)
    relay = OnPath(p2p_port(nodes[1]), random.Random(f"{SEED}/on-path"))
    for i, own in ((0, lambda entry: entry.replace(f":{p2p_port(nodes[1])}", f":{relay.port}")),
                   (1, lambda entry: None if entry.startswith(KEYS[0].public_key.hex()) else entry)):
        at = nodes[i].extra.index("--peers") + 1
        nodes[i].extra[at] = ",".join(e for e in map(own, nodes[i].extra[at].split(",")) if e)
    try:
        for n in nodes:
            n.start()
        wait_until(lambda: min(heights(nodes)) >= 3, 60, "four validators finalising")
        wait_until(lambda: relay.links() and relay.messages(0, "ab") and relay.messages(0, "ba"), 30,
                   "node 0 and node 1 talking through the relay")
        yield nodes, relay
    finally:
        for n in nodes:
            n.kill()
        relay.close()


def tamper_and_reconnect(nodes: list[NodeProcess], relay: OnPath, what: str) -> tuple[int, int]:
    """Alter one frame of the current link; wait for the link to close and for a new one that
    carries messages both ways (node 1 admitted node 0 again: not banned).  (link, frame)."""
    first = relay.links()
    relay.arm(what)
    wait_until(lambda: relay.done is not None, 30, f"the relay to {what} a frame")
    link, index = relay.done
    assert relay.closed[link].wait(10), "the link was not closed after a bad frame"
    wait_until(lambda: relay.links() > first and relay.messages(relay.links() - 1, "ab") >= 2
               and relay.messages(relay.links() - 1, "ba") >= 2, 30, "node 0 linked to node 1 again")
    return link, index


def assert_dropped_not_banned(nodes: list[NodeProcess], counter: int) -> None:
    """Node 1 said why it dropped node 0 (the sealed frame with that counter failed) and
    banned nobody for it."""
    who = KEYS[0].public_key.hex()[:16]
    wait_until(lambda: re.search(rf"dropped peer {who} \(.*\), not banned: frame {counter} failed authentication",
                                 nodes[1].log.read_text()), 10, "node 1 logging the drop")
    assert "banned peer" not in nodes[1].log.read_text()


def test_a_flipped_byte_on_the_wire_closes_the_link_and_the_validator_reconnects(on_path):
    nodes, relay = on_path
    before = block_hashes(nodes[0], min(heights(nodes)))
    link, index = tamper_and_reconnect(nodes, relay, "flip")
    assert_dropped_not_banned(nodes, index - 1)      # frame 1 (the auth) had counter 0
    rate = block_rate(nodes, 3)
    assert rate >= MIN_BLOCKS_PER_S, rate
    after_attack(nodes, before)


def test_a_replayed_frame_is_refused_and_the_validator_reconnects(on_path):
    """The original frame (counter index - 1) is taken; its copy is read where counter index
    is due, fails, and closes the link: it is never handled twice."""
    nodes, relay = on_path
    before = block_hashes(nodes[0], min(heights(nodes)))
    link, index = tamper_and_reconnect(nodes, relay, "replay")
    assert_dropped_not_banned(nodes, index)
    rate = block_rate(nodes, 3)
    assert rate >= MIN_BLOCKS_PER_S, rate
    after_attack(nodes, before)


def test_the_wire_carries_no_plaintext_message_after_the_hellos(on_path):
    """In both directions of every link through the relay: the hellos are plain (the check
    sees their type), everything after them is sealed (no msgpack type string appears)."""
    _, relay = on_path
    wait_until(lambda: relay.messages(relay.links() - 1, "ab") >= 50, 30, "traffic on the link")
    with relay.lock:
        frames = [f for link in relay.frames for d in ("ab", "ba") for f in link[d]]
        hellos = [link[d][0] for link in relay.frames for d in ("ab", "ba") if link[d]]
        sealed = b"".join(f for link in relay.frames for d in ("ab", "ba") for f in link[d][1:])
    assert all(b"\xa5hello" in h for h in hellos) and len(frames) > 100 and len(sealed) > 10_000
    for plain in (b"\xa6status", b"\xa4vote", b"\xa8proposal", b"\xa2tx", b"\xa4auth", b"\xadblock_request"):
        assert plain not in sealed, plain
