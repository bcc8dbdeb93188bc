"""``lgsp demo``: the land-change registration through the bus and every national platform mock,
on the embedded default, ending with a verified exchange log; and a failing step says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bus.demo import run_demo

pytestmark = [pytest.mark.anyio, pytest.mark.live]


async def test_the_whole_story_passes_and_the_log_verifies(tmp_path: Path) -> None:
    lines: list[str] = []
    assert await run_demo(lines.append, tmp_path) == 0
    steps = [line for line in lines if line[:1] in "✓✗"]
    assert len(steps) == 8, lines
    assert all(step.startswith("✓") for step in steps), steps
    story = "\n".join(steps)
    for fact in (
        "found; name and birth date verified",
        "status 2, then 4",
        "tax notice of 19,250,000 VND",
        "payment.confirmed delivered",
        "(status 10)",
        "it is in their inbox",
        "exchange log verified by the auditor",
    ):
        assert fact in story
    listed = [line for line in lines if line.startswith("   ") and line.strip()[:1].isdigit()]
    kinds = {line.split()[2] for line in listed}
    assert kinds == {"call", "delivery", "callback"}
    # The story's stores stay in the directory given, the log among them.
    assert (tmp_path / "lgsp-audit.db").exists()


async def test_a_failing_step_says_why_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = {"path": "/api/v1/payment", "error_rate": 1, "error_statuses": [400]}
    monkeypatch.setenv("LGSP_MOCK_FAULTS_PAYGOV", json.dumps([rule]))
    lines: list[str] = []
    assert await run_demo(lines.append, tmp_path) == 1
    last = lines[-1]
    assert last.startswith("✗  5. pay: paygov/payment.create answered 422 upstream.rejected")
    assert all(line.startswith("✓") for line in lines[:-1] if line[:1] in "✓✗")
