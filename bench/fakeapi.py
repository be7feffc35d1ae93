"""A synthetic Lime Trader balances API for the benchmark, in a process of its own.

    python bench/fakeapi.py --accounts 100000 --polls 10 [--change-rate 0.01] [--trips 3]

It prints one JSON line, ``{"port": ...}``, once it listens on 127.0.0.1, then serves until
SIGTERM. Rendering a body (the changed accounts, then one join) happens in this process as the
request arrives: it delays the answer (the client sits idle) but is not charged to the client.

``GET /<client>/accounts`` (``Authorization: Bearer bench-token``) answers the ``<client>``'s
k-th request with body ``min(k, warmup + polls)``: body 0 is the baseline, body k carries poll
k's changes (``change-rate`` of the accounts move ``position_market_value`` and
``account_value_total``, which no rule watches; after the ``warmup`` bodies, ``trips`` of them
instead trip one of the three example rules each). Each client (the daemon, a reference loop,
one of many sources) has its own counter and its own copy of the book, rendered forward one
body at a time as it asks (the same seed: every client sees the same bodies), so a long
warm-up costs no memory.

A client *announced* with ``POST /_bench/expect`` is measured: its requests wait until
``POST /_bench/watch`` names its pid; on each request's arrival the process's counters are read
(:mod:`procstat`), so the cost between two arrivals is exactly what the polls in between cost;
and its requests after the last body wait for ``POST /_bench/release``, then get a 503, so the
process sits idle while the harness reads the results. Control endpoints:

    GET  /_bench/plan                          {"trips": [...], "changed": [...], "bytes": [...]}
    POST /_bench/expect  {"client"}
    POST /_bench/watch   {"client", "pid", "files"}
    GET  /_bench/wait?client=&requests=&timeout=   until the client made that many requests
    GET  /_bench/stats?client=                 requests, served (arrival, end), probes
    GET  /_bench/stats                         {"requests": {client: count}} for every client
    POST /_bench/release {"client"}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import procstat
from aiohttp import web

TOKEN: Final = "bench-token"  # noqa: S105 - a fixed value for a loopback benchmark
#: The example rules a trip sets off, by their names in the benchmark's config.
RESTRICTION: Final = "restriction-changed"
LOW_CASH: Final = "low-cash-to-withdraw"
DAYTRADES: Final = "daytrades-high"
TRIP_RULES: Final = (RESTRICTION, LOW_CASH, DAYTRADES)
PDT_REASON: Final = "Pattern day trader: equity below $25,000"
#: How long an announced client's request waits for its pid, or for the release.
HOLD_SECONDS: Final = 1800.0


# --------------------------------------------------------------------------- the accounts


@dataclass(slots=True)
class _Account:
    """One account, money in integer cents so every rendering has exactly two decimals."""

    number: str
    vision: bool  # ETNA marginx2 (12345678@vision style); otherwise transaq cash (@cor)
    cash: int
    position: int
    daytrades: int = 0
    restriction: str = "none"

    def render(self) -> str:
        """The account as upstream sends it: one JSON object, money as numbers."""
        cash, position = self.cash, self.position
        restricted = self.restriction != "none"
        if self.vision:
            head = '"trade_platform":"ETNA","margin_type":"marginx2"'
            buying_power = max(cash, 0)
            day_trading = 0 if restricted else 4 * buying_power
            margin = 2 * buying_power
        else:
            head = '"trade_platform":"transaq","margin_type":"cash"'
            buying_power = margin = cash
            day_trading = 0
        reason = f',"restriction_reason":"{PDT_REASON}"' if restricted else ""
        return (
            f'{{"account_number":"{self.number}",{head},'
            f'"restriction":"{self.restriction}"{reason},'
            f'"daytrades_count":{self.daytrades},'
            f'"account_value_total":{_money(cash + position)},'
            f'"cash":{_money(cash)},'
            f'"day_trading_buying_power":{_money(day_trading)},'
            f'"margin_buying_power":{_money(margin)},'
            f'"non_margin_buying_power":{_money(buying_power)},'
            f'"position_market_value":{_money(position)},'
            f'"unsettled_cash":0.00,'
            f'"cash_to_withdraw":{_money(cash)}}}'
        )


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


@dataclass(frozen=True, slots=True)
class Trip:
    """Body ``poll`` makes ``rule`` fire for ``account_number``: one notification expected."""

    poll: int
    account_number: str
    rule: str


@dataclass
class Dataset:
    """The plan of every body the API will serve (made by a dry run of :class:`Book`); the
    bodies themselves are rendered on demand, per client, by a :class:`Book` of its own."""

    accounts: int
    change_rate: float
    trips_per_poll: int
    seed: int
    warmup: int
    polls: int
    trips: list[Trip]
    changed: list[int]  # accounts changed by each body (0 for the baseline)
    storm: bool = False

    @property
    def last(self) -> int:
        return self.warmup + self.polls

    def book(self) -> Book:
        book = Book(self.accounts, self.change_rate, self.trips_per_poll, self.seed, self.warmup)
        book.storm = self.storm
        return book


class Book:
    """The accounts, advanced one body at a time from a seed: the same sequence for every
    client. Bodies 1..``warmup`` only churn (``change_rate`` of the accounts move
    ``position_market_value``); later ones also carry ``trips`` rule trips each."""

    def __init__(
        self, accounts: int, change_rate: float, trips: int, seed: int, warmup: int
    ) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.book = [
            _Account(
                number=f"{10_000_000 + i}@{'vision' if vision else 'cor'}",
                vision=vision,
                cash=rng.randrange(200_000, 5_000_000),  # 2,000.00 to 50,000.00: above 1,000
                position=rng.randrange(0, 20_000_000),
                daytrades=rng.randrange(0, 3) if vision else 0,
            )
            for i in range(accounts)
            for vision in [rng.random() < 0.8]
        ]
        self.texts: list[str] | None = None
        self.trips = trips
        self.warmup = warmup
        self.per_poll = round(accounts * change_rate)
        self.tripped: set[int] = set()
        self.at = 0  # the body the book is at
        self.storm = False

    def render(self) -> bytes:
        if self.texts is None:
            self.texts = [a.render() for a in self.book]
        return _body(self.texts)

    def advance(self) -> tuple[list[Trip], int]:
        """To the next body: its trips and how many accounts it changed."""
        self.at += 1
        poll, rng, book = self.at, self.rng, self.book
        if self.storm and poll == 1:  # every account restricted at once
            for account in book:
                account.restriction = "restricted"
            if self.texts is not None:
                self.texts = [a.render() for a in book]
            return [Trip(1, a.number, RESTRICTION) for a in book], len(book)
        touched: set[int] = set()
        plan: list[Trip] = []
        trips = self.trips if poll > self.warmup else 0
        for rule in (TRIP_RULES * trips)[:trips]:
            index = _pick(rng, book, rule, self.tripped)
            account = book[index]
            if rule == RESTRICTION:
                account.restriction = "restricted"
            elif rule == LOW_CASH:
                account.cash = 51_225  # 512.25
            else:
                account.daytrades = 3
            self.tripped.add(index)
            touched.add(index)
            plan.append(Trip(poll, account.number, rule))
        while len(touched) < self.per_poll:
            index = rng.randrange(len(book))
            if index not in self.tripped and index not in touched:
                book[index].position += rng.randrange(-50_000, 50_001)
                touched.add(index)
        if self.texts is not None:
            for index in touched:
                self.texts[index] = book[index].render()
        return plan, len(touched)


def generate(  # noqa: PLR0917 - the command line's options, in its order
    accounts: int,
    polls: int,
    change_rate: float,
    trips: int,
    seed: int,
    warmup: int = 0,
    storm: bool = False,
) -> Dataset:
    """The plan of the baseline, ``warmup`` churn-only bodies and ``polls`` bodies with trips;
    all accounts start clear of every rule."""
    if trips * polls + max(round(accounts * change_rate), trips) > accounts:
        raise ValueError(f"{accounts} accounts are too few for {polls} polls of these changes")
    book = Book(accounts, change_rate, trips, seed, warmup)
    book.storm = storm
    plan: list[Trip] = []
    changed = [0]
    for _ in range(warmup + polls):
        tripped, count = book.advance()
        plan += tripped
        changed.append(count)
    return Dataset(accounts, change_rate, trips, seed, warmup, polls, plan, changed, storm)


def _pick(rng: random.Random, book: list[_Account], rule: str, tripped: set[int]) -> int:
    """A random account that has not tripped yet and that ``rule`` applies to."""
    for _ in range(100 * len(book)):
        index = rng.randrange(len(book))
        if index not in tripped and (book[index].vision or rule != LOW_CASH):
            return index
    raise ValueError("too few accounts for that many trips")


def _body(texts: list[str]) -> bytes:
    return ("[" + ",".join(texts) + "]").encode()


# --------------------------------------------------------------------------- the server


@dataclass
class _Client:
    announced: bool
    requests: int = 0
    pid: int | None = None
    files: list[Path] = field(default_factory=list)
    watched: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    served: dict[int, tuple[float, float]] = field(default_factory=dict)
    probes: dict[int, dict[str, Any]] = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)
    book: Book | None = None
    body: bytes = b""


class FakeApi:
    """The server's state: the dataset and one :class:`_Client` per client name."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.last = dataset.last
        #: Every body is the baseline when nothing changes (the idle and many-sources cases).
        self.constant = (
            dataset.book().render()
            if dataset.change_rate == 0 and dataset.trips_per_poll == 0 and not dataset.storm
            else None
        )
        self.clients: dict[str, _Client] = {}

    def client(self, name: str) -> _Client:
        if name not in self.clients:
            self.clients[name] = _Client(announced=False)
        return self.clients[name]

    async def accounts(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _json({"code": "api_error", "message": "token incorrect or revoked"}, 401)
        client = self.client(request.match_info["client"])
        index = client.requests
        client.requests += 1
        arrival = time.time()
        client.arrivals.append(arrival)
        if client.announced:
            await asyncio.wait_for(client.watched.wait(), HOLD_SECONDS)
            if client.pid is not None:
                client.probes[index] = procstat.probe(client.pid, client.files).as_dict()
        async with client.arrived:
            client.arrived.notify_all()
        if client.announced and index > self.last:
            await asyncio.wait_for(client.released.wait(), HOLD_SECONDS)
            return _json({"code": "api_error", "message": "the benchmark is over"}, 503)
        body = self._body(client, min(index, self.last))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        client.served[index] = (arrival, time.time())
        return response

    def _body(self, client: _Client, index: int) -> bytes:
        """Body ``index`` for this client, rendering its book forward to it."""
        if self.constant is not None:
            return self.constant
        if client.book is None:
            client.book = self.dataset.book()
            client.body = client.book.render()
        while client.book.at < index:
            client.book.advance()
            client.body = client.book.render()
        body = client.body
        if index >= self.last:  # the last body: the book is no longer needed
            client.book = None
        return body

    async def plan(self, request: web.Request) -> web.Response:
        data = self.dataset
        return _json(
            {
                "trips": [[t.poll, t.account_number, t.rule] for t in data.trips],
                "changed": data.changed,
                "warmup": data.warmup,
            }
        )

    async def expect(self, request: web.Request) -> web.Response:
        name = (await request.json())["client"]
        self.clients[name] = _Client(announced=True)
        return _json({})

    async def watch(self, request: web.Request) -> web.Response:
        spec = await request.json()
        client = self.client(spec["client"])
        client.pid = int(spec["pid"])
        client.files = [Path(f) for f in spec.get("files", [])]
        client.watched.set()
        return _json({})

    async def wait(self, request: web.Request) -> web.Response:
        client = self.client(request.query["client"])
        wanted = int(request.query["requests"])
        timeout = float(request.query.get("timeout", "60"))
        async with client.arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    client.arrived.wait_for(lambda: client.requests >= wanted), timeout
                )
        return _json({"requests": client.requests})

    async def stats(self, request: web.Request) -> web.Response:
        name = request.query.get("client")
        if name is None:
            result: dict[str, Any] = {"requests": {n: c.requests for n, c in self.clients.items()}}
            if request.query.get("arrivals"):
                result["arrivals"] = {n: c.arrivals for n, c in self.clients.items()}
            return _json(result)
        client = self.client(name)
        return _json(
            {
                "requests": client.requests,
                "served": {str(k): v for k, v in client.served.items()},
                "probes": {str(k): v for k, v in client.probes.items()},
            }
        )

    async def release(self, request: web.Request) -> web.Response:
        self.client((await request.json())["client"]).released.set()
        return _json({})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_bench/plan", self.plan)
        app.router.add_post("/_bench/expect", self.expect)
        app.router.add_post("/_bench/watch", self.watch)
        app.router.add_get("/_bench/wait", self.wait)
        app.router.add_get("/_bench/stats", self.stats)
        app.router.add_post("/_bench/release", self.release)
        app.router.add_get("/{client}/accounts", self.accounts)
        return app


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(value), status=status, content_type="application/json")


async def serve(dataset: Dataset, port: int) -> None:
    api = FakeApi(dataset)
    runner = web.AppRunner(api.app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = runner.addresses[0][1]
    print(json.dumps({"port": bound}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--polls", type=int, required=True, help="measured bodies (with trips)")
    parser.add_argument("--warmup", type=int, default=0, help="churn-only bodies before them")
    parser.add_argument(
        "--storm", action="store_true", help="body 1 restricts every account at once"
    )
    parser.add_argument("--change-rate", type=float, default=0.01)
    parser.add_argument("--trips", type=int, default=3, help="rule trips per poll")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    dataset = generate(
        args.accounts, args.polls, args.change_rate, args.trips, args.seed, args.warmup,
        args.storm,
    )  # fmt: skip
    asyncio.run(serve(dataset, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
