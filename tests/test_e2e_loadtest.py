"""`make loadtest` (tools/loadtest.py: the slot probe, then AIPerf) run briefly against the real
llama-server of the pinned release (CPU build) serving the tiny Qwen2-VL, with requests sized from
the stack's requestBudget."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core import metrics as m
from tests.conftest import Server, tiny_stack_config, write_stack_file
from tests.httpfiles import pids_with_in_argv
from tests.tiny_qwen2vl import TinyModel
from tests.tiny_tokenizer import write_tokenizer
from tools import loadtest
from tools.key_proxy import KeyProxy
from tools.server_client import Client, read_key

pytestmark = pytest.mark.e2e

DURATION_SECONDS = 8


@pytest.fixture(scope="module")
def plan(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> loadtest.Plan:
    return loadtest.plan_from_config(write_stack_file(tmp_path_factory.mktemp("stack"), tiny_stack_config(tiny)))


@dataclass
class ArgvWatch:
    """Every process seen, while the load runs, with the API key or the key proxy's token (which
    opens the key to whoever holds it) in its argument list."""

    secret: str
    proxies: list[KeyProxy] = field(default_factory=list)  # each KeyProxy the run starts
    seen: set[str] = field(default_factory=set)
    polls: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for secret in [self.secret, *(p.token for p in list(self.proxies))]:
                self.seen.update(pids_with_in_argv(secret))
            self.polls += 1


@pytest.fixture(scope="module")
def watched_run(
    config_server: Server, key_file: Path, plan: loadtest.Plan, tmp_path_factory: pytest.TempPathFactory
) -> tuple[loadtest.Report, ArgvWatch]:
    tokenizer = write_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    client = Client(config_server.base, read_key(key_file))
    python = loadtest.aiperf_python()
    watch = ArgvWatch(client.key)

    class WatchedProxy(KeyProxy):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            watch.proxies.append(self)

    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(loadtest, "KeyProxy", WatchedProxy)
            result = loadtest.run(client, plan, DURATION_SECONDS, plan.parallel, str(tokenizer), python)
    finally:
        watch.stop.set()
        watcher.join()
    return result, watch


@pytest.fixture(scope="module")
def report(watched_run: tuple[loadtest.Report, ArgvWatch]) -> loadtest.Report:
    return watched_run[0]


def test_neither_the_key_nor_the_proxys_token_is_in_an_argument_list_while_the_load_runs(watched_run):
    report, watch = watched_run
    assert report.requests > 0 and watch.polls >= DURATION_SECONDS, "the watch did not cover the load"
    assert len(watch.proxies) == 1, "the run's key proxy was not watched"
    assert watch.seen == set(), f"processes {sorted(watch.seen)} had the API key or the token in their argument list"


def test_requests_within_the_budget_all_succeed(report, capsys):
    with capsys.disabled():
        print(f"\n[loadtest] CPU ({os.cpu_count()} cores), tiny model:\n{report.table()}")
    assert report.requests > 0
    assert report.errors == {}


def test_parallel_requests_are_all_processed_without_deferral(report, plan):
    assert (report.probe.processing_at_parallel, report.probe.deferred_at_parallel) == (plan.parallel, 0)


def test_one_request_more_than_the_slots_is_deferred(report):
    assert report.probe.deferred_with_one_more == 1


def test_server_counted_every_answer_at_the_budgets_length(report, plan):
    """ignore_eos makes each answer outputTokens long, so the server's counter grows by exactly that much."""
    predicted = report.after[m.TOKENS_PREDICTED_TOTAL] - report.before[m.TOKENS_PREDICTED_TOTAL]
    assert predicted == report.requests * plan.output_tokens


def test_a_run_without_problems_reports_none(report):
    assert report.problems() == []
