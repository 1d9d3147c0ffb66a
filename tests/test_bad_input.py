"""Bad input is refused with a ``BadInputError`` that names the file and the line (or column),
and nothing is written: neither by the loaders nor by the ``ingest-chunk`` CLI, whose earlier
outputs stay byte-identical.

Every case corrupts a real bundled file of the embedded 2018 dump (``data/raw/2018``) or a
hand-written 2019+ fixture, the way such files go wrong in practice.
"""

from __future__ import annotations

import gzip
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from baac_severity.data import loaders
from baac_severity.data.io import BadInputError
from tests.helpers import load_table

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "new_format"
YEAR = 2018
ACCIDENTS_2018 = 57783  # README.md of the shared data
CHUNK_SIZE = 20000


# ------------------------------------------------------------------ corrupting a file


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("latin-1")


def write_text(path: Path, text: str) -> None:
    data = text.encode("latin-1")
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.suffix == ".gz" else data)


def edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite a file line by line (line 1 = index 0), keeping its line terminator."""
    text = read_text(path)
    newline = "\r\n" if "\r\n" in text else "\n"
    write_text(path, newline.join(edit(text.split(newline))))


def set_field(line: int, column: str, value: str, sep: str = ",") -> Callable:
    def edit(lines: list[str]) -> list[str]:
        header = [name.strip('"\ufeff') for name in lines[0].split(sep)]
        fields = lines[line - 1].split(sep)
        fields[header.index(column)] = value
        lines[line - 1] = sep.join(fields)
        return lines

    return edit


def drop_column(column: str, sep: str = ",") -> Callable:
    def edit(lines: list[str]) -> list[str]:
        index = [name.strip('"') for name in lines[0].split(sep)].index(column)
        out = []
        for line in lines:
            fields = line.split(sep)
            out.append(sep.join(fields[:index] + fields[index + 1 :]) if line else line)
        return out

    return edit


def truncate_gzip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def swap_separator(old: str, new: str) -> Callable[[Path], None]:
    return lambda path: write_text(path, read_text(path).replace(old, new))


def header_only(path: Path) -> None:
    edit_lines(path, lambda lines: [*lines[:1], ""])


def drop_last_field(line: int) -> Callable:
    def edit(lines: list[str]) -> list[str]:
        lines[line - 1] = lines[line - 1].rsplit(",", 1)[0]
        return lines

    return edit


def add_field(line: int) -> Callable:
    def edit(lines: list[str]) -> list[str]:
        lines[line - 1] += ",1"
        return lines

    return edit


@dataclass(frozen=True)
class Case:
    id: str
    file: str  # the file of the 2018 raw dump that is corrupted
    corrupt: Callable[[Path], None]
    problem: str  # what the message must say is wrong
    line: int | None  # the line the message must name; None: the message names a line
    column: str | None = None
    whole_year: bool = False  # only load_year can see it
    cli: bool = True  # also run through the ingest CLI


def lines_edit(edit: Callable) -> Callable[[Path], None]:
    return lambda path: edit_lines(path, edit)


LIEUX, VEHICULES = "lieux-2018.csv.gz", "vehicules-2018.csv.gz"
CASES = [
    Case("truncated-gzip", LIEUX, truncate_gzip, "truncated or corrupt gzip", None),
    Case("semicolon-for-comma", LIEUX, swap_separator(",", ";"), "wrong separator", 1),
    Case("missing-column", LIEUX, lines_edit(drop_column("catr")), "missing column", 1, "catr"),
    Case(
        "non-numeric-code",
        LIEUX,
        lines_edit(set_field(7, "catr", "x")),
        "not an integer code",
        7,
        "catr",
    ),
    Case(
        "unknown-num-acc",
        VEHICULES,
        lines_edit(set_field(7, "Num_Acc", "201899999999")),
        "not found in caracteristiques",
        7,
        "Num_Acc",
        whole_year=True,
    ),
    Case("header-only", LIEUX, header_only, "header but no rows", 2),
    Case("too-few-fields", LIEUX, lines_edit(drop_last_field(7)), "too few fields", 7),
    Case("too-many-fields", LIEUX, lines_edit(add_field(9)), "too many fields", 9),
    Case(
        "malformed-num-acc",
        LIEUX,
        lines_edit(set_field(7, "Num_Acc", "2018000006")),
        "Num_Acc must be 12 digits",
        7,
        "Num_Acc",
    ),
    # Loader level only (the CLI maps every BadInputError the same way):
    # line 2, where pandas alone would take the extra field for an index and shift the columns,
    Case(
        "too-many-fields-first-row",
        VEHICULES,
        lines_edit(add_field(2)),
        "too many fields",
        2,
        cli=False,
    ),
    # and a code that does not fit the Int16 columns (it used to wrap around silently).
    Case(
        "code-overflows-int16",
        LIEUX,
        lines_edit(set_field(5, "catr", "40000")),
        "out of range",
        5,
        "catr",
        cli=False,
    ),
]
CASE_IDS = [case.id for case in CASES]
CLI_CASES = [case for case in CASES if case.cli]


def assert_names_file_and_line(message: str, path: Path, case: Case) -> None:
    assert str(path) in message or path.name in message, message
    if case.line is None:
        assert re.search(r", line \d+", message), message
    else:
        assert f", line {case.line}" in message, message
    if case.column is not None:
        assert f"column {case.column!r}" in message or repr(case.column) in message, message
    assert case.problem in message, message


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def raw_2018(repo_root) -> Path:
    folder = repo_root / "data" / "raw" / str(YEAR)
    if not folder.is_dir():
        pytest.skip(f"embedded raw dump not present in {folder} (run `dvc pull`)")
    return folder


# --------------------------------------------------------------------- loader level


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_loader_rejects(case, raw_2018, tmp_path):
    year_dir = tmp_path / str(YEAR)
    if case.whole_year:
        shutil.copytree(raw_2018, year_dir)
    else:
        year_dir.mkdir()
        shutil.copy2(raw_2018 / case.file, year_dir)
    path = year_dir / case.file
    case.corrupt(path)
    before = tree(tmp_path)
    with pytest.raises(BadInputError) as caught:
        if case.whole_year:
            loaders.load_year(year_dir, YEAR)
        else:
            load_table(path, YEAR)
    assert_names_file_and_line(str(caught.value), path, case)
    assert caught.value.path == str(path)
    assert tree(tmp_path) == before  # nothing written, nothing left behind


def _copy_fixture_year(tmp_path: Path, year: int) -> Path:
    target = tmp_path / str(year)
    shutil.copytree(FIXTURES / str(year), target)
    return target


def test_new_format_comma_for_semicolon(tmp_path):
    year_dir = _copy_fixture_year(tmp_path, 2022)
    path = year_dir / "lieux-2022.csv"
    swap_separator(";", ",")(path)
    with pytest.raises(BadInputError, match=r"lieux-2022\.csv, line 1: wrong separator"):
        load_table(path, 2022)


def test_new_format_missing_column(tmp_path):
    year_dir = _copy_fixture_year(tmp_path, 2022)
    path = year_dir / "lieux-2022.csv"
    edit_lines(path, drop_column("vma", sep=";"))
    with pytest.raises(BadInputError, match=r"lieux-2022\.csv, line 1: missing column.*'vma'"):
        load_table(path, 2022)


def test_new_format_non_numeric_code(tmp_path):
    year_dir = _copy_fixture_year(tmp_path, 2019)
    path = year_dir / "lieux-2019.csv"
    edit_lines(path, set_field(4, "catr", '"x"', sep=";"))
    with pytest.raises(BadInputError, match=r"lieux-2019\.csv, line 4, column 'catr'.*'x'"):
        load_table(path, 2019)


def test_new_format_malformed_accident_id(tmp_path):
    year_dir = _copy_fixture_year(tmp_path, 2022)
    path = year_dir / "carcteristiques-2022.csv"
    edit_lines(path, set_field(3, "Accident_Id", '"2022-000002"', sep=";"))
    with pytest.raises(BadInputError, match=r"carcteristiques-2022\.csv, line 3, column 'Num_Acc'"):
        load_table(path, 2022)


def test_unknown_num_acc_after_duplicate_lieux_rows_names_the_published_line(tmp_path):
    """2019+ lieux have several rows per accident; the message still names the file's line."""
    year_dir = _copy_fixture_year(tmp_path, 2022)
    path = year_dir / "lieux-2022.csv"
    lines = read_text(path).split("\n")
    assert lines[1][:14] == lines[2][:14] == '"202200000001"'  # line 3 repeats line 2's accident
    edit_lines(path, set_field(5, "Num_Acc", '"202200000009"', sep=";"))
    with pytest.raises(BadInputError, match=r"lieux-2022\.csv, line 5, column 'Num_Acc'"):
        loaders.load_year(year_dir, 2022)


def test_missing_table_and_empty_file(tmp_path):
    year_dir = _copy_fixture_year(tmp_path, 2023)
    (year_dir / "usagers-2023.csv").unlink()
    with pytest.raises(BadInputError, match=r"2023: year 2023 lacks table\(s\) \['usagers'\]"):
        loaders.load_year(year_dir, 2023)
    (year_dir / "usagers-2023.csv").write_bytes(b"")
    with pytest.raises(BadInputError, match=r"usagers-2023\.csv: file is empty"):
        loaders.load_year(year_dir, 2023)


# ------------------------------------------------------------------------ CLI level
#
# One project is ingested successfully; then every case corrupts a copy of that project and
# runs the stage again. The runs are subprocesses: they start in the background as soon as
# this module starts (so they overlap with the loader-level tests above) and two run at once.


def run_ingest(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "baac_severity.data.stages.ingest"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def outputs(project: Path) -> dict[str, bytes]:
    """Every file the stage wrote (or might leave behind) under data/ and metrics/."""
    return {
        f"{folder}/{name}": data
        for folder in ("data", "metrics")
        for name, data in tree(project / folder).items()
    }


class CliRuns:
    """The successful ingest of the real 2018 files, then one failing run per case."""

    def __init__(self, repo_root: Path, raw_2018: Path, tmp_path_factory) -> None:
        self.base = tmp_path_factory.mktemp("project")
        self.projects = {case.id: tmp_path_factory.mktemp(f"cli-{case.id}") for case in CLI_CASES}
        shutil.copytree(raw_2018, self.base / "raw" / str(YEAR))
        params = OmegaConf.load(repo_root / "params.yaml")
        params.data.raw_dir = "raw"  # the temporary raw dump, relative to the project
        params.data.years = None
        params.ingest.chunk_size = CHUNK_SIZE
        params.ingest.chunks = "all"
        OmegaConf.save(params, self.base / "params.yaml")
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.success = self.pool.submit(self._ingest)
        self.failures = {case.id: self.pool.submit(self._fail, case) for case in CLI_CASES}

    def _ingest(self) -> tuple[subprocess.CompletedProcess, dict[str, bytes]]:
        result = run_ingest(self.base)
        return result, outputs(self.base)

    def _fail(self, case: Case) -> subprocess.CompletedProcess:
        first, _ = self.success.result()
        if first.returncode != 0:
            raise RuntimeError(f"the first, valid ingest failed:\n{first.stderr}")
        project = self.projects[case.id]
        shutil.copytree(self.base, project, dirs_exist_ok=True)
        case.corrupt(project / "raw" / str(YEAR) / case.file)
        return run_ingest(project)


@pytest.fixture(scope="module", autouse=True)
def cli_runs(request, repo_root, tmp_path_factory):
    wanted = any(item.name.startswith("test_cli_") for item in request.session.items)
    if not wanted or not (repo_root / "data" / "raw" / str(YEAR)).is_dir():
        yield None  # the CLI tests are deselected, or skip through ``raw_2018``
        return
    runs = CliRuns(repo_root, repo_root / "data" / "raw" / str(YEAR), tmp_path_factory)
    yield runs
    runs.pool.shutdown(wait=True, cancel_futures=True)


def test_cli_ingests_the_real_2018_dump(cli_runs, raw_2018):
    result, written = cli_runs.success.result()
    assert result.returncode == 0, result.stderr
    chunks = {name.split("/")[2] for name in written if name.startswith("data/chunks/")}
    assert len(chunks) == math.ceil(ACCIDENTS_2018 / CHUNK_SIZE)
    tables = ["caracteristiques", "lieux", "vehicules", "usagers"]
    assert set(written) == {"metrics/progress.json", "metrics/data.json"} | {
        f"data/chunks/{chunk}/{name}"
        for chunk in chunks
        for name in [*(f"{table}.parquet" for table in tables), "chunk.json"]
    }


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.id for case in CLI_CASES])
def test_cli_rejects_and_keeps_earlier_outputs(case, cli_runs, raw_2018):
    first, before = cli_runs.success.result()
    assert first.returncode == 0, first.stderr
    result = cli_runs.failures[case.id].result()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "bad input" in result.stderr
    assert_names_file_and_line(result.stderr, Path("raw") / str(YEAR) / case.file, case)
    assert outputs(cli_runs.projects[case.id]) == before  # byte-identical, nothing new
