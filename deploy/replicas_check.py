"""Three replicas of the real image behind nginx, under steady load, while replicas fail and change.

    python deploy/replicas_check.py IMAGE OTHER_IMAGE BALANCER_IMAGE

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
import socket
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from dockerlib import compose_service, docker, run_flags, wait_healthy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "Multi_Label_dataset"
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
    def __init__(self, service: dict[str, object]) -> None:
        self.tag = f"pg-replicas-{uuid.uuid4().hex[:6]}"
        self.network, self.staging = self.tag, f"{self.tag}-staging"
        self.flags = run_flags(service)  # type: ignore[arg-type]
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


def main() -> int:
    image, other_image, balancer_image = sys.argv[1:4]
    started = time.monotonic()
    poster_id = (DATA / "train.csv").read_text().splitlines()[1].split(",")[0]
    poster = (DATA / "Images" / f"{poster_id}.jpg").read_bytes()
    cluster = Cluster(compose_service())
    port = free_port()
    timeline: list[str] = []
    failures: list[str] = []
    load: Load | None = None

    def mark(text: str) -> None:
        line = f"{time.monotonic() - started:6.1f} s  {text}"
        timeline.append(line)
        print(f"   {line}", flush=True)

    def settle(seconds: float = SETTLE_S) -> None:
        if time.monotonic() - started > DEADLINE_S:
            raise RuntimeError(f"over the {DEADLINE_S} s deadline")
        time.sleep(seconds)

    balancer = ""
    try:
        cluster.up()
        replicas = [cluster.replica(image) for _ in range(3)]
        cluster.join_when_healthy(*replicas)
        mark(f"3 replicas of {image} healthy")
        balancer = cluster.balancer(balancer_image, port)
        wait_balancer(port)
        load = Load(port, poster)
        load.start()
        mark(f"load: {WORKERS} concurrent clients on 127.0.0.1:{port}")
        settle(10)

        load.enter("sigterm")
        mark("docker stop (SIGTERM) replica 1")
        docker("stop", replicas[0], timeout=60)
        mark("replica 1 exited")
        settle()

        load.enter("sigkill")
        mark("docker kill (SIGKILL) replica 2")
        docker("kill", replicas[1])
        settle()

        load.enter("restore")
        fresh = [cluster.replica(image), cluster.replica(image)]
        cluster.join_when_healthy(*fresh)
        mark("2 fresh replicas healthy and joined")
        settle()
        for name in replicas[:2]:
            docker("rm", "--force", name, check=False)
        serving = [replicas[2], *fresh]

        load.enter("rolling")
        for number, old in enumerate(serving, 1):
            new = cluster.replica(other_image)
            cluster.join_when_healthy(new)
            mark(f"rolling {number}/3: new replica of {other_image} healthy and joined")
            docker("stop", old, timeout=60)
            mark(f"rolling {number}/3: old replica stopped (SIGTERM)")
        load.enter("after")
        settle()
        mark("done")
    except Exception as exc:
        failures.append(str(exc))
    finally:
        if load is not None:
            load.finish()
        retried, early = attempts(balancer, load, cluster.joined) if balancer and load else ({}, 0)
        cluster.down()

    if load is not None:
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
    print("   nginx attempts retried on another replica, by scenario and kind:")
    for scenario, counts in retried.items():
        print(f"     {scenario:9} {dict(counts)}")
    print(f"   attempts sent to an address before a healthy replica joined with it: {early}")
    if early:
        failures.append(f"{early} attempts reached a replica before it was healthy")
    print(f"   total {time.monotonic() - started:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
