"""An open-loop load generator: requests start on a fixed schedule, whatever the answers do.

wrk is a closed loop: a connection sends its next request only when the last one was
answered, so a slow server is sent fewer requests and the stall it caused is measured once
instead of once per request that should have been sent meanwhile (coordinated omission).
Here request i is due at start + i / rate; its latency runs from that intended time to the
end of its answer, so a request that waited for a connection, or behind a stalled one,
counts the wait. wrk2 does the same, but is not packaged for Debian.

One asyncio process (on uvloop, from the dev extras, when installed: about 200 us of CPU a
request against asyncio's 350-500, each on a new connection), HTTP/1.1 with keep-alive
(gthread and gevent workers keep the connection; sync workers close it after each answer
and a new one is opened). At most
`max_in_flight` requests are open at once; a due request waits for a slot, and that wait is
part of its latency. When the schedule ends the generator waits up to `timeout` seconds for
what is still open; requests unanswered by then are counted as `unanswered` and their
latency so far recorded (a lower bound), which marks an overloaded server.

Every latency is kept (a 20 s run at 1,000 req/s is 20,000 floats), so percentiles are exact
without a histogram library.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# The cart of bench/cart.lua: three lines of two units each, so an order takes six refunds.
SKUS = ("tee-black-m", "mug-white", "cap-navy")
LINES = (
    '[{"sku": "tee-black-m", "category": "apparel", "quantity": 2, "unit_price": 2500},'
    ' {"sku": "mug-white", "category": "home", "quantity": 2, "unit_price": 1200},'
    ' {"sku": "cap-navy", "category": "accessories", "quantity": 2, "unit_price": 1800}]'
)


# Issue 18's latency targets hold at this share of the bare app's maximum.
TARGET_SHARE = 0.5


@dataclass
class Requests:
    """Builds each operation's requests like bench/<operation>.lua does for wrk."""

    op: str
    host: str
    key: str
    members: tuple[int, int]
    run: str
    idem: bool
    pool: list[str] = field(default_factory=list)
    counter: int = 0
    position: int = 0
    round: int = 0
    reused: int = 0

    def member(self) -> str:
        return f"m{random.randint(*self.members):06d}"  # noqa: S311 - load, not secrets

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.run}-{kind}-o-{self.counter}"

    def next_in_pool(self) -> str:
        """The pool's ids in turn; past the end, another round (refunds take six)."""
        if not self.pool:
            raise ValueError(f"{self.op} needs a pool of ids")
        if self.position >= len(self.pool):
            self.position, self.round = 0, self.round + 1
        if (self.op == "capture" and self.round >= 1) or self.round >= 6:
            self.reused += 1
        self.position += 1
        return self.pool[self.position - 1]

    def cart(self, extra: str = "") -> str:
        return (
            f'{{{extra}"member_id": "{self.member()}", "currency": "USD", "discount": 500, '
            f'"lines": {LINES}}}'
        )

    def build(self) -> bytes:
        body, idem_key = None, None
        if self.op == "card":
            method, path = "GET", f"/v1/members/{self.member()}"
        elif self.op == "quote":
            method, path, body = "POST", "/v1/orders/quote", self.cart()
        elif self.op == "order":
            ref = self.next_id("ord")
            method, path, body = "POST", "/v1/orders", self.cart(f'"order_id": "{ref}", ')
            idem_key = f"idem-{ref}"
        elif self.op == "hold":
            ref = self.next_id("hold")
            method, path, idem_key = "POST", "/v1/redemptions", f"idem-{ref}"
            body = f'{{"member_id": "{self.member()}", "points": 100, "order_id": "{ref}"}}'
        elif self.op == "event":
            ref = self.next_id("evt")
            method, path, idem_key = "POST", "/v1/events", f"idem-{ref}"
            body = f'{{"event_id": "{ref}", "member_id": "{self.member()}", "type": "review"}}'
        elif self.op == "capture":
            hold = self.next_in_pool()
            method, path = "POST", f"/v1/redemptions/{hold}/capture"
            idem_key = f"idem-cap-{hold}"
        elif self.op == "refund":
            order = self.next_in_pool()
            ref = self.next_id("ref")
            method, path, idem_key = "POST", f"/v1/orders/{order}/refunds", f"idem-{ref}"
            sku = SKUS[self.round % 3]
            body = f'{{"refund_id": "{ref}", "lines": [{{"sku": "{sku}", "quantity": 1}}]}}'
        else:
            raise ValueError(f"unknown operation {self.op}")
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        head.append(f"Authorization: Bearer {self.key}")
        if self.idem and idem_key:
            head.append(f"Idempotency-Key: {idem_key}")
        data = (body or "").encode()
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + data


@dataclass
class OpenLoopResult:
    rate: float  # the requests per second asked for
    seconds: float  # the schedule's length
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # ms, answered requests, sorted
    unanswered: list[float] = field(default_factory=list)  # ms so far of those cut off
    non2xx: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    # How late the generator itself started requests (ms): when this grows, the generator,
    # not the server, is the bottleneck.
    send_lag_max: float = 0.0
    send_lag_p99: float = 0.0
    cpu: float = 0.0  # the generator's own CPU seconds
    load: float = 0.0  # 1-minute load average at the end

    def percentile(self, p: float) -> float:
        """Over every request scheduled: the unanswered ones count as their time so far."""
        values = self.latencies
        if self.unanswered:
            values = sorted(values + self.unanswered)
        if not values:
            return 0.0
        return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]

    @property
    def answered_rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.latencies:
            found.append("no requests answered")
        if self.non2xx:
            found.append(
                "non-2xx: " + ", ".join(f"{n}x{s}" for s, n in sorted(self.non2xx.items()))
            )
        if self.errors:
            found.append("errors: " + ", ".join(f"{k} {v}" for k, v in self.errors.items()))
        if self.reused:
            found.append(f"pool exhausted: {self.reused} requests reused an id")
        return found


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection answering one request at a time. A protocol, not asyncio's
    streams: they cost the generator about twice the CPU per request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.transport.write(payload)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).split(b"\r\n")
        version, status = head[0].split(b" ", 2)[:2]
        length, keep = 0, version == b"HTTP/1.1"
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                keep = value.strip().lower() != b"close"
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        if not self.waiter.done():
            self.waiter.set_result((int(status), body, keep))
        self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed before answering"))


class Client:
    """Keep-alive connections to one server, reused while the server keeps them open."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []

    async def exchange(self, payload: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        while self.idle and self.idle[-1].closed:
            self.idle.pop()
        for attempt in range(2):
            reused = bool(self.idle)
            if reused:
                connection = self.idle.pop()
            else:
                _, connection = await loop.create_connection(Connection, self.host, self.port)
            try:
                status, body, keep = await connection.send(payload)
            except (ConnectionError, ValueError):
                if connection.transport is not None:
                    connection.transport.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle connection: once more on a new one
                raise
            if keep and not connection.closed:
                self.idle.append(connection)
            elif connection.transport is not None:
                connection.transport.close()
            return status, body
        raise ConnectionError("unreachable")

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()
        self.idle.clear()


async def run_open_loop(
    host: str,
    port: int,
    build: Callable[[], bytes],
    rate: float,
    seconds: float,
    max_in_flight: int = 512,
    timeout: float = 10.0,
) -> OpenLoopResult:
    result = OpenLoopResult(rate=rate, seconds=seconds)
    loop = asyncio.get_running_loop()
    client = Client(host, port)
    slots = asyncio.Semaphore(max_in_flight)
    pending: dict[asyncio.Task[None], float] = {}
    lags: list[float] = []

    async def one(payload: bytes, intended: float) -> None:
        async with slots:
            try:
                status, body = await client.exchange(payload)
            except (OSError, ValueError) as error:
                name = type(error).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
                return
        result.latencies.append((loop.time() - intended) * 1000)
        if not 200 <= status <= 299:
            key = str(status)
            result.non2xx[key] = result.non2xx.get(key, 0) + 1
            result.samples.setdefault(key, body[:300].decode(errors="replace"))

    cpu_before = process_cpu()
    total = int(rate * seconds)
    start = loop.time() + 0.05
    for i in range(total):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(loop.time() - intended)
        task = loop.create_task(one(build(), intended))
        pending[task] = intended
        task.add_done_callback(pending.pop)
        result.sent += 1
    if pending:
        await asyncio.wait(list(pending), timeout=timeout)
    cut = loop.time()
    for task, intended in list(pending.items()):
        task.cancel()
        result.unanswered.append((cut - intended) * 1000)
    if pending:
        await asyncio.wait(list(pending))
    client.close()
    result.cpu = process_cpu() - cpu_before
    result.latencies.sort()
    lags.sort()
    if lags:
        result.send_lag_max = lags[-1] * 1000
        result.send_lag_p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))] * 1000
    return result


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_loop(
    url: str, requests: Requests, rate: float, seconds: float, timeout: float = 10.0
) -> OpenLoopResult:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    runner = run_open_loop(host, int(port), requests.build, rate, seconds, timeout=timeout)
    try:
        import uvloop  # half the generator's CPU a request of asyncio's own loop

        result = uvloop.run(runner)
    except ImportError:
        result = asyncio.run(runner)
    result.reused = requests.reused
    result.load = os.getloadavg()[0]
    return result


if __name__ == "__main__":  # pragma: no cover - a manual check of the generator alone
    import sys

    url, op, rate_arg, seconds_arg = sys.argv[1:5]
    t0 = time.monotonic()
    r = open_loop(
        url, Requests(op, "bench", "", (1, 100), "x", False), float(rate_arg), float(seconds_arg)
    )
    print(  # noqa: T201
        f"{op} at {r.rate:.0f}/s: answered {r.answered_rate:.0f}/s, p50 {r.percentile(50):.1f}"
        f" p99 {r.percentile(99):.1f} p99.9 {r.percentile(99.9):.1f} ms, send lag p99"
        f" {r.send_lag_p99:.1f} max {r.send_lag_max:.1f} ms, generator CPU"
        f" {r.cpu * 1e6 / max(r.sent, 1):.0f} us/request, {r.problems}"
    )


def open_loop_report(
    results: dict[tuple[str, str, float], OpenLoopResult],
    shares: list[float],
    targets: dict[str, float],
    capacity: dict[str, float],
) -> list[str]:
    """The open-loop table: per operation and rate, both apps' p50/p99/p99.9 and loyalty's
    verdict against the p99 target at 50% (else at the lowest rate); `capacity` is
    loyalty's closed-loop req/s per operation (a rate above it can only queue up)."""
    target_share = TARGET_SHARE if TARGET_SHARE in shares else min(shares)
    header = (
        f"{'operation':10} {'rate':>4} {'req/s':>6} | {'loyalty p50':>11} {'p99':>7} "
        f"{'p99.9':>7} {'got/s':>6} | {'bare p50':>8} {'p99':>7} {'p99.9':>7} {'got/s':>6} | "
        f"{'load':>4} | verdict"
    )
    lines = [
        "",
        "open loop: requests arrive at a constant rate (a share of the bare app's closed-loop",
        "req/s above), latency from each request's intended send time (coordinated omission",
        "corrected), ms; got/s: answered per second; load: 1-minute load average after the run",
        header,
        "-" * len(header),
    ]
    ops = list(dict.fromkeys(op for op, _, _ in results))
    for op in ops:
        for share in shares:
            ours, bare = results.get((op, "loyalty", share)), results.get((op, "bare", share))
            if ours is None or bare is None:
                continue
            verdict = []
            if ours.rate > capacity.get(op, float("inf")):
                verdict.append(f"above loyalty's closed-loop {capacity[op]:.0f} req/s")
            target = targets.get(op)
            if share == target_share and target is not None:
                p99 = ours.percentile(99)
                verdict.append(
                    f"p99 < {target:g} ok"
                    if p99 < target
                    else f"p99 < {target:g} MISSED by {p99 - target:.1f} ms ({p99 / target:.1f}x)"
                )
            for app, result in (("loyalty", ours), ("bare", bare)):
                if result.unanswered:
                    verdict.append(f"{app} overloaded: {len(result.unanswered)} unanswered")
                if result.problems:
                    verdict.append(f"{app} ERRORS: " + "; ".join(result.problems))
            lines.append(
                f"{op:10} {share:4.0%} {ours.rate:6.0f} | {ours.percentile(50):11.1f} "
                f"{ours.percentile(99):7.1f} {ours.percentile(99.9):7.1f} "
                f"{ours.answered_rate:6.0f} | {bare.percentile(50):8.1f} "
                f"{bare.percentile(99):7.1f} {bare.percentile(99.9):7.1f} "
                f"{bare.answered_rate:6.0f} | {max(ours.load, bare.load):4.1f} | "
                + ", ".join(verdict)
            )
    lags = [r.send_lag_p99 for r in results.values()]
    cpu = [r.cpu / max(r.sent, 1) * 1e6 for r in results.values()]
    lines.append(
        f"generator: send lag p99 at most {max(lags):.1f} ms over these runs; its own CPU "
        f"{min(cpu):.0f}-{max(cpu):.0f} us a request"
    )
    return lines
