"""Three replicas of the real image behind nginx, under steady load, while replicas fail and change.

    python -m deploy.replicas_check IMAGE OTHER_IMAGE BALANCER_IMAGE   # from the project root

On one Docker network the replicas answer to the name `poster-genres` through Docker's embedded
DNS (the same as `deploy.replicas: 3` in deploy/compose.replicas.yml), each run with
docker-compose.yml's restrictions, without a published port. nginx (deploy/nginx) publishes on
127.0.0.1 only; a client on loopback keeps WORKERS requests in flight, posting a real poster to
/predict. A replica joins the name only once Docker marks it healthy, as a Kubernetes endpoint
is added when ready. Scenarios, in order:

  baseline   3 replicas of IMAGE
  sigterm    `docker stop` of replica 1 (drains: readiness and /predict 503, then exits)
  sigkill    `docker kill` of replica 2 (in-flight connections reset)
  restore    two fresh replicas of IMAGE join
  rolling    each replica replaced in turn by one of OTHER_IMAGE (the other model version): the
             new one joins when healthy, then the old one is stopped (SIGTERM)
  after      3 replicas of OTHER_IMAGE

Every answer the client gets must be a 200 (a clean 503 or a connection error would be counted,
by kind and scenario); nginx's log counts the attempts it retried elsewhere, by kind. Every
answer during and after the rolling replacement must come from a healthy replica: no attempt may
reach a replica that is not listening yet. Bounded: DEADLINE_S overall, MAX_REQUESTS in all.
Everything it starts (containers, networks) is removed, whatever happens.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from deploy.dockerlib import compose_service, docker, run_flags, wait_healthy
from devkit.dataset import first_poster
from devkit.ports import free_port

WORKERS = 4
DEADLINE_S = 420
MAX_REQUESTS = 50_000
SETTLE_S = 8  # load kept on after each event, before the next


class Load:
    """WORKERS threads posting one poster in a loop to 127.0.0.1:port, tallied by scenario."""

    def __init__(self, port: int, poster: bytes) -> None:
        self.port, self.poster = port, poster
        self.scenario = "baseline"
        self.boundaries: list[tuple[float, str]] = [(time.time(), "baseline")]
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.versions: dict[str, Counter[str]] = defaultdict(Counter)
        self.sent = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(WORKERS)]

    def enter(self, scenario: str) -> None:
        self.scenario = scenario
        self.boundaries.append((time.time(), scenario))

    def scenario_at(self, when: float) -> str:
        current = self.boundaries[0][1]
        for start, scenario in self.boundaries:
            if when >= start:
                current = scenario
        return current

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)

    def _record(self, scenario: str, outcome: str, version: str | None = None) -> None:
        with self.lock:
            self.outcomes[scenario][outcome] += 1
            if version:
                self.versions[scenario][version] += 1

    def _work(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            with self.lock:
                if self.sent >= MAX_REQUESTS:
                    return
                self.sent += 1
            scenario = self.scenario
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request(
                    "POST", "/predict", body=self.poster, headers={"Content-Type": "image/jpeg"}
                )
                answer = connection.getresponse()
                body = answer.read()
                if answer.status == 200:
                    self._record(scenario, "200", json.loads(body)["version"])
                else:
                    code = json.loads(body).get("error", {}).get("code", "?")
                    self._record(scenario, f"{answer.status} {code}")
                if answer.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._record(scenario, f"connection error ({type(exc).__name__})")
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.05)


class Cluster:
    """The replicas and the balancer of one run, on networks of their own."""

    def __init__(self, service: dict[str, Any]) -> None:
        self.tag = f"pg-replicas-{uuid.uuid4().hex[:6]}"
        self.network, self.staging = self.tag, f"{self.tag}-staging"
        self.flags = run_flags(service)
        self.containers: list[str] = []
        self.serial = 0
        self.joined: list[tuple[str, float]] = []  # (address, when it joined the name)

    def up(self) -> None:
        docker("network", "create", self.network)
        docker("network", "create", self.staging)

    def replica(self, image: str) -> str:
        """Start a replica off the balancer's name; it joins `poster-genres` once healthy."""
        self.serial += 1
        name = f"{self.tag}-r{self.serial}"
        self.containers.append(name)
        docker("run", "--detach", "--name", name, "--network", self.staging, *self.flags, image)
        return name

    def join_when_healthy(self, *names: str) -> None:
        for name in names:
            wait_healthy(name, timeout=120)
            joining = time.time()
            docker("network", "connect", "--alias", "poster-genres", self.network, name)
            address = docker(
                "inspect", "--format",
                f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}', name,
            )  # fmt: skip
            self.joined.append((address, joining))
            docker("network", "disconnect", self.staging, name)

    def balancer(self, image: str, port: int) -> str:
        name = f"{self.tag}-nginx"
        self.containers.append(name)
        docker(
            "run", "--detach", "--name", name, "--network", self.network,
            "--publish", f"127.0.0.1:{port}:8080", "--read-only",
            "--tmpfs", "/tmp:size=64m,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", image,
        )  # fmt: skip
        return name

    def down(self) -> None:
        for name in reversed(self.containers):
            docker("rm", "--force", name, check=False)
        for network in (self.network, self.staging):
            docker("network", "rm", network, check=False)


def wait_balancer(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the balancer never answered /health/ready with 200")


def attempts(
    balancer: str, load: Load, joined: list[tuple[str, float]]
) -> tuple[dict[str, Counter[str]], int]:
    """From nginx's log, per scenario: the attempts it retried elsewhere, by kind; and how many
    attempts went to an address before any healthy replica had joined the name with it."""
    log = docker("logs", balancer, check=False)
    retried: dict[str, Counter[str]] = defaultdict(Counter)
    early = 0
    kinds = {"502": "502 refused/reset", "503": "503 draining", "504": "504 timeout"}
    for line in log.splitlines():
        fields = line.split('"')
        if len(fields) < 5 or "/predict" not in fields[4]:
            continue
        logged, duration, _status = fields[0].split()
        began = float(logged) - float(duration)
        statuses = [s.strip() for s in fields[1].split(",")]
        addresses = [a.strip().rsplit(":", 1)[0] for a in fields[3].split(",")]
        scenario = load.scenario_at(began)
        for status in statuses[:-1]:
            retried[scenario][kinds.get(status, status)] += 1
        for address in addresses:
            if not any(a == address and when <= began for a, when in joined):
                early += 1
    return retried, early


@dataclass(frozen=True)
class Images:
    """The images of a run (replicas-check.sh builds them)."""

    image: str  # the model version the replicas start with
    other: str  # the version they are rolled to
    balancer: str


@dataclass
class Run:
    """One run of the scenarios: each step below is one scenario, in the order `scenarios` runs
    them; each event is printed with its time as it happens, failures are kept for the end."""

    images: Images
    cluster: Cluster
    port: int
    started: float = field(default_factory=time.monotonic)
    failures: list[str] = field(default_factory=list)
    load: Load | None = None
    balancer: str = ""

    def mark(self, text: str) -> None:
        print(f"   {time.monotonic() - self.started:6.1f} s  {text}", flush=True)

    def settle(self, seconds: float = SETTLE_S) -> None:
        """Keep the load on for `seconds`; fails past the overall deadline."""
        if time.monotonic() - self.started > DEADLINE_S:
            raise RuntimeError(f"over the {DEADLINE_S} s deadline")
        time.sleep(seconds)

    def baseline(self, poster: bytes) -> list[str]:
        """3 replicas of the image joined, the balancer up, the load on it: the replicas."""
        self.cluster.up()
        replicas = [self.cluster.replica(self.images.image) for _ in range(3)]
        self.cluster.join_when_healthy(*replicas)
        self.mark(f"3 replicas of {self.images.image} healthy")
        self.balancer = self.cluster.balancer(self.images.balancer, self.port)
        wait_balancer(self.port)
        self.load = Load(self.port, poster)
        self.load.start()
        self.mark(f"load: {WORKERS} concurrent clients on 127.0.0.1:{self.port}")
        self.settle(10)
        return replicas

    def sigterm(self, replica: str) -> None:
        self.enter("sigterm")
        self.mark("docker stop (SIGTERM) replica 1")
        docker("stop", replica, timeout=60)
        self.mark("replica 1 exited")
        self.settle()

    def sigkill(self, replica: str) -> None:
        self.enter("sigkill")
        self.mark("docker kill (SIGKILL) replica 2")
        docker("kill", replica)
        self.settle()

    def restore(self, gone: list[str]) -> list[str]:
        """Two fresh replicas of the image joined, then the `gone` ones removed: the fresh ones."""
        self.enter("restore")
        fresh = [self.cluster.replica(self.images.image) for _ in range(2)]
        self.cluster.join_when_healthy(*fresh)
        self.mark("2 fresh replicas healthy and joined")
        self.settle()
        for name in gone:
            docker("rm", "--force", name, check=False)
        return fresh

    def rolling(self, serving: list[str]) -> None:
        """Each of `serving` replaced in turn: the new one joins when healthy, then the old one
        is stopped (SIGTERM)."""
        self.enter("rolling")
        for number, old in enumerate(serving, 1):
            new = self.cluster.replica(self.images.other)
            self.cluster.join_when_healthy(new)
            self.mark(f"rolling {number}/3: new replica of {self.images.other} healthy and joined")
            docker("stop", old, timeout=60)
            self.mark(f"rolling {number}/3: old replica stopped (SIGTERM)")

    def after(self) -> None:
        self.enter("after")
        self.settle()
        self.mark("done")

    def enter(self, scenario: str) -> None:
        if self.load is not None:
            self.load.enter(scenario)

    def scenarios(self, poster: bytes) -> None:
        """Every scenario in order; the first failure ends the run and is recorded."""
        try:
            replicas = self.baseline(poster)
            self.sigterm(replicas[0])
            self.sigkill(replicas[1])
            fresh = self.restore(replicas[:2])
            self.rolling([replicas[2], *fresh])
            self.after()
        except Exception as exc:
            self.failures.append(str(exc))

    def tear_down(self) -> tuple[dict[str, Counter[str]], int]:
        """The load stopped, nginx's log read (see `attempts`), everything removed."""
        try:
            if self.load is not None:
                self.load.finish()
            if self.balancer and self.load is not None:
                return attempts(self.balancer, self.load, self.cluster.joined)
            return {}, 0
        finally:
            self.cluster.down()


def client_failures(load: Load) -> list[str]:
    """Prints what the clients got per scenario; every answer but a 200 is a failure, and so is
    the first version still answering after the rolling replacement."""
    failures = []
    print("   client outcomes by scenario (and model versions answering):")
    for scenario, outcomes in load.outcomes.items():
        versions = dict(load.versions[scenario])
        print(f"     {scenario:9} {dict(outcomes)}  versions {versions}")
        for outcome, count in outcomes.items():
            if outcome != "200":
                failures.append(f"{scenario}: {count} x {outcome}")
    old_version = next(iter(load.versions["baseline"]), None)
    if old_version and old_version in load.versions.get("after", {}):
        failures.append(f"{old_version} still answering after the rolling replacement")
    return failures


def balancer_failures(retried: dict[str, Counter[str]], early: int) -> list[str]:
    """Prints nginx's retries per scenario; an attempt that reached a replica before it was
    healthy is a failure."""
    print("   nginx attempts retried on another replica, by scenario and kind:")
    for scenario, counts in retried.items():
        print(f"     {scenario:9} {dict(counts)}")
    print(f"   attempts sent to an address before a healthy replica joined with it: {early}")
    return [f"{early} attempts reached a replica before it was healthy"] if early else []


def main(argv: list[str] | None = None) -> int:
    image, other, balancer = (sys.argv[1:] if argv is None else argv)[:3]
    run = Run(Images(image, other, balancer), Cluster(compose_service()), free_port())
    poster = first_poster().read_bytes()
    try:
        run.scenarios(poster)
    finally:
        retried, early = run.tear_down()
    failures = run.failures
    if run.load is not None:
        failures += client_failures(run.load)
    failures += balancer_failures(retried, early)
    print(f"   total {time.monotonic() - run.started:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
