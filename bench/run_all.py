"""Run every benchmark and the fault-injection suite; write BENCHMARKS.md at the repository root.

    python -m bench.run_all                      # everything (several minutes on 2 cores)
    python -m bench.run_all --only ack credits   # some sections; the others keep their last figures
    python -m bench.run_all --fault-trials 300   # also a separate N-kill run of tests/faults/test_kill_restart.py

Each benchmark runs as its own subprocess (``python -m bench.<name>``) and prints markdown; its
output goes into its section verbatim, with the command that reproduces it. A benchmark that is
missing or fails is reported as "not available" and the run goes on. Sections are delimited by
HTML comments, so a partial run replaces only what it ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "BENCHMARKS.md"
CI_TRIALS = 100  # tests/faults/test_kill_restart.py's default FAULT_TRIALS
# The whole test suite's budget (< 10 min on 2 cores); the fault suite runs inside it.
SUITE_BUDGET = 600.0


@dataclass(frozen=True)
class Bench:
    key: str
    module: str
    title: str
    target: str


BENCHES = (
    Bench("ack", "bench.bench_ack_latency", "Acknowledgement latency, burst of 200 /sora", "p99 < 500 ms"),
    Bench(
        "polling",
        "bench.bench_polling",
        "Polling: planned poller vs the optimum vs fixed intervals",
        "sora-2 prior ≤ 20 polls/job at ≤ 2.2 s mean delay; polls × delay ≤ 1.1× the optimum on every prior; "
        "≤ 1.2× after 20 jobs from a prior 2× off",
    ),
    Bench(
        "providers",
        "bench.bench_providers",
        "Polling per provider and model, with and without webhooks",
        "with webhooks ≤ 3 status requests per job and ≤ 1 s mean delay",
    ),
    Bench("inflight", "bench.bench_inflight_memory", "Memory per in-flight job (1,000 jobs)", "≤ 200 KiB per job"),
    Bench(
        "download",
        "bench.bench_download_memory",
        "Peak memory while delivering a large result",
        "independent of size, ≤ +16 MiB",
    ),
    Bench("shrink", "bench.bench_shrink", "Shrink a 25 MB 12 s 1280x720 clip under 10 MiB", "≤ 1× clip duration"),
    Bench("credits", "bench.bench_credits", "Credit reserves per second, 50 tasks", "— (comparison)"),
    Bench(
        "outage",
        "bench.bench_db_outage",
        "Recovery from a PostgreSQL outage mid-job",
        "video posted < 5 s after it could first be",
    ),
    Bench("images", "bench.bench_image_memory", "Peak memory preparing a 6300x6300 reference image", "< 200 MiB"),
)


@dataclass
class Outcome:
    ok: bool
    stdout: str
    stderr: str
    seconds: float


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800.0) -> Outcome:
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        return Outcome(False, out, f"timed out after {timeout:.0f} s", time.monotonic() - started)
    return Outcome(done.returncode == 0, done.stdout, done.stderr, time.monotonic() - started)


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"- Machine: {cores} CPU(s) available (nproc), {model}\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} "
        f"{platform.release()}"
    )


def bench_section(bench: Bench) -> str:
    command = f"python -m {bench.module}"
    head = f"## {bench.title}\n\nTarget: {bench.target}. Reproduce: `{command}`\n\n"
    if find_spec(bench.module) is None:
        return head + "not available (the benchmark is not in this tree yet)\n"
    print(f"running {command} ...", file=sys.stderr, flush=True)
    outcome = run([sys.executable, "-m", bench.module])
    if not outcome.ok:
        tail = "\n".join(outcome.stderr.strip().splitlines()[-8:])
        return head + f"not available (it failed after {outcome.seconds:.0f} s):\n\n```\n{tail}\n```\n"
    return head + outcome.stdout.strip() + f"\n\n(ran in {outcome.seconds:.0f} s)\n"


def summary_table(line: str) -> str:
    """``FAULT SUMMARY k=v k=v`` -> a two-column markdown table."""
    pairs = [item.split("=", 1) for item in line.split()[2:] if "=" in item]
    return "| count | value |\n| --- | ---: |\n" + "\n".join(f"| {k} | {v} |" for k, v in pairs)


def faults_section() -> str:
    # Run as CI does (pyproject's ``-n 4`` workers). xdist drops ``-s`` output, so ``-rP`` brings the
    # summary lines back from each passed test's captured stdout (``fE`` keeps the FAILED/ERROR lines).
    command = "python -m pytest -q -rfEP tests/faults --durations=0"
    head = (
        "## Fault-injection suite (CI)\n\n"
        f"Budget: the whole test suite ≤ {SUITE_BUDGET:.0f} s wall on 2 cores. Reproduce: `{command}` "
        f"(CI default: `FAULT_TRIALS={CI_TRIALS}` SIGKILLs; `FAULT_SEED=n` replays a run)\n\n"
    )
    print(f"running {command} ...", file=sys.stderr, flush=True)
    outcome = run(
        [sys.executable, "-m", "pytest", "-q", "-rfEP", "-p", "no:cacheprovider", "tests/faults", "--durations=0"]
    )
    lines = outcome.stdout.splitlines()
    final = next((ln for ln in reversed(lines) if re.search(r"\d+ (passed|failed)", ln)), "no pytest result line")
    within = "within" if outcome.seconds <= SUITE_BUDGET else "OVER"
    body = [f"Result: `{final.strip(' =')}`; wall time {outcome.seconds:.0f} s ({within} budget).", ""]
    durations = [ln.strip() for ln in lines if re.match(r"^\d+\.\d+s call", ln.strip())]
    if durations:
        body += ["| seconds | test |", "| ---: | --- |"]
        for entry in durations[:8]:
            seconds, _, test = entry.split(maxsplit=2)
            body.append(f"| {seconds.rstrip('s')} | `{test.removeprefix('tests/faults/')}` |")
        if len(durations) > 8:
            rest = sum(float(entry.split()[0].rstrip("s")) for entry in durations[8:])
            body.append(f"| {rest:.2f} | {len(durations) - 8} more tests |")
        body.append("")
    for marker, title in (("FAULT SUMMARY", "Kill/restart invariants"), ("FUZZ SUMMARY", "Input fuzzing")):
        line = next((ln[ln.index(marker) :] for ln in lines if marker in ln), None)  # after pytest's dots
        body += [f"### {title}", "", summary_table(line) if line else "not available (no summary line)", ""]
        aims = next((ln for ln in lines if ln.startswith("aims:")), "")
        if marker == "FAULT SUMMARY" and aims:
            body += [f"Kill points by aim (hits/tries): `{aims.removeprefix('aims:').strip()}`", ""]
    if not outcome.ok:
        failed = [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
        body += ["Failures:", "", "```", *(failed or lines[-30:]), "```", ""]
    return head + "\n".join(body)


def kill_trials_section(trials: int) -> str:
    command = f"FAULT_TRIALS={trials} python -m pytest -n 0 -q -s tests/faults/test_kill_restart.py"
    also = f"python -m bench.run_all --fault-trials {trials}"
    head = f"## Kill/restart, {trials} trials\n\nReproduce: `{command}` (or `{also}`)\n\n"
    print(f"running {command} ...", file=sys.stderr, flush=True)
    outcome = run(
        # One test: no xdist workers (they would swallow the ``-s`` summary line).
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "0",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "tests/faults/test_kill_restart.py",
        ],
        env={"FAULT_TRIALS": str(trials)},
        timeout=120 + 10 * trials,
    )
    lines = outcome.stdout.splitlines()
    line = next((ln[ln.index("FAULT SUMMARY") :] for ln in lines if "FAULT SUMMARY" in ln), None)
    aims = next((ln for ln in lines if ln.startswith("aims:")), "")
    verdict = "all invariants held" if outcome.ok else "FAILED"
    body = (
        f"{verdict}; wall time {outcome.seconds:.0f} s. Kill points by aim: `{aims.removeprefix('aims:').strip()}`\n\n"
    )
    body += summary_table(line) if line else "not available (no summary line)"
    if not outcome.ok:
        body += "\n\n```\n" + "\n".join(lines[-30:]) + "\n```"
    return head + body + "\n"


def dated() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def merge(sections: dict[str, str]) -> str:
    """The previous BENCHMARKS.md with ``sections`` replaced (or added, in a stable order)."""
    previous = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
    order = [b.key for b in BENCHES] + ["faults", "killtrials"]
    kept: dict[str, str] = {}
    for key in order:
        found = re.search(rf"<!-- bench:{key} -->\n(.*?)<!-- /bench:{key} -->", previous, re.S)
        if found:
            kept[key] = found.group(1)
    kept.update(sections)
    parts = [
        "# Benchmarks and fault-injection figures",
        "",
        f"Written by `python -m bench.run_all` on {dated()}.",
        "",
        machine(),
        "",
        "Each section names the command that reproduces it; sections keep the date of their last run.",
        "",
    ]
    for key in order:
        if key in kept:
            parts += [f"<!-- bench:{key} -->", kept[key].rstrip() + "\n", f"<!-- /bench:{key} -->", ""]
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    keys = [b.key for b in BENCHES] + ["faults"]
    parser.add_argument("--only", nargs="+", choices=keys, help="run only these sections")
    parser.add_argument("--fault-trials", type=int, default=0, help="also run N kill/restart trials (e.g. 100)")
    args = parser.parse_args()
    wanted = set(args.only or keys)
    sections: dict[str, str] = {}
    for bench in BENCHES:
        if bench.key in wanted:
            sections[bench.key] = bench_section(bench)
    if "faults" in wanted:
        sections["faults"] = faults_section()
    if args.fault_trials:
        sections["killtrials"] = kill_trials_section(args.fault_trials)
    for key in sections:
        sections[key] = sections[key].rstrip() + f"\n\n_Last run: {dated()}._\n"
    OUTPUT.write_text(merge(sections), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
