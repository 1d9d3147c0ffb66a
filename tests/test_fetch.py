"""``baac_severity.data.fetch`` against a loopback fake of the data.gouv.fr API: only the internet
is mocked.

A real HTTP server on 127.0.0.1 serves a dataset document shaped like
``GET https://www.data.gouv.fr/api/1/datasets/<id>/`` and the files it lists: the bundled 2018
files of ``data/raw/2018`` and a hand-written 2019+-format set for 2022 in
``tests/fixtures/fetch``.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from baac_severity.cli import app
from baac_severity.config import ROOT
from baac_severity.data import fetch
from baac_severity.data.loaders import load_year

BUNDLED_2018 = ROOT / "data" / "raw" / "2018"
FIXTURES_2022 = ROOT / "tests" / "fixtures" / "fetch"
API_PATH = f"/api/1/datasets/{fetch.DATASET_ID}/"
STATIC_PREFIX = "/resources/bases-de-donnees-annuelles-des-accidents-corporels/20231005-093927"

ROWS = {
    2018: {"caracteristiques": 57783, "lieux": 57783, "vehicules": 98876, "usagers": 130169},
    2022: {"caracteristiques": 3, "lieux": 3, "vehicules": 4, "usagers": 5},
}
# (checksum type or None, publish filesize?) per file: the real API mixes all of these.
INTEGRITY = {
    "carcteristiques-2022.csv": ("sha1", True),
    "lieux-2022.csv": ("sha256", True),
    "vehicules-2022.csv": ("md5", False),
    "usagers-2022.csv": (None, True),
    "caracteristiques-2018.columns-subset.csv.gz": ("sha1", True),
    "lieux-2018.csv.gz": (None, True),
    "vehicules-2018.csv.gz": ("sha1", False),
    "usagers-2018.columns-subset.csv.gz": (None, False),
}
FILES = {
    2018: sorted(path.name for path in BUNDLED_2018.glob("*.csv.gz")),
    2022: sorted(path.name for path in FIXTURES_2022.glob("*.csv")),
}
# Served and listed, but no yearly table: must never be requested.
DISTRACTORS = ["vehicules-immatricules-baac-2022.csv", "description-des-bases-de-donnees.pdf"]
# This one is published under an opaque URL: its file name comes from the resource title.
TITLE_ONLY = "lieux-2018.csv.gz"
# urllib3's backoff factor in these tests: waits of 0, 0.04, 0.08, 0.16 s between attempts.
FAST_BACKOFF = 0.02


@functools.cache
def source_bytes(name: str) -> bytes:
    folder = BUNDLED_2018 if "2018" in name else FIXTURES_2022
    return (folder / name).read_bytes()


@dataclass
class FakeDataGouv:
    """What the loopback server serves, and what it was asked for."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    resources: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # URL path -> forced HTTP status
    truncated: set[str] = field(default_factory=set)  # URL paths cut off half-way
    flaky: dict[str, list[int]] = field(default_factory=dict)  # URL path -> first answers
    hits: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic time of each hit

    @property
    def api_url(self) -> str:
        return self.base + API_PATH

    def path_of(self, name: str) -> str:
        entry = next(r for r in self.resources if r["title"] == name)
        return urlsplit(entry["url"]).path

    def file_hits(self) -> list[str]:
        return [path for path in self.hits if path != API_PATH]

    def document(self) -> dict[str, Any]:
        return {
            "id": fetch.DATASET_ID,
            "title": "Bases de données annuelles des accidents corporels de la circulation "
            "routière - Années de 2005 à 2023",
            "slug": "bases-de-donnees-annuelles-des-accidents-corporels-de-la-circulation-"
            "routiere-annees-de-2005-a-2023",
            "uri": self.api_url,
            "page": self.base + "/fr/datasets/bases-de-donnees-annuelles/",
            "frequency": "annual",
            "license": "fr-lo",
            "organization": {"name": "Ministère de l'Intérieur et des Outre-Mer"},
            "resources": self.resources,
        }

    def publish(self, name: str, body: bytes, checksum: str | None, filesize: bool) -> None:
        resource_id = hashlib.md5(name.encode()).hexdigest()
        opaque = name == TITLE_ONLY
        path = f"/fr/datasets/r/{resource_id}" if opaque else f"{STATIC_PREFIX}/{name}"
        self.files[path] = body
        self.resources.append(
            {
                "id": resource_id,
                "title": name,
                "description": "",
                "filetype": "file",
                "type": "main",
                "format": name.rsplit(".", 1)[-1],
                "url": self.base + path,
                "latest": f"{self.base}/fr/datasets/r/{resource_id}",
                "checksum": (
                    {"type": checksum, "value": hashlib.new(checksum, body).hexdigest()}
                    if checksum
                    else None
                ),
                "filesize": len(body) if filesize else None,
                "mime": "text/csv",
                "created_at": "2023-10-05T09:39:27+00:00",
                "last_modified": "2023-10-05T09:39:27+00:00",
                "metrics": {"views": 0},
                "extras": {},
                "preview_url": None,
                "schema": {},
            }
        )


def make_handler(state: FakeDataGouv) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            state.hits.append(path)
            state.times.append(time.monotonic())
            if state.flaky.get(path):
                self.reply(state.flaky[path].pop(0), b"<html>busy</html>", "text/html")
            elif path in state.status:
                self.reply(state.status[path], b"<html>error</html>", "text/html")
            elif path == API_PATH:
                self.reply(200, json.dumps(state.document()).encode(), "application/json")
            elif path in state.files:
                self.reply(200, state.files[path], "application/octet-stream")
            else:
                self.reply(404, b"not found", "text/plain")

        def reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            path = urlsplit(self.path).path
            # A connection dropped mid-file: announce the full length, send half, close.
            self.wfile.write(body[: len(body) // 2] if path in state.truncated else body)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDataGouv]:
    state = FakeDataGouv()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    # A short poll interval: shutdown() waits up to one interval (0.5 s by default).
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    for year in sorted(FILES):
        for name in FILES[year]:
            state.publish(name, source_bytes(name), *INTEGRITY[name])
    for name in DISTRACTORS:
        state.publish(name, b"not a BAAC table\n", "sha1", True)
    # Every request of the code under test goes to the loopback server, never to the internet.
    monkeypatch.setenv(fetch.API_URL_ENV, state.api_url)
    monkeypatch.setattr(fetch, "BACKOFF_SECONDS", FAST_BACKOFF)
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def run(*args: str, raw: Path) -> int:
    """``baac fetch`` in this process (the fake server's patches apply); its output is passed
    on to pytest's capture."""
    result = CliRunner().invoke(app, ["fetch", *args, "--raw-dir", str(raw)])
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code


def leftovers(raw: Path) -> list[Path]:
    """Temporary or hidden files anywhere under the raw dump."""
    return [path for path in raw.rglob("*") if path.name.startswith(".") or ".part" in path.name]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in folder.iterdir()}


# ------------------------------------------------------------------------------ fetching


def test_fetch_writes_published_bytes_that_the_loaders_read(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run("--years", "2018,2022", raw=raw) == 0

    for year, names in FILES.items():
        assert sorted(p.name for p in (raw / str(year)).iterdir()) == names
        for name in names:
            assert (raw / str(year) / name).read_bytes() == source_bytes(name), name
        tables = load_year(raw / str(year), year)
        assert {table: len(frame) for table, frame in tables.items()} == ROWS[year]
    assert sorted(p.name for p in raw.iterdir()) == ["2018", "2022"]
    # Each table file once; the look-alike and the PDF never.
    expected = sorted(server.path_of(name) for names in FILES.values() for name in names)
    assert sorted(server.file_hits()) == expected
    out = capsys.readouterr().out
    assert "8 file(s) downloaded" in out
    assert "sha256 verified" in out and "md5 verified" in out and "size verified" in out
    assert f"dvc add {raw}" in out


def test_second_run_downloads_nothing_and_leaves_files_untouched(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run("--years", "2022", raw=raw) == 0
    before = snapshot(raw / "2022")
    server.hits.clear()
    capsys.readouterr()

    assert run("--years", "2022", raw=raw) == 0

    assert server.hits == [API_PATH]
    assert snapshot(raw / "2022") == before
    out = capsys.readouterr().out
    assert out.count("up to date") == 5  # four files, then the summary
    assert "0 file(s) downloaded" in out and "dvc add" not in out


def test_a_damaged_local_file_is_downloaded_again(server, tmp_path):
    raw = tmp_path / "raw"
    assert run("--years", "2022", raw=raw) == 0
    (raw / "2022" / "lieux-2022.csv").write_bytes(b"damaged")  # checked by sha256
    (raw / "2022" / "usagers-2022.csv").write_bytes(b"short")  # checked by size only
    server.hits.clear()

    assert run("--years", "2022", raw=raw) == 0

    assert sorted(server.file_hits()) == sorted(
        server.path_of(name) for name in ("lieux-2022.csv", "usagers-2022.csv")
    )
    for name in FILES[2022]:
        assert (raw / "2022" / name).read_bytes() == source_bytes(name)


def test_force_downloads_again_and_dry_run_writes_nothing(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run("--years", "2022", "--dry-run", raw=raw) == 0
    assert not raw.exists()
    assert server.hits == [API_PATH]
    out = capsys.readouterr().out
    assert out.count("would download") == 4 and "4 file(s) to download" in out

    assert run("--years", "2022", raw=raw) == 0
    server.hits.clear()
    assert run("--years", "2022", "--force", raw=raw) == 0
    assert len(server.file_hits()) == 4


# ------------------------------------------------------------------------ failures


def tamper(server: FakeDataGouv, name: str, body: bytes | None = None) -> None:
    """Serve other bytes than the ones the API document describes."""
    original = source_bytes(name)
    server.files[server.path_of(name)] = body or original.replace(b"2022", b"2021", 1)


def test_checksum_mismatch_writes_nothing(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    tamper(server, "lieux-2022.csv")

    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE

    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "lieux-2022.csv" in err
    assert not (raw / "2022" / "lieux-2022.csv").exists()
    assert leftovers(raw) == []


def test_checksum_mismatch_keeps_the_good_file(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run("--years", "2022", raw=raw) == 0
    before = snapshot(raw / "2022")
    tamper(server, "carcteristiques-2022.csv")

    assert run("--years", "2022", "--force", raw=raw) == fetch.EXIT_FAILURE

    assert "carcteristiques-2022.csv" in capsys.readouterr().err
    assert snapshot(raw / "2022") == before
    assert leftovers(raw) == []


def test_size_mismatch_without_checksum_is_refused(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    tamper(server, "usagers-2022.csv", source_bytes("usagers-2022.csv") + b"extra\n")

    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE

    err = capsys.readouterr().err
    assert "size mismatch" in err and "usagers-2022.csv" in err
    assert not (raw / "2022" / "usagers-2022.csv").exists()
    assert leftovers(raw) == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_on_a_file_names_the_url(server, tmp_path, capsys, status):
    raw = tmp_path / "raw"
    path = server.path_of("carcteristiques-2022.csv")  # the first file fetched
    server.status[path] = status

    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE

    err = capsys.readouterr().err
    assert f"HTTP {status}" in err and server.base + path in err
    assert not raw.exists() or list(raw.rglob("*")) == []  # no file, not even an empty year


def test_http_error_after_some_files_keeps_only_complete_ones(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    server.status[server.path_of("vehicules-2022.csv")] = 500

    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE

    assert "HTTP 500" in capsys.readouterr().err
    written = sorted(p.name for p in (raw / "2022").iterdir())
    assert written == ["carcteristiques-2022.csv", "lieux-2022.csv"]
    assert all((raw / "2022" / name).read_bytes() == source_bytes(name) for name in written)


def test_connection_dropped_mid_file_leaves_nothing_partial(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run("--years", "2022", raw=raw) == 0
    before = snapshot(raw / "2022")
    # Without checksum or size, only the announced Content-Length can reveal the cut.
    entry = next(r for r in server.resources if r["title"] == "usagers-2022.csv")
    entry["checksum"] = entry["filesize"] = None
    server.truncated.add(server.path_of("usagers-2022.csv"))

    assert run("--years", "2022", "--force", raw=raw) == fetch.EXIT_FAILURE

    err = capsys.readouterr().err
    assert "usagers-2022.csv" in err and "fetch: error:" in err
    after = snapshot(raw / "2022")
    assert after["usagers-2022.csv"] == before["usagers-2022.csv"]  # not even touched
    assert {name: data for name, (_, data) in after.items()} == {
        name: data for name, (_, data) in before.items()
    }
    assert leftovers(raw) == []


def test_two_503_answers_then_the_file_is_fetched(server, tmp_path):
    raw = tmp_path / "raw"
    path = server.path_of("lieux-2022.csv")
    server.flaky[path] = [503, 503]

    assert run("--years", "2022", raw=raw) == 0

    for name in FILES[2022]:
        assert (raw / "2022" / name).read_bytes() == source_bytes(name)
    times = [t for hit, t in zip(server.hits, server.times, strict=True) if hit == path]
    assert len(times) == 3
    # urllib3's exponential backoff: none before the first retry, 2 x the factor before the next.
    assert times[2] - times[1] >= 2 * FAST_BACKOFF


def test_retries_exhausted_is_a_clear_error_and_writes_nothing(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    path = server.path_of("carcteristiques-2022.csv")  # the first file fetched
    server.status[path] = 503

    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE

    err = capsys.readouterr().err
    attempts = fetch.RETRIES + 1
    expected = f"HTTP 503 Service Unavailable for {server.base}{path} (still failing after"
    assert f"{expected} {attempts} attempts)" in err
    assert server.file_hits() == [path] * attempts
    assert not raw.exists() or list(raw.rglob("*")) == []  # no file, not even an empty year


def test_api_errors_are_clear(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    server.status[API_PATH] = 500
    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE
    assert f"HTTP 500 Internal Server Error for {server.api_url}" in capsys.readouterr().err

    closed = "http://127.0.0.1:9/api/1/datasets/x/"  # discard port: nothing listens
    assert run("--years", "2022", "--api-url", closed, raw=raw) == fetch.EXIT_FAILURE
    attempts = f"gave up after {fetch.RETRIES + 1} attempts"
    assert f"cannot reach the dataset API {closed} ({attempts})" in capsys.readouterr().err
    assert not raw.exists()


def test_year_absent_from_the_dataset(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert run("--years", "2022,2030-2031", raw=raw) == fetch.EXIT_FAILURE

    err = capsys.readouterr().err
    assert "year(s) 2030-2031 not in the dataset" in err
    assert "years published: 2018, 2022" in err
    assert server.file_hits() == [] and not raw.exists()


def test_year_lacking_a_table_lists_what_was_found(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    server.resources = [r for r in server.resources if r["title"] != "usagers-2022.csv"]

    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE

    err = capsys.readouterr().err
    assert "year 2022 lacks table(s) ['usagers']" in err
    assert "carcteristiques-2022.csv, lieux-2022.csv, vehicules-2022.csv" in err
    assert server.file_hits() == [] and not raw.exists()


def test_refuses_a_second_file_for_a_table(server, tmp_path, capsys):
    raw = tmp_path / "raw"
    other = raw / "2022" / "caract-2022.parquet"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"an older copy")

    assert run("--years", "2022", raw=raw) == fetch.EXIT_FAILURE

    assert "already holds caract-2022.parquet" in capsys.readouterr().err
    assert server.file_hits() == []
    assert [p.name for p in (raw / "2022").iterdir()] == ["caract-2022.parquet"]


# ------------------------------------------------------------------- names and arguments


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("caracteristiques-2019.csv", ("caracteristiques", 2019)),
        ("carcteristiques-2021.csv", ("caracteristiques", 2021)),
        ("caract-2023.csv", ("caracteristiques", 2023)),
        ("caracteristiques_2016.csv", ("caracteristiques", 2016)),
        ("lieux_2016.csv", ("lieux", 2016)),
        ("vehicules-2023.csv", ("vehicules", 2023)),
        ("usagers_2009.csv", ("usagers", 2009)),
        ("usagers-2018.columns-subset.csv.gz", ("usagers", 2018)),
        ("vehicules-immatricules-baac-2023.csv", None),
        ("description-des-bases-de-donnees-annuelles.pdf", None),
        ("caract-2023.pdf", None),
        ("lieux-2023", None),
    ],
)
def test_year_file_names(name, expected):
    assert fetch.year_file(name) == expected


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("2021", [2021]),
        ("2019-2023", [2019, 2020, 2021, 2022, 2023]),
        ("2019,2021,2023", [2019, 2021, 2023]),
        ("2023, 2005-2006,2023", [2005, 2006, 2023]),
    ],
)
def test_parse_years(text, years):
    assert fetch.parse_years(text) == years


@pytest.mark.parametrize("text", ["20x9", "2023-2019", "1999", "", "2019-", "2019,,2020", "19"])
def test_bad_years_are_usage_errors(text, tmp_path, capsys):
    assert run("--years", text, raw=tmp_path) == 2
    err = capsys.readouterr().err
    assert "Usage: baac fetch" in err and "Invalid value for --years" in err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ real process


def subprocess_env(server: FakeDataGouv) -> dict[str, str]:
    env = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    env[fetch.API_URL_ENV] = server.api_url
    return env


def test_help_in_a_subprocess():
    result = subprocess.run(
        [Path(sys.executable).with_name("baac"), "fetch", "--help"],  # the installed script
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for text in ("Usage: baac fetch", "--years", "--raw-dir", "--api-url"):
        assert text in result.stdout
    assert "--force" in result.stdout and "--dry-run" in result.stdout
    assert fetch.API_URL_ENV in result.stdout and "data/raw" in result.stdout


def test_full_fetch_in_a_subprocess(server, tmp_path):
    # Run from a scratch directory so that the default --raw-dir (data/raw) is exercised
    # without touching the repository's own raw dump.
    command = [sys.executable, "-m", "baac_severity.cli", "fetch", "--years", "2022"]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(server),
    )
    assert result.returncode == 0, result.stderr
    assert "4 file(s) downloaded" in result.stdout
    assert "dvc add data/raw" in result.stdout and "git add data.dvc" in result.stdout
    raw = tmp_path / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["2022"]
    for name in FILES[2022]:
        assert (raw / "2022" / name).read_bytes() == source_bytes(name)
