"""Crash safety, a full disk and concurrent DVC commands for the data stages.

- Crashes (reliability): ``ingest-chunk`` and ``clean-scd2`` are SIGKILLed at 20 seeded random
  moments of their writes, in a real DVC repository on real 2018 data. After every kill, what a
  reader can see must open; after the re-runs, the outputs and dvc.lock must equal those of an
  uninterrupted run, byte for byte.
- Disk full (fast): a write failing with ENOSPC/EDQUOT exits with code 3 and one clear line,
  and leaves the earlier outputs byte-identical, with no temporary file behind.
- Concurrency (reliability): while ``dvc repro`` runs, a second ``dvc repro`` and a
  ``dvc exp run`` are refused by DVC's lock, and the first run's outputs are intact.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from baac_severity.config import (
    CHUNKS_DIR,
    CLEAN_ACCIDENTS,
    CLEAN_DIR,
    CLEAN_STATE,
    CLEAN_USERS,
    DATA_SUMMARY,
    METRICS_DIR,
    PROGRESS_FILE,
    ROOT,
)
from baac_severity.data import clean, ingest, scd2
from baac_severity.data.io import DISK_FULL_EXIT, is_temp_leftover, read_json
from baac_severity.data.loaders import load_raw_dump
from baac_severity.data.stages import clean as clean_stage
from baac_severity.data.stages import ingest as ingest_stage
from baac_severity.testing.sandbox import dvc, env, make_pipeline_repo
from tests.helpers import file_digests, lock_hashes
from tests.test_scd2 import KEY, as_of, chunk_frame, chunks_strategy

RAW = ROOT / "data" / "raw"
pytestmark = pytest.mark.skipif(not RAW.is_dir(), reason="data/raw missing: run `make data`")

SEED = 20_240_611
# Real 2018 data in 12 chunks of 5,000 accidents: long enough writes to be interrupted.
CRASH_OVERRIDES = [
    "data.years=[2018]",
    "ingest.chunk_size=5000",
    "ingest.chunks=all",
    "model.n_estimators=20",
]
CRASH_STAGES = ["ingest-chunk", "clean-scd2"]
# 9 + 10 kills of one stage at a time, then 1 of a whole `dvc repro clean-scd2`: 20 in total.
KILLS = {"ingest-chunk": 9, "clean-scd2": 10}
KILLS_PER_ROUND = 5  # kills in a row, each run resuming what the killed one left
DVC_EVERY = 4  # one launch in 4 goes through `dvc repro -s <stage>`, the others are forks


# ----------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    outputs: tuple[Path, ...]
    watched: Path  # its first change marks the start of the stage's writes

    def progress(self, repo: Path) -> int:
        """Chunks done: ingested chunk directories, or chunks listed in clean's state."""
        if self.name == "ingest-chunk":
            return len(list((repo / CHUNKS_DIR).glob("chunk-*")))
        return len(read_json(repo / CLEAN_STATE, default={}).get("applied", []))

    def reset(self, repo: Path) -> None:
        for output in self.outputs:
            path = repo / output
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


STAGES = {
    "ingest-chunk": Stage(
        "ingest-chunk",
        "baac_severity.data.stages.ingest",
        (CHUNKS_DIR, PROGRESS_FILE, DATA_SUMMARY),
        CHUNKS_DIR,
    ),
    "clean-scd2": Stage("clean-scd2", "baac_severity.data.stages.clean", (CLEAN_DIR,), CLEAN_DIR),
}


def output_digests(repo: Path, stages: list[str]) -> dict[str, str]:
    """sha256 of every file of the stages' outputs, hidden ones included."""
    digests = {}
    for output in (out for name in stages for out in STAGES[name].outputs):
        path = repo / output
        if path.is_dir():
            digests |= {f"{output}/{name}": sha for name, sha in file_digests(path).items()}
        elif path.exists():
            digests[str(output)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def stage_locks(repo: Path) -> dict[str, str]:
    return {out: md5 for out, md5 in lock_hashes(repo).items() if out.split(":")[0] in STAGES}


def snapshot(folder: Path) -> frozenset[tuple[str, int, int]]:
    """Names, mtimes and sizes under ``folder``: any write changes it."""
    entries = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # deleted while we walk
                continue
            entries.add((os.path.join(root, name), stat.st_mtime_ns, stat.st_size))
    return frozenset(entries)


def temp_leftovers(repo: Path) -> list[Path]:
    """Temporaries of killed writers anywhere under data/ and metrics/."""
    return sorted(
        path
        for folder in ("data", METRICS_DIR)
        for path in (repo / folder).rglob("*")
        if is_temp_leftover(path) and not any(is_temp_leftover(p) for p in path.parents)
    )


def assert_readers_see_whole_outputs(repo: Path) -> None:
    """What a reader can see after a kill opens: every visible Parquet file (hidden names may
    only be temporaries), the chunk list the clean stage reads and both history datasets."""
    for folder in (CHUNKS_DIR, CLEAN_DIR):
        for path in sorted((repo / folder).rglob("*")):
            hidden = [part for part in path.relative_to(repo / folder).parts if part[0] == "."]
            if hidden:
                assert is_temp_leftover(Path(hidden[0])), f"unexpected hidden file {path}"
            elif path.suffix == ".parquet" and path.is_file():
                pq.read_table(path)  # raises on a truncated or corrupt file
    if list((repo / CHUNKS_DIR).glob("chunk-*")):
        chunks = clean.ingested_chunks(repo / CHUNKS_DIR)  # manifests whole, ids 1..n
        assert [chunk.chunk_id for chunk in chunks] == list(range(1, len(chunks) + 1))
    for history in (CLEAN_ACCIDENTS, CLEAN_USERS):
        if (repo / history).is_dir():
            dataset = pq.ParquetDataset(repo / history)
            assert not [f for f in dataset.files if is_temp_leftover(Path(f))], dataset.files
            dataset.read()
    applied = read_json(repo / CLEAN_STATE, default={}).get("applied", [])
    # A chunk listed as applied has its part: the state is committed after the parts.
    parts = {int(p.stem.split("-")[1]) for p in (repo / CLEAN_ACCIDENTS).glob("part-*.parquet")}
    assert {entry["chunk_id"] for entry in applied} <= parts


# ----------------------------------------------------------------------- launching runs

# Each run is a fork of a process that has already imported the stages, so that a launch
# costs the stage's own work, not 3 s of imports, on a loaded 2-core machine. The fork starts
# its own process group and runs the stage's real ``main``.
FORK_SERVER = r"""
import importlib, os, sys, traceback
import baac_severity.data.stages.clean, baac_severity.data.stages.ingest
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(log, 1)
            os.dup2(log, 2)
            sys.argv = [line.strip()]  # as `python -m <stage>` with no argument
            code = importlib.import_module(line.strip()).main()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def kill_group(leader: int) -> None:
    """SIGKILL a run's whole process group (dvc and the stage's python, or the fork)."""
    with contextlib.suppress(ProcessLookupError):  # it had just finished
        os.killpg(leader, signal.SIGKILL)


class ForkServer:
    def __init__(self, repo: Path, log: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER, str(log)],
            cwd=repo,
            env=env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # unbuffered: select() then sees every line the server writes
        )
        assert self.process.stdout.readline() == b"ready\n", log.read_text()

    def start(self, module: str) -> ForkedRun:
        self.process.stdin.write(f"{module}\n".encode())
        return ForkedRun(self.process.stdout, int(self.process.stdout.readline()))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@dataclass
class ForkedRun:
    replies: object  # the server's stdout: the run's exit code arrives there
    pid: int
    code: int | None = None

    def exit_code(self) -> int | None:
        if self.code is None and select.select([self.replies], [], [], 0)[0]:
            self.code = int(self.replies.readline())
        return self.code

    def wait(self) -> int:
        while self.exit_code() is None:
            select.select([self.replies], [], [], 1)
        return self.code

    def kill(self) -> int:
        kill_group(self.pid)
        return self.wait()


@dataclass
class DvcRun:
    process: subprocess.Popen

    @classmethod
    def start(cls, repo: Path, args: list[str], log: Path) -> DvcRun:
        with log.open("a") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "dvc", *args],
                cwd=repo,
                env=env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: dvc and the stage's python
            )
        return cls(process)

    def exit_code(self) -> int | None:
        return self.process.poll()

    def wait(self) -> int:
        return self.process.wait(timeout=600)

    def kill(self) -> int:
        kill_group(self.process.pid)
        return self.wait()


def wait_for_change(run, folder: Path, before: frozenset, step: float = 0.01) -> float | None:
    """The time of the first change under ``folder``, or None if the run ends first."""
    while run.exit_code() is None:
        if snapshot(folder) != before:
            return time.monotonic()
        time.sleep(step)
    return None


# --------------------------------------------------------------------------- crash test


@dataclass
class Reference:
    digests: dict[str, str]
    locks: dict[str, str]
    total_chunks: int
    windows: dict[str, float]  # seconds from a stage's first write to its last
    seconds: float


@dataclass
class Kill:
    stage: str
    launcher: str
    delay: float  # seconds after the run's first write
    before: int  # chunks done before the run
    after: int = 0
    leftovers: list[str] = field(default_factory=list)


def reference_run(repo: Path, log: Path) -> Reference:
    """The uninterrupted `dvc repro clean-scd2`, timing each stage's window of writes."""
    started = time.monotonic()
    run = DvcRun.start(repo, ["repro", "clean-scd2"], log)
    changes: dict[str, list[float]] = {name: [] for name in CRASH_STAGES}
    last = {name: snapshot(repo / STAGES[name].watched) for name in CRASH_STAGES}
    while run.exit_code() is None:
        for name in CRASH_STAGES:
            now = snapshot(repo / STAGES[name].watched)
            if now != last[name]:
                changes[name].append(time.monotonic())
                last[name] = now
        time.sleep(0.02)
    assert run.wait() == 0, log.read_text()[-3000:]
    ended = time.monotonic()
    return Reference(
        digests=output_digests(repo, CRASH_STAGES),
        locks=stage_locks(repo),
        total_chunks=STAGES["ingest-chunk"].progress(repo),
        windows={name: times[-1] - times[0] for name, times in changes.items()},
        seconds=ended - started,
    )


@pytest.fixture(scope="module")
def crash_repo(tmp_path_factory) -> tuple[Path, Reference, Path]:
    repo = make_pipeline_repo(tmp_path_factory.mktemp("crash"), CRASH_OVERRIDES)
    log = tmp_path_factory.mktemp("logs") / "runs.log"
    return repo, reference_run(repo, log), log


def kill_once(repo: Path, run, stage: Stage, kill: Kill) -> bool:
    """Kill ``run`` ``kill.delay`` s after its first write; False when it finished before."""
    first_write = wait_for_change(run, repo / stage.watched, snapshot(repo / stage.watched))
    if first_write is not None:
        time.sleep(max(0.0, first_write + kill.delay - time.monotonic()))
    code = run.kill()
    kill.after = stage.progress(repo)
    assert code in (0, -signal.SIGKILL), f"{stage.name} failed with {code}"
    return code == -signal.SIGKILL


def assert_finished_like_reference(repo: Path, stage: Stage, reference: Reference) -> None:
    assert output_digests(repo, [stage.name]) == {
        name: sha
        for name, sha in reference.digests.items()
        if any(name.startswith(str(out)) for out in stage.outputs)
    }
    assert temp_leftovers(repo) == []  # the completing run removed them


def crash_stage(
    repo: Path, stage: Stage, reference: Reference, server: ForkServer, log: Path, rng
) -> list[Kill]:
    """KILLS[stage] kills in rounds: kills in a row (each run resumes the killed state), then a
    run to completion that must give the reference outputs. Leaves the outputs complete."""
    kills: list[Kill] = []
    stage.reset(repo)
    in_round, launches = 0, 0
    while len(kills) < KILLS[stage.name]:
        via_dvc = launches % DVC_EVERY == 0
        launches += 1
        done = stage.progress(repo)
        # Drawn within the writes still to do, so that most launches are killed.
        remaining = 1 - done / reference.total_chunks
        kill = Kill(stage.name, "dvc repro" if via_dvc else "fork", 0.0, done)
        kill.delay = rng.uniform(0, reference.windows[stage.name] * remaining)
        if via_dvc:
            run = DvcRun.start(repo, ["repro", "-s", stage.name], log)
        else:
            run = server.start(stage.module)
        if not kill_once(repo, run, stage, kill):
            assert_finished_like_reference(repo, stage, reference)
            stage.reset(repo)
            in_round = 0
            continue
        kill.leftovers = [str(p.relative_to(repo)) for p in temp_leftovers(repo)]
        assert_readers_see_whole_outputs(repo)
        kills.append(kill)
        in_round += 1
        if in_round == KILLS_PER_ROUND or len(kills) == KILLS[stage.name]:
            assert server.start(stage.module).wait() == 0, log.read_text()[-3000:]
            assert_finished_like_reference(repo, stage, reference)
            in_round = 0
            if len(kills) < KILLS[stage.name]:
                stage.reset(repo)
    return kills


def report(kills: list[Kill], reference: Reference, seconds: float) -> str:
    lines = [
        f"reference dvc repro: {reference.seconds:.1f} s; write windows "
        + ", ".join(f"{name} {window:.2f} s" for name, window in reference.windows.items()),
        f"{len(kills)} kills in {seconds:.1f} s:",
    ]
    for kill in kills:
        lines.append(
            f"  {kill.stage:<13} via {kill.launcher:<9} at +{kill.delay:5.2f} s of its writes: "
            f"chunks {kill.before} -> {kill.after}; leftovers {kill.leftovers or '-'}"
        )
    return "\n".join(lines)


@pytest.mark.reliability
@pytest.mark.timeout(420)
def test_sigkill_at_random_moments_then_repro_equals_an_uninterrupted_run(crash_repo):
    repo, reference, log = crash_repo
    rng = random.Random(SEED)
    started = time.monotonic()
    server = ForkServer(repo, log)
    try:
        kills = [
            kill
            for name in CRASH_STAGES
            for kill in crash_stage(repo, STAGES[name], reference, server, log, rng)
        ]
    finally:
        server.close()

    # The last kill hits a whole `dvc repro clean-scd2` (ingest-chunk is up to date); then a
    # plain `dvc repro` must finish the job with the uninterrupted run's outputs and dvc.lock.
    cleaning = STAGES["clean-scd2"]
    for _attempt in range(3):  # a run faster than the reference may end before its kill
        cleaning.reset(repo)
        last = Kill(cleaning.name, "dvc repro", rng.uniform(0, reference.windows[cleaning.name]), 0)
        if kill_once(repo, DvcRun.start(repo, ["repro", "clean-scd2"], log), cleaning, last):
            break
    last.leftovers = [str(p.relative_to(repo)) for p in temp_leftovers(repo)]
    assert_readers_see_whole_outputs(repo)
    kills.append(last)
    dvc("repro", "clean-scd2", cwd=repo)
    print(report(kills, reference, time.monotonic() - started))

    assert len(kills) == 20
    assert output_digests(repo, CRASH_STAGES) == reference.digests
    assert stage_locks(repo) == reference.locks
    assert temp_leftovers(repo) == []
    # The kills did interrupt writes: some left temporaries that the next run removed.
    assert any(kill.leftovers for kill in kills)


def wait_for_text(run, log: Path, text: str) -> None:
    while text not in log.read_text():
        assert run.exit_code() is None, f"ended before printing {text!r}:\n{log.read_text()}"
        time.sleep(0.05)


# DVC's two lock errors: the repository lock, and the read/write lock of a stage's paths.
LOCK_REFUSAL = re.compile(
    r"Unable to acquire lock|is busy, it is being blocked by:\s+\(PID (?P<pid>\d+)\)"
)


@pytest.mark.reliability
@pytest.mark.timeout(300)
def test_concurrent_repro_and_exp_run_are_refused_by_the_lock(crash_repo, tmp_path):
    repo, reference, _ = crash_repo
    STAGES["clean-scd2"].reset(repo)
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "repro", "exp-run")}
    first = DvcRun.start(repo, ["repro", "clean-scd2"], logs["first"])
    # DVC prints this once it holds the stage's locks, and the stage then runs for seconds.
    wait_for_text(first, logs["first"], "Running stage 'clean-scd2'")
    others = {
        "repro": DvcRun.start(repo, ["repro"], logs["repro"]),
        "exp-run": DvcRun.start(repo, ["exp", "run"], logs["exp-run"]),
    }
    codes = {name: run.wait() for name, run in others.items()}
    first_still_running = first.exit_code() is None
    assert first.wait() == 0, logs["first"].read_text()[-3000:]

    assert first_still_running, "the first dvc repro ended before the others were refused"
    for name, code in codes.items():
        message = logs[name].read_text()
        refusal = LOCK_REFUSAL.search(message)
        assert code != 0 and refusal, f"{name} ({code}):\n{message}"
        assert refusal["pid"] in (None, str(first.process.pid)), message
    assert output_digests(repo, CRASH_STAGES) == reference.digests
    assert stage_locks(repo) == reference.locks


# ------------------------------------------------------- SCD2 store: rewind after a kill


@settings(max_examples=12, deadline=None)
@given(chunks_strategy, st.integers(0, 6), st.integers(0, 6), st.booleans())
# The bug this guards against: chunk 3 closed key a's version in part 1, the kill came before
# state.json listed chunk 3, and the re-run, seeing a closed, opened it again from chunk 2.
@example(chunks=[{"a": 1}, {"a": 1}, {"a": 2}], committed=1, reached=3, lost=False)
@example(chunks=[{"a": 1}, {"a": 1}, {"a": 2}], committed=1, reached=3, lost=True)
def test_rewind_then_replay_equals_an_uninterrupted_store(chunks, committed, reached, lost):
    """clean-scd2 commits state.json after each chunk. A run killed later may have written
    parts of the next chunks and closed versions in older parts (a correction), or closed them
    but not yet written the chunk's own part (``lost``); rewinding to the committed chunk and
    applying the rest again must give the same files as a run that was never killed."""
    committed = min(committed, len(chunks) - 1)  # the last chunk in state.json
    reached = min(max(reached, committed + 1), len(chunks))  # the chunk being applied
    with tempfile.TemporaryDirectory() as directory:
        straight = scd2.PartitionedHistory(Path(directory) / "straight", KEY)
        killed = scd2.PartitionedHistory(Path(directory) / "killed", KEY)
        for chunk_id, records in enumerate(chunks, start=1):
            straight.apply(chunk_frame(records), chunk_id, as_of(chunk_id), "chunk")
        for chunk_id, records in enumerate(chunks[:reached], start=1):
            killed.apply(chunk_frame(records), chunk_id, as_of(chunk_id), "chunk")
        if lost:
            killed.part(reached).unlink(missing_ok=True)
        killed.rewind(committed)
        for chunk_id, records in enumerate(chunks[committed:], start=committed + 1):
            killed.apply(chunk_frame(records), chunk_id, as_of(chunk_id), "chunk")
        assert file_digests(killed.directory) == file_digests(straight.directory)


# ----------------------------------------------------------------------------- disk full

DISK_FULL_CHUNK_SIZE = 2_000  # small chunks of real 2018 accidents: quick stages


@functools.cache
def raw_dump(raw_dir: Path, years: tuple[int, ...]):
    return load_raw_dump(raw_dir, list(years))


def write_project_params(project: Path, chunks: int) -> None:
    params = OmegaConf.load(ROOT / "params.yaml")
    params.data.raw_dir = str(RAW)
    params.data.years = [2018]
    params.ingest.chunk_size = DISK_FULL_CHUNK_SIZE
    params.ingest.chunks = chunks
    OmegaConf.save(params, project / "params.yaml")


def project_files(project: Path) -> dict[str, str]:
    """Every file the stages wrote or left behind, temporaries included."""
    return {
        f"{folder}/{name}": sha
        for folder in ("data", METRICS_DIR)
        for name, sha in file_digests(project / folder).items()
    }


def fail_writes_with(code: int):
    """pyarrow's own failure on a full disk: part of the file written, then OSError(code) with
    no file name (as measured on a real full device)."""
    write_table = pq.write_table

    def failing(table, where, **options):
        write_table(table, where, **options)
        with open(where, "r+b") as partial:
            partial.truncate(os.path.getsize(where) // 2)
        detail = f"Error writing bytes to file. Detail: [errno {code}] {os.strerror(code)}"
        raise OSError(code, detail)

    return failing


def run_in(project: Path, stage_main, chunks: int) -> int:
    """A stage's CLI entry point, run in ``project`` with ``ingest.chunks=chunks``."""
    with pytest.MonkeyPatch.context() as patch:
        # Parse the raw files once: these tests are about writing, not reading.
        patch.setattr(
            ingest, "load_raw_dump", lambda raw_dir, years: raw_dump(Path(raw_dir), tuple(years))
        )
        patch.chdir(project)
        patch.setattr(sys, "argv", ["stage"])  # as `python -m <stage>` with no argument
        write_project_params(project, chunks)
        return stage_main()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict[int, Path]:
    """Projects where the first 2 chunks of 2018 are ingested and cleaned, and chunk 3 has
    (key 3) or has not (key 2) arrived since."""
    two = tmp_path_factory.mktemp("two-chunks")
    assert run_in(two, ingest_stage.main, 2) == 0
    assert run_in(two, clean_stage.main, 2) == 0
    three = tmp_path_factory.mktemp("three-chunks")
    shutil.copytree(two, three, dirs_exist_ok=True)
    assert run_in(three, ingest_stage.main, 3) == 0
    return {2: two, 3: three}


def copy_project(source: Path, tmp_path: Path) -> Path:
    shutil.copytree(source, tmp_path, dirs_exist_ok=True)
    return tmp_path


DISK_ERRORS = [(errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded")]


@pytest.mark.parametrize(("code", "reason"), DISK_ERRORS, ids=["ENOSPC", "EDQUOT"])
def test_disk_full_while_ingesting_keeps_the_earlier_chunks(
    ingested, tmp_path, capsys, code, reason
):
    project = copy_project(ingested[2], tmp_path)
    before = project_files(project)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pq, "write_table", fail_writes_with(code))
        assert run_in(project, ingest_stage.main, 3) == DISK_FULL_EXIT
    error = capsys.readouterr().err
    assert f"ingest-chunk: cannot write {CHUNKS_DIR}/chunk-0003/" in error, error
    assert f".parquet: {reason}" in error and "Traceback" not in error, error
    assert project_files(project) == before  # byte-identical, no temporary left


def test_disk_full_while_cleaning_keeps_the_histories(ingested, tmp_path, capsys):
    project = copy_project(ingested[3], tmp_path)
    before = project_files(project)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pq, "write_table", fail_writes_with(errno.ENOSPC))
        assert run_in(project, clean_stage.main, 3) == DISK_FULL_EXIT
    error = capsys.readouterr().err
    part = CLEAN_ACCIDENTS / "part-00003.parquet"
    assert f"clean-scd2: cannot write {part}: no space left on device" in error, error
    assert "Traceback" not in error
    assert project_files(project) == before
    # Once there is space again, the same command carries on from chunk 3.
    assert run_in(project, clean_stage.main, 3) == 0
    assert [e["chunk_id"] for e in read_json(project / CLEAN_STATE)["applied"]] == [1, 2, 3]


def test_leftovers_of_a_killed_writer_are_invisible_then_removed(ingested, tmp_path):
    """What SIGKILL leaves mid-write (a hidden temporary, here a truncated copy of a real chunk
    file) is skipped by the readers, and the next run of each stage removes it before DVC
    would hash it into the output."""
    project = copy_project(ingested[2], tmp_path)
    partial = (project / CHUNKS_DIR / "chunk-0002" / "usagers.parquet").read_bytes()
    partial = partial[: len(partial) // 2]
    leftovers = [
        project / CHUNKS_DIR / ".chunk-0003.tmp-killed00" / "usagers.parquet",
        project / CLEAN_ACCIDENTS / ".part-00003.parquet.tmp-killed01.parquet",
        project / CLEAN_DIR / ".state.json.tmp-killed02.json",
    ]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(partial)
    parts = [str(p) for p in scd2.PartitionedHistory(project / CLEAN_ACCIDENTS, KEY).parts()]

    assert [chunk.chunk_id for chunk in clean.ingested_chunks(project / CHUNKS_DIR)] == [1, 2]
    assert sorted(pq.ParquetDataset(project / CLEAN_ACCIDENTS).files) == parts
    assert run_in(project, ingest_stage.main, 3) == 0
    assert run_in(project, clean_stage.main, 3) == 0
    assert temp_leftovers(project) == []
    assert not (project / CHUNKS_DIR / ".chunk-0003.tmp-killed00").exists()
