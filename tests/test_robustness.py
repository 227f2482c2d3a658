"""Hostile and unlucky traffic: malformed multipart, floods, clients that vanish, CORS."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import make_settings, poster_bytes
from tests.service_process import running_service
from tests.test_api import assert_error, predict

POSTER = poster_bytes()
MULTIPART = {"Content-Type": "multipart/form-data; boundary=x"}


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        (
            {"files": [("file", ("a.jpg", POSTER)), ("file", ("b.jpg", POSTER))]},
            422,
            "too_many_files",
        ),
        ({"content": b"", "headers": MULTIPART}, 422, "missing_file"),
        (
            {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}},
            400,
            "bad_request",
        ),
        ({"json": {"file": "not multipart"}}, 415, "unsupported_media_type"),
        (
            {"files": {"file": ("a.jpg", POSTER)}, "data": {"note": "x" * 1_500_000}},
            400,
            "bad_request",
        ),
        (
            {"files": {"file": ("a.jpg", POSTER)}, "data": {f"f{i}": "1" for i in range(3000)}},
            400,
            "bad_request",
        ),
        (
            {"content": b"--x\r\nContent-Disposition: nonsense\r\n\r\nzz", "headers": MULTIPART},
            400,
            "bad_request",
        ),
    ],
    ids=[
        "two-files",
        "empty-body",
        "no-boundary",
        "json",
        "1.5MB-text-field",
        "3000-fields",
        "garbage",
    ],
)
def test_malformed_multipart_gets_the_error_contract(
    client: TestClient, request_kwargs: dict, status: int, code: str
) -> None:
    assert_error(client.post("/predict", **request_kwargs), status, code)
    assert predict(client).status_code == 200


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_wrong_methods_are_405(client: TestClient, method: str) -> None:
    assert_error(getattr(client, method)("/predict"), 405, "method_not_allowed")


def test_flood_gets_only_200s_and_fast_503s_while_health_answers(tiny_store: Path) -> None:
    settings = make_settings(
        tiny_store,
        max_queue=4,
        max_batch_files=2,
        max_batch_size=2,
        decode_workers=1,
        max_batch_wait_ms=20,
    )
    app = create_app(settings)
    health_codes: list[int] = []
    stop = threading.Event()
    with TestClient(app) as flooded:

        def poll_health() -> None:
            while not stop.is_set():
                health_codes.append(flooded.get("/health").status_code)
                time.sleep(0.02)

        poller = threading.Thread(target=poll_health)
        poller.start()
        with ThreadPoolExecutor(48) as pool:
            responses = list(pool.map(lambda _: predict(flooded), range(96)))
        stop.set()
        poller.join()
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}
    assert codes.count(200) >= settings.max_batch_size
    assert codes.count(503) > 0, "the flood never overflowed the queue: the test proves nothing"
    for refused in (r for r in responses if r.status_code == 503):
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["Retry-After"] == "1"
    assert health_codes and set(health_codes) == {200}


@pytest.fixture
def live_server(
    tiny_store: Path, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    spool = tmp_path / "spool"
    spool.mkdir()
    with running_service(tiny_store, {"TMPDIR": str(spool)}) as running:
        yield running.url, running.process, spool


@pytest.mark.slow
def test_clients_that_vanish_mid_upload_leak_nothing(live_server) -> None:
    url, process, spool = live_server
    port = int(url.rsplit(":", 1)[1])
    fds = Path(f"/proc/{process.pid}/fd")
    predict_once = lambda: httpx.post(f"{url}/predict", files={"file": ("p.jpg", POSTER)})  # noqa: E731
    assert predict_once().status_code == 200
    before = len(list(fds.iterdir()))
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n\r\n"
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n\r\n'
    )
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + b"\0" * 2_000_000)  # more than the 1 MB spooled in memory
    time.sleep(1.0)
    assert predict_once().status_code == 200
    assert len(list(fds.iterdir())) <= before + 2
    assert list(spool.iterdir()) == []


def test_cors_is_off_by_default_and_an_allow_list_when_configured(
    client: TestClient, tiny_store: Path
) -> None:
    asked = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=asked).headers
    app = create_app(make_settings(tiny_store, cors_origins=["https://example.org"]))
    with TestClient(app) as allowed:
        preflight = allowed.options("/predict", headers=asked)
        assert preflight.headers["access-control-allow-origin"] == "https://example.org"
        assert "access-control-allow-credentials" not in preflight.headers
        other = allowed.options("/predict", headers={**asked, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_wildcard_cors_is_refused_at_startup(tiny_store: Path) -> None:
    with pytest.raises(ValueError, match="explicitly"):
        make_settings(tiny_store, cors_origins=["*"])


def test_error_bodies_carry_no_traceback_path_or_version(client: TestClient) -> None:
    for response in (
        predict(client, b"garbage"),
        client.get("/nope"),
        client.post(
            "/predict", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
        ),
    ):
        text = response.text
        assert "Traceback" not in text and "/work" not in text and "site-packages" not in text
        assert "python" not in text.lower()


@pytest.mark.slow
def test_serves_as_an_unprivileged_user_with_only_tmp_writable(tiny_store: Path) -> None:
    """As in the image: nobody's uid, code and model read-only, a private writable TMPDIR."""
    import shutil as sh

    setpriv = sh.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop privileges")
    import tempfile

    # pytest's tmp_path sits under a root-only folder; nobody needs a path it may traverse.
    shared = Path(tempfile.mkdtemp(prefix="poster-genres-ro-"))
    store = shared / "store"
    sh.copytree(tiny_store, store)
    scratch = shared / "tmp"
    scratch.mkdir()
    for path in (shared, store, *store.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o444)
    os.chown(scratch, 65534, 65534)
    env = {"HOME": "/nonexistent", "TMPDIR": str(scratch)}
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        with running_service(store, env, prefix=drop, inherit_env=False) as running:
            answer = httpx.post(f"{running.url}/predict", files={"file": ("p.jpg", POSTER)})
            assert answer.status_code == 200
            status = Path(f"/proc/{running.process.pid}/status").read_text()
            assert int(status.split("Uid:")[1].split()[0]) == 65534
    finally:
        sh.rmtree(shared, ignore_errors=True)


def test_a_jpeg_scan_bomb_is_refused_within_50_ms_by_a_real_server(tiny_store: Path) -> None:
    """Each scan of a progressive JPEG is a pass over the whole image: the scan count is checked
    before decoding (the pixel limit alone let 14 minutes of decoding through)."""
    from tests.service_process import running_service
    from tests.test_imaging import progressive_jpeg

    bomb = progressive_jpeg(extra_scans=190)
    with running_service(tiny_store) as service, httpx.Client(base_url=service.url) as client:
        upload = {"file": ("bomb.jpg", bomb, "image/jpeg")}
        client.post("/predict", files={"file": ("ok.jpg", progressive_jpeg(), "image/jpeg")})
        started = time.perf_counter()
        response = client.post("/predict", files=upload, timeout=30)
        elapsed = time.perf_counter() - started
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "image_too_large"
        assert "200 scans" in response.json()["error"]["message"]
        assert elapsed < 0.05, f"{elapsed * 1000:.0f} ms"
        normal = client.post(
            "/predict", files={"file": ("p.jpg", progressive_jpeg(), "image/jpeg")}
        )
        assert normal.status_code == 200


def test_a_jpeg_of_a_hundred_thousand_comments_is_400_from_a_real_server(tiny_store: Path) -> None:
    """Pillow reads header segments in Python, on the event loop for the header check: a million
    empty comments (3.9 MB) held it for 2.5 s, and the poster was then answered 200."""
    comments = POSTER[:2] + b"\xff\xfe\x00\x02" * 100_000 + POSTER[2:]
    with running_service(tiny_store) as service, httpx.Client(base_url=service.url) as client:
        answer = client.post("/predict", files={"file": ("p.jpg", comments)}, timeout=30)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_image"
        assert "marker segments" in answer.json()["error"]["message"]
        assert client.post("/predict", files={"file": ("p.jpg", POSTER)}).status_code == 200


def test_a_jpeg_claiming_more_pixels_than_it_carries_is_400_from_a_real_server(
    tiny_store: Path,
) -> None:
    """It was answered 200 with the missing part filled grey."""
    from tests.service_process import running_service
    from tests.test_imaging import jpeg_claiming

    with running_service(tiny_store) as service, httpx.Client(base_url=service.url) as client:
        short = client.post("/predict", files={"file": ("p.jpg", jpeg_claiming((4000, 4000)))})
        assert short.status_code == 400
        assert short.json()["error"]["code"] == "invalid_image"
        assert "data ends before the image does" in short.json()["error"]["message"]
        whole = client.post("/predict", files={"file": ("p.jpg", jpeg_claiming((400, 600)))})
        assert whole.status_code == 200


def _threads(pid: int) -> dict[str, int]:
    """The process's threads: OS name -> nice value."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            threads[(task / "comm").read_text().strip()] = int(
                stat[stat.rindex(")") + 2 :].split()[16]
            )
    return threads


def test_uploads_declaring_heavy_decoding_decode_alone_at_the_lowest_priority(
    tiny_store: Path,
) -> None:
    """A 62 KiB progressive JPEG under the scan cap cost 2 s of CPU: such uploads may not take
    the decode slots or the cores from real posters."""
    big = poster_bytes(size=(3000, 3000), quality=60)  # 9 MP: more than any poster needs
    with running_service(tiny_store) as service, httpx.Client(base_url=service.url) as client:
        pid = service.process.pid
        assert client.post("/predict", files={"file": ("p.jpg", POSTER)}).status_code == 200
        assert "decode-heavy_0" not in _threads(pid)  # posters never touch the heavy lane
        answer = client.post("/predict", files={"file": ("big.jpg", big)}, timeout=30)
        assert answer.status_code == 200
        threads = _threads(pid)
        assert threads["decode-heavy_0"] == 19
        assert threads["decode_0"] == 0


def test_declared_work_is_pixels_times_passes_from_the_header() -> None:
    from poster_genres.preprocessing import DeclaredWork, declared_work
    from tests.test_imaging import progressive_jpeg

    assert declared_work(poster_bytes(size=(300, 444))) == DeclaredWork(300, 444, 1)
    assert declared_work(progressive_jpeg()) == DeclaredWork(400, 600, 10)
    bomb = declared_work(progressive_jpeg(extra_scans=40))
    assert bomb is not None and bomb.passes == 400 * 600 * 50
    assert declared_work(poster_bytes(size=(40, 30), fmt="PNG")) == DeclaredWork(40, 30, 1)
    assert declared_work(b"not an image") is None


def test_refusals_of_excessive_uploads_are_paced_while_posters_are_answered_at_once(
    tiny_store: Path,
) -> None:
    """Four clients re-sending a bomb back to back got 150 refusals a second and took 40% of
    the predictions' throughput: after a burst of 4, these refusals take turns (here 5 a second),
    and nothing else waits for them."""
    from tests.test_imaging import progressive_jpeg

    bomb = {"file": ("bomb.jpg", progressive_jpeg(extra_scans=190), "image/jpeg")}
    env = {"POSTER_EXCESS_REFUSALS_PER_S": "5"}
    with running_service(tiny_store, env) as service, httpx.Client(base_url=service.url) as client:
        assert client.post("/predict", files={"file": ("p.jpg", POSTER)}).status_code == 200
        waits = []
        for _ in range(8):
            started = time.perf_counter()
            response = client.post("/predict", files=bomb, timeout=30)
            waits.append(time.perf_counter() - started)
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "image_too_large"
        assert max(waits[:4]) < 0.1, waits  # the burst: answered at once
        assert min(waits[4:]) > 0.1, waits  # then one turn each (0.2 s)
        assert sum(waits) > 0.7, waits
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(client.post, "/predict", files=bomb, timeout=30)
            time.sleep(0.05)
            started = time.perf_counter()
            poster = httpx.post(f"{service.url}/predict", files={"file": ("p.jpg", POSTER)})
            assert poster.status_code == 200
            assert time.perf_counter() - started < 0.15  # a poster never waits for a bomb's turn
            assert not waiting.done()
            assert waiting.result().status_code == 422


def test_pace_gives_a_burst_then_turns_and_never_waits_longer_than_its_cap() -> None:
    from app.pace import Pace

    now = [100.0]
    pace = Pace(per_s=2, burst=3, max_wait_s=1.0, clock=lambda: now[0])
    assert [pace.wait_s() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [pace.wait_s() for _ in range(3)] == [0.5, 1.0, 1.0]  # the third is capped
    now[0] += 10  # quiet for a while: the burst is back
    assert [pace.wait_s() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_a_refusal_waiting_for_its_turn_holds_no_explanation_slot(tiny_store: Path) -> None:
    """An excessive /explain upload waited for its turn while counting as an explanation in
    progress (and was then charged as explaining time), so real explanations got 503."""
    from tests.test_imaging import progressive_jpeg

    bomb = {"file": ("bomb.jpg", progressive_jpeg(extra_scans=190), "image/jpeg")}
    env = {"POSTER_EXCESS_REFUSALS_PER_S": "1", "POSTER_MAX_EXPLANATIONS": "1"}
    with running_service(tiny_store, env) as service, httpx.Client(base_url=service.url) as client:
        for _ in range(4):  # the burst, answered at once
            assert client.post("/predict", files=bomb).status_code == 422
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.post, f"{service.url}/explain", files=bomb, timeout=30)
            time.sleep(0.3)
            assert not waiting.done()  # its turn is a second away
            explained = client.post("/explain", files={"file": ("p.jpg", POSTER)}, timeout=30)
            assert explained.status_code == 200
            assert waiting.result().status_code == 422
