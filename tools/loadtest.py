"""`make loadtest`: load llama-server with image chats sized from server.requestBudget, using NVIDIA's
AIPerf (a maintained benchmark tool: OpenAI chat with synthetic images, streaming TTFT and
inter-token latency, a JSON export), and print one table: requests, errors by HTTP status (400s
apart), TTFT p50/p95, inter-token latency, output tokens/s, and llama-server's own counters before
and after.

Before the load, a slot probe (stdlib threads) proves the server's queueing: `server.parallel`
requests at once are all processed with none deferred, and one more is deferred
(llamacpp:requests_processing and llamacpp:requests_deferred, scraped with the key).

usage: python -m tools.loadtest --url URL --api-key-file FILE --config Pulumi.<stack>.yaml [--duration 60] [--concurrency N]

`python -m tools.loadtest_job` prints a ConfigMap and a Job that run it in the cluster.

The exit status is 0 only when no request failed and the probe saw what the config promises. A
server that cannot be reached, a tokenizer that cannot be read or an AIPerf that fails is one
PROBLEM sentence, not a traceback.
Only the stdlib, core.catalog and core.metrics are imported outside the --config path, so the
in-cluster Job runs this same file from a ConfigMap with a plan given as JSON (--plan).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import metrics as m
from tools.key_proxy import KeyProxy
from tools.server_client import Client, KeyFileError, ServerError, chat_body, clip, image_side_for, png, read_key

ROOT = Path(__file__).resolve().parent.parent
# What the venv installs: every package pinned with its hashes (make lock writes it).
LOCK = ROOT / "requirements-aiperf.lock.txt"
CACHE = Path(os.environ.get("CACHE_DIR") or Path.home() / ".cache" / "llamacpp-aks")
# Chat template tokens around the prompt (<|im_start|>user ... <|im_end|> <|im_start|>assistant):
# kept out of the text so a request stays within server.requestBudget.promptTokens.
TEMPLATE_TOKENS = 32
# The tokenizer AIPerf sizes text prompts with: Qwen2-VL's own (downloaded from Hugging Face once).
DEFAULT_TOKENIZER = "Qwen/Qwen2-VL-7B-Instruct"
PROBE_TIMEOUT_SECONDS = 120
METRICS_POLL_SECONDS = 0.05
# Runs AIPerf with the argument list it reads from stdin (one JSON line), as `python -m aiperf`
# would: /proc/<pid>/cmdline, which anyone on the machine reads, shows this line and not the URL
# that holds the key proxy's token.
LAUNCH_AIPERF = (
    "import json, runpy, sys; sys.argv = ['aiperf', *json.loads(sys.stdin.readline())]; "
    "runpy.run_module('aiperf', run_name='__main__', alter_sys=True)"
)
# A Hugging Face model name (huggingface_hub's validate_repo_id: [namespace/]name, 96 characters at most).
HF_REPO_ID = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?", re.ASCII)


@dataclass(frozen=True)
class Plan:
    """What one load request looks like and how many slots serve it, from the stack config."""

    model: str  # server.alias
    parallel: int  # server.parallel
    images: int  # server.requestBudget.images
    image_side: int  # px: the largest square within server.requestBudget.imageMaxTokens
    prompt_tokens: int  # text tokens: server.requestBudget.promptTokens less the chat template
    output_tokens: int  # server.requestBudget.outputTokens


def plan_json(plan: Plan) -> str:
    """The plan as the Job passes it (--plan)."""
    return json.dumps(asdict(plan), sort_keys=True)


def plan_from_config(path: Path) -> Plan:
    from core.loading import load_stack  # deferred: the Job ships this file without core/loading.py

    c = load_stack(path)
    s, b = c.server, c.server.request_budget
    return Plan(
        model=s.alias,
        parallel=s.parallel,
        images=b.images,
        image_side=image_side_for(b.image_max_tokens),
        prompt_tokens=max(1, b.prompt_tokens - TEMPLATE_TOKENS),
        output_tokens=b.output_tokens,
    )


# --- the slot probe ------------------------------------------------------------------------


@dataclass
class Probe:
    processing_at_parallel: int = 0  # llamacpp:requests_processing once `parallel` requests are in
    deferred_at_parallel: int = 0  # llamacpp:requests_deferred at that moment
    deferred_with_one_more: int = 0  # the most deferred seen after one more request
    statuses: list[int] = field(default_factory=list)  # HTTP status of every probe request

    def problems(self, plan: Plan) -> list[str]:
        out = []
        if self.processing_at_parallel != plan.parallel or self.deferred_at_parallel != 0:
            out.append(
                f"server.parallel={plan.parallel}: {plan.parallel} requests at once gave {self.processing_at_parallel} "
                f"processing and {self.deferred_at_parallel} deferred; the server does not have the slots the config says."
            )
        if self.deferred_with_one_more != 1:
            out.append(
                f"server.parallel={plan.parallel}: one request more than the slots left {self.deferred_with_one_more} "
                f"deferred instead of 1; the server has more slots than the config says."
            )
        if any(s != 200 for s in self.statuses):
            out.append(f"server.requestBudget: probe requests within the budget answered {sorted(set(self.statuses))}.")
        return out


def wait_for(client: Client, until: Any, timeout: float) -> dict[str, float]:
    """Polls /metrics until `until(metrics)` holds; returns the metrics that satisfied it (or the last)."""
    deadline = time.monotonic() + timeout
    seen = client.metrics()
    while not until(seen) and time.monotonic() < deadline:
        time.sleep(METRICS_POLL_SECONDS)
        seen = client.metrics()
    return seen


def probe_slots(client: Client, plan: Plan) -> Probe:
    """`parallel` long requests at once, then one more: the first all run, the extra one waits."""
    image = png(plan.image_side, plan.image_side)
    # A long answer keeps every slot busy while the probe reads the counters.
    body = chat_body(plan.model, "Describe the image.", [image] * plan.images, plan.output_tokens, ignore_eos=True)
    probe = Probe()
    lock = threading.Lock()

    def send() -> None:
        try:
            status, _ = client.request("/v1/chat/completions", body)
        except ServerError:
            status = 0  # no answer: the metrics the probe reads tell the rest
        with lock:
            probe.statuses.append(status)

    # Daemons: a server that dies mid-probe ends the run with one sentence, not a wait for these.
    threads = [threading.Thread(target=send, daemon=True) for _ in range(plan.parallel)]
    for t in threads:
        t.start()
    seen = wait_for(client, lambda x: x.get(m.REQUESTS_PROCESSING, 0) >= plan.parallel, PROBE_TIMEOUT_SECONDS)
    probe.processing_at_parallel = int(seen.get(m.REQUESTS_PROCESSING, 0))
    probe.deferred_at_parallel = int(seen.get(m.REQUESTS_DEFERRED, 0))
    extra = threading.Thread(target=send, daemon=True)
    extra.start()
    threads.append(extra)
    seen = wait_for(
        client, lambda x: x.get(m.REQUESTS_DEFERRED, 0) >= 1 or not threads[0].is_alive(), PROBE_TIMEOUT_SECONDS
    )
    probe.deferred_with_one_more = int(seen.get(m.REQUESTS_DEFERRED, 0))
    for t in threads:
        t.join()
    return probe


# --- AIPerf --------------------------------------------------------------------------------


def aiperf_python() -> Path:
    """The Python of a venv holding AIPerf from its hashed lock file, made once under $CACHE_DIR.

    Its own venv: AIPerf brings about 115 packages (transformers, pandas, scipy, dash, ...) that
    nothing else here needs.
    """
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    venv = CACHE / f"venv-aiperf-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--require-hashes", "-r", str(LOCK)], check=True)
        (venv / ".installed").touch()
    return python


def aiperf_command(plan: Plan, url: str, duration: int, concurrency: int, tokenizer: str, artifacts: Path) -> list[str]:
    """AIPerf's argument list (after `aiperf`). No key: AIPerf 0.13 takes one only as --api-key
    (readable by anyone in /proc/<pid>/cmdline) or from a YAML config (${VAR}) that must then hold
    the whole benchmark (aiperf/config/flags/resolver.py), so `url` is a KeyProxy that adds the key
    to each request; its URL holds the proxy's token, so run_aiperf passes this list on stdin."""
    return [
        "profile",
        "--model", plan.model,
        "--url", url,
        "--endpoint-type", "chat",
        "--streaming",
        "--tokenizer", tokenizer,
        # Count tokens as the server does (its usage), not with the client's tokenizer.
        "--use-server-token-count",
        # llama-server reads max_tokens; ignore_eos makes every answer as long as the budget allows.
        "--use-legacy-max-tokens",
        "--extra-inputs", "ignore_eos:true",
        # llama-server closes idle keep-alive connections; a reused one would fail as a client error.
        "--connection-reuse-strategy", "never",
        "--concurrency", str(concurrency),
        "--benchmark-duration", str(duration),
        "--benchmark-grace-period", "600",
        "--isl", str(plan.prompt_tokens),
        "--isl-stddev", "0",
        "--osl", str(plan.output_tokens),
        "--osl-stddev", "0",
        "--image-batch-size", str(plan.images),
        "--image-width-mean", str(plan.image_side),
        "--image-width-stddev", "0",
        "--image-height-mean", str(plan.image_side),
        "--image-height-stddev", "0",
        "--image-format", "png",
        "--random-seed", "1",
        "--artifact-dir", str(artifacts),
        "--ui-type", "none",
    ]  # fmt: skip


# --- the run and its table -----------------------------------------------------------------


@dataclass
class Sampler:
    """Peaks of llama-server's gauges while the load runs, read from /metrics in the background."""

    client: Client
    peak_processing: float = 0
    peak_deferred: float = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                seen = self.client.metrics()
            except ServerError:
                seen = {}
            self.peak_processing = max(self.peak_processing, seen.get(m.REQUESTS_PROCESSING, 0))
            self.peak_deferred = max(self.peak_deferred, seen.get(m.REQUESTS_DEFERRED, 0))
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Report:
    plan: Plan
    concurrency: int
    duration: int
    probe: Probe
    requests: int  # answered requests (any status)
    errors: dict[str, int]  # "400", "503", "no status (ServerDisconnectedError)" -> count
    ttft_p50_ms: float
    ttft_p95_ms: float
    itl_p50_ms: float
    itl_p95_ms: float
    output_tokens_per_second: float
    before: dict[str, float]
    after: dict[str, float]
    peak_processing: float
    peak_deferred: float

    def problems(self) -> list[str]:
        out = self.probe.problems(self.plan)
        if self.errors:
            out.append(
                f"server.requestBudget: {sum(self.errors.values())} of {self.requests} requests within the budget "
                f"failed ({', '.join(f'{k}: {v}' for k, v in sorted(self.errors.items()))})."
            )
        if self.requests == 0:
            out.append("no request completed: raise DURATION, or check the URL and the key.")
        return out

    def table(self) -> str:
        p = self.plan

        def counter(name: str) -> str:
            before, after = self.before.get(name, 0), self.after.get(name, 0)
            return f"{before:g} → {after:g} (+{after - before:g})"

        errors = {k: v for k, v in self.errors.items() if k != "400"}
        rows = [
            ("load", f"{self.concurrency} concurrent for {self.duration} s; {p.images} x {p.image_side}x{p.image_side} px image, {p.prompt_tokens} prompt tokens, {p.output_tokens} output tokens"),
            ("requests", f"{self.requests}"),
            ("errors: HTTP 400", f"{self.errors.get('400', 0)}"),
            ("errors: other", ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"),
            ("TTFT p50 / p95", f"{self.ttft_p50_ms:.1f} / {self.ttft_p95_ms:.1f} ms"),
            ("inter-token latency p50 / p95", f"{self.itl_p50_ms:.2f} / {self.itl_p95_ms:.2f} ms"),
            ("output tokens/s", f"{self.output_tokens_per_second:.1f}"),
            (m.PROMPT_TOKENS_TOTAL, counter(m.PROMPT_TOKENS_TOTAL)),
            (m.TOKENS_PREDICTED_TOTAL, counter(m.TOKENS_PREDICTED_TOTAL)),
            (m.REQUESTS_DEFERRED, f"{self.before.get(m.REQUESTS_DEFERRED, 0):g} → {self.after.get(m.REQUESTS_DEFERRED, 0):g} (peak {self.peak_deferred:g} during the load)"),
            (m.REQUESTS_PROCESSING, f"peak {self.peak_processing:g} of {p.parallel} slots during the load"),
            ("slot probe", f"{p.parallel} at once: {self.probe.processing_at_parallel} processing, {self.probe.deferred_at_parallel} deferred; one more: {self.probe.deferred_with_one_more} deferred"),
        ]  # fmt: skip
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
        return "\n".join(lines)


def errors_by_status(export: dict[str, Any]) -> dict[str, int]:
    """AIPerf's error summary as {HTTP status or 'no status (type)': count}."""
    out: Counter[str] = Counter()
    for entry in export.get("error_summary") or []:
        details = entry["error_details"]
        code = details.get("code")
        out[str(code) if code else f"no status ({details.get('type')})"] += int(entry["count"])
    return dict(out)


def stat(export: dict[str, Any], metric: str, key: str) -> float:
    return float((export.get(metric) or {}).get(key) or 0.0)


def tokenizer_problem(tokenizer: str) -> str | None:
    """Why AIPerf could not read --tokenizer, where that shows without loading it: a folder must
    hold a readable tokenizer.json (or tokenizer_config.json); anything else must be a Hugging Face
    model name. None when it may load."""
    fix = "give TOKENIZER= (--tokenizer) a folder holding tokenizer.json, or a Hugging Face model name"
    shown = clip(tokenizer)
    folder = Path(tokenizer).expanduser()
    if folder.exists():
        if not folder.is_dir():
            return f"--tokenizer={shown} is a file, not a folder; {fix}."
        config = folder / "tokenizer.json"
        if not config.exists():
            if (folder / "tokenizer_config.json").is_file():
                return None
            return f"--tokenizer={shown} holds no tokenizer.json; {fix}."
        try:
            doc = json.loads(config.read_bytes())
        except OSError as err:
            return f"--tokenizer={shown}: its tokenizer.json cannot be read ({err.strerror}); {fix}."
        except (ValueError, RecursionError):
            return f"--tokenizer={shown}: its tokenizer.json is not JSON; {fix}."
        if not isinstance(doc, dict) or "model" not in doc:
            return f"--tokenizer={shown}: its tokenizer.json is not a Hugging Face tokenizer (no model); {fix}."
        return None
    if HF_REPO_ID.fullmatch(tokenizer):
        return None
    return f"--tokenizer={shown} is neither a folder here nor a Hugging Face model name; {fix}."


def run_aiperf(python: Path, args: list[str], artifacts: Path) -> dict[str, Any]:
    """AIPerf's JSON export after running it with `args` given on stdin (LAUNCH_AIPERF); a failure is
    one SystemExit sentence that names a file holding AIPerf's whole output."""
    result = subprocess.run(
        [str(python), "-c", LAUNCH_AIPERF],
        input=json.dumps(args) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    exports = sorted(artifacts.glob("*aiperf.json"))
    if result.returncode == 0 and exports:
        try:
            export = json.loads(exports[0].read_text())
        except (OSError, ValueError):
            export = None
        if isinstance(export, dict):
            return export
    output = result.stdout + result.stderr
    fd, log = tempfile.mkstemp(prefix="aiperf-", suffix=".log")  # mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(output)
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
    raise SystemExit(
        f"PROBLEM AIPerf failed (exit {result.returncode}, no export): {clip(last)}; its whole output is in {log}."
    )


def run(client: Client, plan: Plan, duration: int, concurrency: int, tokenizer: str, python: Path) -> Report:
    probe = probe_slots(client, plan)
    before = client.metrics()
    sampler = Sampler(client)
    watcher = threading.Thread(target=sampler.run, daemon=True)
    watcher.start()
    try:
        with tempfile.TemporaryDirectory() as tmp, KeyProxy(client.base, client.key) as proxy:
            artifacts = Path(tmp) / "aiperf"
            export = run_aiperf(
                python, aiperf_command(plan, proxy.url, duration, concurrency, tokenizer, artifacts), artifacts
            )
    finally:
        sampler.stop()
        watcher.join()
    after = client.metrics()
    errors = errors_by_status(export)
    return Report(
        plan=plan,
        concurrency=concurrency,
        duration=duration,
        probe=probe,
        requests=int(stat(export, "request_count", "avg")) + sum(errors.values()),
        errors=errors,
        ttft_p50_ms=stat(export, "time_to_first_token", "p50"),
        ttft_p95_ms=stat(export, "time_to_first_token", "p95"),
        itl_p50_ms=stat(export, "inter_token_latency", "p50"),
        itl_p95_ms=stat(export, "inter_token_latency", "p95"),
        output_tokens_per_second=stat(export, "output_token_throughput", "avg"),
        before=before,
        after=after,
        peak_processing=sampler.peak_processing,
        peak_deferred=sampler.peak_deferred,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of llama-server, e.g. http://127.0.0.1:8008")
    parser.add_argument("--api-key-file", required=True, type=Path, help="file holding the stack's apiKey")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="the stack's Pulumi.<stack>.yaml")
    source.add_argument(
        "--plan", help="the plan as JSON (what tools.loadtest_job puts in the Job), instead of --config"
    )
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, help="requests in flight (default server.parallel)")
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="tokenizer AIPerf sizes prompts with")
    parser.add_argument("--python", type=Path, help="a Python with aiperf installed (default: a venv made once)")
    args = parser.parse_args(argv)
    if args.plan:
        plan = Plan(**json.loads(args.plan))
    else:
        from core.loading import ConfigError  # deferred, as in plan_from_config

        try:
            plan = plan_from_config(args.config)
        except ConfigError as err:
            print(f"{args.config} is not a valid stack config:", *err.problems, sep="\n  ", file=sys.stderr)
            return 2
    problem = tokenizer_problem(args.tokenizer)
    if problem:
        print(f"PROBLEM {problem}")
        return 1
    try:
        key = read_key(args.api_key_file)
    except KeyFileError as err:
        print(f"PROBLEM {err}")
        return 1
    try:
        client = Client(args.url, key)
        # Reachable, HTTP, the key opens /metrics, and it is llama-server's: before any thread or AIPerf starts.
        if m.REQUESTS_PROCESSING not in client.metrics():
            raise ServerError(
                f"GET /metrics answered without llama-server's counters ({m.REQUESTS_PROCESSING}); "
                f"check that the URL is llama-server's, started with --metrics."
            )
        report = run(
            client,
            plan,
            args.duration,
            args.concurrency or plan.parallel,
            args.tokenizer,
            args.python or aiperf_python(),
        )
    except ServerError as err:
        print(f"PROBLEM {err}")
        return 1
    except subprocess.CalledProcessError as err:
        print(
            f"PROBLEM making AIPerf's venv failed (exit {err.returncode}); run make loadtest again online, or give --python."
        )
        return 1
    print(report.table())
    problems = report.problems()
    for problem in problems:
        print(f"PROBLEM {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
