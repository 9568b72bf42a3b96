"""The benchmarks are run by hand; this only keeps them from rotting (a tiny run each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bot_latency_measures_every_update_of_every_admin(tmp_path: Path) -> None:
    results = tmp_path / "bot_latency.json"
    # Both bots, with and without the rate limiter; SQLite in a temporary directory.
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bot_latency.py"), "--admins", "3",
         "--think-ms", "0-10", "--variants", "bare+limiter,chainmail", "--json", str(results)],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    runs = json.loads(results.read_text())
    assert [run["variant"] for run in runs] == ["bare+limiter", "chainmail"]
    for run in runs:
        assert run["expected_updates"] == 3 * 16
        assert run["updates"] == run["expected_updates"]
        assert len(run["latencies_ms"]) == run["updates"]
        assert all(latency > 0 for latency in run["latencies_ms"])


def test_idle_tick_bench_runs_a_tick_with_rows_waiting(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "idle_tick.py"), "--waiting", "500",
         "--ticks", "3", "--databases", "sqlite"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert "sqlite: 500 waiting" in run.stdout
    assert "ratio to baseline" in run.stdout


def bench_output(tmp_path: Path, script: str, *arguments: str) -> str:
    """What a tiny run of bench/`script` printed (it must succeed within 3 minutes)."""
    command = [sys.executable, str(ROOT / "bench" / script), *arguments]
    run = subprocess.run(
        command, cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180
    )
    return run.stdout


def test_frequency_caps_bench_claims_with_and_without_the_cap(tmp_path: Path) -> None:
    printed = bench_output(
        tmp_path, "frequency_caps.py", "--customers", "2000", "--batches", "2",
        "--databases", "sqlite",
    )  # fmt: skip
    assert "sqlite: claim of 500: no cap (baseline)" in printed
    assert "ratio to baseline" in printed
    assert "reachable 1,000" in printed


def test_interleave_bench_measures_every_small_message(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "interleave.py"), "--big", "300", "--tick", "1",
         "--spacing", "1", "--databases", "sqlite"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert "small chains alone: p50" in run.stdout
    assert "ticks of 1 s" in run.stdout


def test_playground_start_times_both_starts_against_the_baseline(tmp_path: Path) -> None:
    results = tmp_path / "playground_start.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "playground_start.py"), "--repeat", "1",
         "--no-demo-shop", "--json", str(results)],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    figures = json.loads(results.read_text())
    [measured] = figures["rounds"]
    assert all(seconds > 0 for seconds in measured.values())
    for start in ("first", "restart"):
        assert measured[f"bot_{start}"] >= measured[start]
        assert figures["ratio"][start] == measured[start] / measured["baseline"]


def test_stats_bench_measures_stats_and_each_fact_on_both_databases(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "stats.py"), "--customers", "400", "--orders", "400",
         "--updates", "120", "--runs", "1", "--facts", "3",
         "--scratch", f"bench_stats_smoke_{os.getpid()}"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert "400 orders, 120 order updates" in done.stdout
    for kind in ("sqlite", "postgresql"):
        assert f"{kind}: rebuild" in done.stdout
        for fact in ("open", "order", "update", "send"):
            assert f"{kind}: {fact} " in done.stdout


def test_orders_bench_ingests_new_orders_and_updates_in_every_phase(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "orders.py"), "--orders", "2000", "--customers",
         "300", "--repeat", "1", "--scratch", f"bench_orders_smoke_{os.getpid()}"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert "1,400 new orders and 600 updates" in done.stdout
    for kind in ("sqlite", "postgresql"):
        for phase in ("bare", "api", "http"):
            assert f"{kind}: {phase} " in done.stdout
        assert f"  {kind} api: " in done.stdout
        assert "1,400 orders, 2,000 states stored" in done.stdout


def test_soak_sends_mixed_and_hostile_traffic_without_a_server_error(tmp_path: Path) -> None:
    results = tmp_path / "soak.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.05",
         "--concurrency", "2", "--hostile-percent", "20", "--json", str(results)],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    figures = json.loads(results.read_text())
    assert figures["requests"] > 0
    assert figures["hostile"] > 0
    assert figures["server_errors"] == 0


def test_replan_bench_updates_every_planned_row_through_chains_update(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "replan.py"), "--customers", "300",
         "--repeat", "2", "--databases", "sqlite"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert "300 planned" in run.stdout
    assert "update/bare" in run.stdout


def test_segments_bench_counts_and_plans_beside_its_baselines(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "segments.py"), "--customers", "300",
         "--repeat", "1", "--databases", "sqlite"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert "count: equals: 100 rows" in run.stdout
    assert "segment/bare" in run.stdout
