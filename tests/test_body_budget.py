"""The body budget's arithmetic and where it finds the memory limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.body_budget import BODY_COPIES, BodyBudget, _limit_files, default_budget_mb


def test_a_body_is_charged_twice_and_refused_whole_when_it_does_not_fit() -> None:
    async def scenario() -> None:
        budget = BodyBudget(capacity_bytes=1000)
        first = budget.try_charge(300)
        assert first == 600 == BODY_COPIES * 300
        assert budget.try_charge(201) is None  # 600 + 402 > 1000: nothing charged
        assert budget.charged == 600
        second = budget.try_charge(200)
        assert second == 400 and budget.charged == 1000
        budget.release(first)
        budget.release(second)
        assert budget.charged == 0

    asyncio.run(scenario())


def test_the_limit_is_looked_for_in_the_process_cgroup_then_the_mount_root() -> None:
    v2 = _limit_files(["0::/kubepods/pod1/abc"])
    assert v2 == [
        Path("/sys/fs/cgroup/kubepods/pod1/abc/memory.max"),
        Path("/sys/fs/cgroup/memory.max"),
    ]
    v1 = _limit_files(["4:memory:/docker/abc", "3:cpu,cpuacct:/docker/abc"])
    assert v1 == [
        Path("/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ]


def test_the_default_budget_never_refuses_the_largest_allowed_body() -> None:
    assert default_budget_mb(64 * 2**20) >= BODY_COPIES * 64
