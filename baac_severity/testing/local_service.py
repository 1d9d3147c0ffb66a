"""Run the real prediction service (``bentoml serve``) for the benchmarks and the tests.

Each run gets its own BentoML home into which the promoted model is imported with the
project's own ``baac sync-bentoml`` (what ``make serve`` runs); the repository's
``bentoml_home`` and ``.env`` are never touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from baac_severity.config import DATASET, PROMOTED_METADATA, PROMOTED_MODEL, ROOT
from baac_severity.testing.sandbox import dvc, make_pipeline_repo, run

SERVICE = "baac_severity.serving.service:BAACSeverity"
# What a workspace needs to serve and to rebuild real requests.
OUTPUTS = (PROMOTED_MODEL, PROMOTED_METADATA, DATASET)
SETTINGS = (
    "API_KEY",
    "ALLOW_NO_AUTH",
    "BAAC_MODEL_TAG",
    "BAAC_WORKERS",
    "BAAC_PROGRESS_PATH",
    "MAX_BODY_BYTES",
    "PREDICTION_LOG_DIR",
    "PREDICTION_LOG_MAX_BYTES",
    "PREDICTION_LOG_BACKUPS",
    "BAAC_BATCHING",
    "BAAC_MAX_BATCH_SIZE",
    "BAAC_MAX_LATENCY_MS",
    "BAAC_MAX_CONCURRENCY",
)


def has_outputs(workspace: Path) -> bool:
    chunks = list((workspace / "data" / "chunks").glob("chunk-*/usagers.parquet"))
    return bool(chunks) and all((workspace / name).is_file() for name in OUTPUTS)


def small_workspace(dest: Path) -> Path:
    """A fresh clone has no pipeline outputs: run the small real pipeline (2018 data, two
    chunks of 2,000 accidents, 20 trees) and promote its model, in ``dest``."""
    repo = make_pipeline_repo(dest)
    dvc("repro", "-q", cwd=repo)
    run([sys.executable, "-m", "baac_severity.cli", "promote", "--no-dvc"], repo)
    return repo


def environment(home: Path, **settings: str) -> dict[str, str]:
    """The server's environment: its own BentoML home and prediction log, no telemetry, no
    ``.env`` file and no service settings inherited from the caller except those given."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(
        BENTOML_HOME=str(home),
        PREDICTION_LOG_DIR=str(home / "monitoring"),
        BENTOML_DO_NOT_TRACK="True",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        BAAC_ENV_FILE=os.devnull,
        PYTHONUNBUFFERED="1",
    )
    env.update(settings)
    return env


def import_model(workspace: Path, home: Path) -> str:
    """Import ``workspace/models`` into the BentoML home ``home`` (what ``make serve`` does
    first: ``baac sync-bentoml``); returns its tag."""
    result = subprocess.run(
        [sys.executable, "-m", "baac_severity.cli", "sync-bentoml"],
        cwd=workspace,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"model import failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """Terminate a server process, and kill it if it does not stop in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    stdout: Path
    stderr: Path
    prediction_log: Path | None = None  # the service's PREDICTION_LOG_DIR

    def prediction_log_text(self) -> str:
        """Every line of the prediction log (``baac_severity/serving/prediction_logger.py``),
        rotated files included."""
        from baac_severity.monitoring.prediction_log import log_files

        assert self.prediction_log is not None
        return "".join(path.read_text() for path in log_files(self.prediction_log))

    def logs(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)


def start(
    env: dict[str, str],
    log_dir: Path,
    timeout: float = 180,
    serve: tuple[str, ...] = (sys.executable, "-m", "bentoml", "serve", SERVICE),
    cwd: Path = ROOT,
) -> Server:
    """``bentoml serve`` (``serve``: the command, by default this Python serving the project's
    service) on a free loopback port; returns once ``/readyz`` answers 200."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = log_dir / f"serve-{port}.out", log_dir / f"serve-{port}.err"
    command = [*serve, "--host", "127.0.0.1", "--port", str(port)]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
    server = Server(process, f"http://127.0.0.1:{port}", stdout, stderr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.logs()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout} s:\n{server.logs()}")


def service_rss(server: Server) -> int:
    """Resident memory of the service, in bytes: the ``bentoml serve`` process and all its
    children (the workers that hold the model) summed."""
    import psutil

    root = psutil.Process(server.process.pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue  # a child that exited meanwhile holds no memory
    return total


def start_service(home: Path, workspace: Path, log_dir: Path, **settings: str) -> Server:
    """The service on the model imported into ``home``, serving the ingestion progress of
    ``workspace``, with its logs and prediction log in ``log_dir``; ``settings`` (``API_KEY``
    ...) go to its environment."""
    prediction_log = log_dir / "monitoring"
    env = environment(
        home,
        PREDICTION_LOG_DIR=str(prediction_log),
        BAAC_PROGRESS_PATH=str(workspace / "metrics" / "progress.json"),
        **settings,
    )
    server = start(env, log_dir)
    server.prediction_log = prediction_log
    return server
