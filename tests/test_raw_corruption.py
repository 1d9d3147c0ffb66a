"""Corrupted raw files: each kind is either fatal (an error naming the file and the line,
nothing written) or quarantined (counted, written aside), as data/README.md documents; and no
row is ever lost silently: for every table and year, rows read = rows kept + rows quarantined.

Every corrupt file is built in ``tmp_path`` from a small slice of a real BAAC file: the
bundled 2018 CSVs and 2024 Parquet copies (``data/raw``), and the genuine Latin-1 2013
caracteristiques of the shared data (for accented text). "Rows read" is always counted here,
independently of the loaders (lines of the file, rows of the Parquet metadata).
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from baac_severity.config import ROOT
from baac_severity.data import ingest, loaders, schema
from baac_severity.data.io import BadInputError
from tests.helpers import load_table
from tests.test_bad_input import outputs, run_ingest, tree
from tests.test_pipeline_data import cached_raw_dump

RAW = ROOT / "data" / "raw"
SHARED_2013 = ROOT.parent / "shared" / "data" / "baac" / "2013" / "caracteristiques_2013.csv.gz"
pytestmark = pytest.mark.skipif(not RAW.is_dir(), reason="data/raw missing: run `make data`")
ACCIDENTS = 40  # accidents in a small year: enough for children of every kind
BOM = b"\xef\xbb\xbf"


# ------------------------------------------------------------------ real rows, as text


@dataclass(frozen=True)
class Text:
    """A CSV file as lines (line 1 = index 0) and its line terminator."""

    lines: list[str]
    newline: str

    def render(self, terminated: bool = True) -> str:
        return self.newline.join(self.lines) + (self.newline if terminated else "")


def read_lines(path: Path) -> Text:
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("latin-1")
    newline = "\r\n" if "\r\n" in text else "\n"
    return Text(text.rstrip("\r\n").split(newline), newline)


published = functools.cache(read_lines)  # the real files, parsed once per session


def key_of(line: str, header: str) -> str:
    """The Num_Acc of an old-format line (the 2018 subsets start with an index column)."""
    return line.split(",")[header.split(",").index("Num_Acc")]


def year_2018_files() -> dict[str, Path]:
    return loaders.year_files(RAW / "2018")


def small_2018(dest: Path) -> dict[str, Path]:
    """The first ``ACCIDENTS`` accidents of 2018 and every row of theirs in the other tables,
    as plain CSVs named like the bundled files (same columns, same line terminators)."""
    files = year_2018_files()
    accidents = published(files["caracteristiques"])
    keys = {key_of(line, accidents.lines[0]) for line in accidents.lines[1 : ACCIDENTS + 1]}
    folder = dest / "2018"
    folder.mkdir(parents=True)
    written = {}
    for table, source in files.items():
        text = published(source)
        rows = [line for line in text.lines[1:] if key_of(line, text.lines[0]) in keys]
        target = folder / source.name.removesuffix(".gz")
        target.write_bytes(Text([text.lines[0], *rows], text.newline).render().encode("latin-1"))
        written[table] = target
    return written


def edit(path: Path, change: Callable[[list[str]], list[str]], terminated: bool = True) -> None:
    text = read_lines(path)
    path.write_bytes(Text(change(text.lines), text.newline).render(terminated).encode("latin-1"))


def new_format_caracteristiques(dest: Path, rows: int = 30) -> Path:
    """Real 2024 accidents written as the published 2019+ CSV: ``;``, quoted, UTF-8, decimal
    commas, ``HH:MM`` (the bundled copy is Parquet). Line 4 has an accent: "Allée ..."."""
    source = pd.read_parquet(RAW / "2024" / "caracteristiques_2024.silver.parquet").head(rows)
    stamp = pd.to_datetime(source["datetime"])
    frame = pd.DataFrame(
        {
            "Num_Acc": source["Num_Acc"],
            "jour": stamp.dt.day,
            "mois": stamp.dt.month,
            "an": stamp.dt.year,
            "hrmn": stamp.dt.strftime("%H:%M"),
            **{c: source[c] for c in ["lum", "dep", "com", "agg", "int", "atm", "col", "adr"]},
            "lat": source["lat"].map(lambda v: f"{v:.5f}".replace(".", ",")),
            "long": source["long"].map(lambda v: f"{v:.5f}".replace(".", ",")),
        }
    )
    lines = [";".join(f'"{name}"' for name in frame.columns)]
    lines += [";".join(f'"{value}"' for value in row) for row in frame.astype(str).to_numpy()]
    path = dest / "caract-2024.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


ACCENTED_LINE = 4  # "Allée des Tilleuls" in the first 2024 accidents


# ----------------------------------------------------------------------- fatal kinds


def cut_last_row(lines: list[str]) -> list[str]:
    return [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]


def with_line(number: int, change: Callable[[str], str]) -> Callable[[list[str]], list[str]]:
    def apply(lines: list[str]) -> list[str]:
        lines = list(lines)
        lines[number - 1] = change(lines[number - 1])
        return lines

    return apply


def encode_line_as(path: Path, number: int, encoding: str) -> None:
    """Re-encode one line of a file in another encoding (a file assembled from two sources)."""
    lines = path.read_bytes().split(b"\n")
    current = "utf-8" if encoding == "latin-1" else "latin-1"
    lines[number - 1] = lines[number - 1].decode(current).encode(encoding)
    path.write_bytes(b"\n".join(lines))


def old_lieux(tmp_path: Path) -> Path:
    return small_2018(tmp_path)["lieux"]


@dataclass(frozen=True)
class Fatal:
    id: str
    build: Callable[[Path], Path]  # writes the real slice, returns the file to corrupt
    corrupt: Callable[[Path], None]
    problem: str
    line: Callable[[Path], int]  # the line the message must name (computed from the file)
    year: int = 2018


def last_line(path: Path) -> int:
    return len(path.read_bytes().rstrip(b"\r\n").split(b"\n"))


FATAL = [
    Fatal(
        "old-truncated-mid-row",
        old_lieux,
        lambda p: edit(p, cut_last_row, terminated=False),
        "header has 18); the file ends inside this row without a line break: truncated mid-row?",
        last_line,
    ),
    Fatal(
        "new-truncated-inside-quotes",
        new_format_caracteristiques,
        lambda p: p.write_bytes(p.read_bytes().rstrip(b"\n")[:-12]),
        "malformed quoting: unexpected end of data; the file ends inside this row",
        last_line,
        year=2024,
    ),
    Fatal(
        "old-too-many-fields",
        old_lieux,
        lambda p: edit(p, with_line(12, lambda line: line + ",1")),
        "too many fields (19, header has 18)",
        lambda p: 12,
    ),
    Fatal(
        "old-too-few-fields",
        old_lieux,
        lambda p: edit(p, with_line(12, lambda line: line.rsplit(",", 1)[0])),
        "too few fields (17, header has 18)",
        lambda p: 12,
    ),
    Fatal(
        "new-too-many-fields",
        new_format_caracteristiques,
        lambda p: edit(p, with_line(9, lambda line: line + ';"1"')),
        "too many fields (16, header has 15)",
        lambda p: 9,
        year=2024,
    ),
    Fatal(
        "new-too-few-fields",
        new_format_caracteristiques,
        lambda p: edit(p, with_line(9, lambda line: line.rsplit(";", 1)[0])),
        "too few fields (14, header has 15)",
        lambda p: 9,
        year=2024,
    ),
    Fatal(
        "new-unclosed-quote-mid-file",
        new_format_caracteristiques,
        lambda p: edit(p, with_line(9, lambda line: line.replace('";"', ';"', 1))),
        "malformed quoting",
        lambda p: 9,
        year=2024,
    ),
    Fatal(
        "latin1-line-in-utf8-file",
        new_format_caracteristiques,
        lambda p: encode_line_as(p, ACCENTED_LINE, "latin-1"),
        "not valid UTF-8 (2019+ files are UTF-8; Latin-1 text in it?) (value b'\\xe9')",
        lambda p: ACCENTED_LINE,
        year=2024,
    ),
    Fatal(
        "utf16-file",
        old_lieux,
        lambda p: p.write_bytes(p.read_bytes().decode("latin-1").encode("utf-16")),
        "UTF-16 text",
        lambda p: 1,
    ),
]


@pytest.mark.parametrize("case", FATAL, ids=[case.id for case in FATAL])
def test_structural_corruption_is_fatal_and_names_file_and_line(case, tmp_path):
    path = case.build(tmp_path)
    assert len(load_table(path, case.year)) == last_line(path) - 1  # intact, it loads
    case.corrupt(path)
    before = tree(tmp_path)
    with pytest.raises(BadInputError) as caught:
        load_table(path, case.year)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {case.line(path)}: "), message
    assert case.problem in message, message
    assert tree(tmp_path) == before  # nothing written


def test_utf8_line_in_a_latin1_file_is_fatal(tmp_path):
    if not SHARED_2013.is_file():
        pytest.skip(f"shared BAAC data not available at {SHARED_2013}")
    text = published(SHARED_2013)
    accented = next(i for i, line in enumerate(text.lines) if not line.isascii()) + 1
    path = tmp_path / "caracteristiques_2013.csv"
    path.write_bytes(Text(text.lines[: accented + 5], "\n").render().encode("latin-1"))
    assert len(load_table(path, 2013)) == accented + 4  # genuine Latin-1: accepted
    encode_line_as(path, accented, "utf-8")
    with pytest.raises(BadInputError) as caught:
        load_table(path, 2013)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {accented}: UTF-8 text in a Latin-1 file"), message
    accent = next(char for char in text.lines[accented - 1] if not char.isascii())
    assert f"(value {accent!r})" in message


# ------------------------------------------------------------------- accepted: a BOM


@pytest.mark.parametrize("fmt", ["old", "new"])
def test_utf8_bom_at_the_start_is_stripped(fmt, tmp_path):
    if fmt == "old":
        path, year = small_2018(tmp_path)["vehicules"], 2018
    else:
        path, year = new_format_caracteristiques(tmp_path), 2024
    plain = load_table(path, year)
    path.write_bytes(BOM + path.read_bytes())
    with_bom = load_table(path, year)
    pd.testing.assert_frame_equal(with_bom, plain)
    assert with_bom[schema.KEY].str.fullmatch(r"\d{12}").all()  # the BOM is not in the key


# --------------------------------------------------------------- quarantined kinds


def file_rows(path: Path) -> int:
    """Rows read from a raw file, counted without the loaders."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.rstrip(b"\r\n").count(b"\n")  # lines after the header


def assert_accounted(tables: loaders.RawTables, files: dict[str, Path], year: int) -> None:
    """rows read (counted here) = rows kept + rows quarantined, for every table."""
    for table, path in files.items():
        counts = tables.counts[str(year)][table]
        kept = tables[table][schema.KEY].str.startswith(str(year)).sum()
        quarantine = tables.quarantine[table]
        quarantined = (quarantine["source_year"] == year).sum()
        assert counts["read"] == file_rows(path), table
        assert counts["kept"] == kept and counts["quarantined"] == quarantined, table
        assert counts["read"] == counts["kept"] + counts["quarantined"], table
        assert sum(counts["reasons"].values()) == counts["quarantined"], table


def duplicate_line(number: int, change: Callable[[str], str] = str) -> Callable:
    """Insert, after line ``number``, a copy of it (changed by ``change``)."""

    def apply(lines: list[str]) -> list[str]:
        return [*lines[:number], change(lines[number - 1]), *lines[number:]]

    return apply


def set_last_field(value: str) -> Callable[[str], str]:
    return lambda line: line.rsplit(",", 1)[0] + "," + value


def reasons(tables: loaders.RawTables, table: str) -> dict[str, int]:
    return tables.counts["2018"][table]["reasons"]


def test_exact_duplicate_rows_are_quarantined_once_each(tmp_path):
    files = small_2018(tmp_path)
    original = loaders.load_year(files["caracteristiques"].parent, 2018)
    edit(files["caracteristiques"], duplicate_line(7))
    edit(files["lieux"], duplicate_line(3))
    edit(files["vehicules"], duplicate_line(5))
    edit(files["vehicules"], duplicate_line(5))  # a third copy of the same vehicle
    tables = loaders.load_year(files["caracteristiques"].parent, 2018)
    assert_accounted(tables, files, 2018)
    for table in schema.TABLE_NAMES:  # the first copy is kept: nothing else changes
        pd.testing.assert_frame_equal(tables[table], original[table])
    assert reasons(tables, "caracteristiques") == {"duplicate_row": 1}
    assert reasons(tables, "lieux") == {"duplicate_row": 1}
    assert reasons(tables, "vehicules") == {"duplicate_row": 2}
    quarantine = tables.quarantine["vehicules"]
    assert quarantine["source_line"].tolist() == [6, 7]  # the copies, not the original line 5
    assert set(quarantine["source_file"]) == {files["vehicules"].name}
    expected = original["vehicules"].iloc[[3, 3]].reset_index(drop=True)
    pd.testing.assert_frame_equal(quarantine[expected.columns], expected)


def test_identical_road_users_without_an_id_are_two_users(tmp_path):
    """The 2018 users subset is Num_Acc,grav: identical rows are distinct passengers."""
    files = small_2018(tmp_path)
    users = read_lines(files["usagers"])
    assert len(users.lines) - 1 > len(set(users.lines[1:]))  # the real slice already has some
    edit(files["usagers"], duplicate_line(2))
    tables = loaders.load_year(files["caracteristiques"].parent, 2018)
    assert_accounted(tables, files, 2018)
    assert tables.counts["2018"]["usagers"]["quarantined"] == 0


def test_conflicting_num_acc_quarantines_the_whole_accident(tmp_path):
    files = small_2018(tmp_path)
    accidents = read_lines(files["caracteristiques"])
    line = 9
    key = key_of(accidents.lines[line - 1], accidents.lines[0])
    header = accidents.lines[0].split(",")
    assert header[-1] == "long"  # a different longitude: same accident, another description
    edit(files["caracteristiques"], duplicate_line(line, set_last_field("9.87654")))
    tables = loaders.load_year(files["caracteristiques"].parent, 2018)
    assert_accounted(tables, files, 2018)
    assert key not in set(tables["caracteristiques"][schema.KEY])
    assert reasons(tables, "caracteristiques") == {"conflicting_num_acc": 2}
    assert tables.quarantine["caracteristiques"]["source_line"].tolist() == [line, line + 1]
    for table in schema.CHILD_TABLES:
        text = read_lines(files[table])
        children = sum(key_of(row, text.lines[0]) == key for row in text.lines[1:])
        assert children > 0
        assert reasons(tables, table) == {"child_of_conflicting_num_acc": children}, table
        assert key not in set(tables[table][schema.KEY]), table


def small_2024(dest: Path, accidents: int = 20) -> dict[str, Path]:
    """The first accidents of the bundled 2024 Parquet copies, all their rows, as Parquet."""
    files = loaders.year_files(RAW / "2024")
    keys = pd.read_parquet(files["caracteristiques"])["Num_Acc"].head(accidents)
    folder = dest / "2024"
    folder.mkdir(parents=True)
    written = {}
    for table, source in files.items():
        frame = pd.read_parquet(source)
        frame[frame["Num_Acc"].isin(keys)].to_parquet(folder / source.name, index=False)
        written[table] = folder / source.name
    return written


def test_duplicate_parquet_rows_are_quarantined_with_their_row(tmp_path):
    files = small_2024(tmp_path)
    users = pd.read_parquet(files["usagers"])
    assert users["id_usager"].notna().all()  # 2024 users carry their published id
    pd.concat([users, users.iloc[[4]]], ignore_index=True).to_parquet(files["usagers"])
    tables = loaders.load_year(files["usagers"].parent, 2024)
    assert_accounted(tables, files, 2024)
    assert tables.counts["2024"]["usagers"]["reasons"] == {"duplicate_row": 1}
    # Parquet "lines" count as if there were a header: row r (0-based) is line r + 2.
    assert tables.quarantine["usagers"]["source_line"].tolist() == [len(users) + 2]


def test_the_real_bundled_data_is_fully_accounted():
    """Every year and table of data/raw: rows read = kept + quarantined (as found: none)."""
    tables = cached_raw_dump(RAW, None)  # parsed once per session, shared with the data tests
    for year in loaders.raw_years(RAW):
        assert_accounted(tables, loaders.year_files(RAW / str(year)), year)
    quarantined = {t: len(frame) for t, frame in tables.quarantine.items()}
    assert quarantined == dict.fromkeys(schema.TABLE_NAMES, 0), quarantined


# ------------------------------------------------ ingest-chunk: outputs and metrics


def test_ingest_writes_the_quarantine_and_counts_it(tmp_path):
    files = small_2018(tmp_path / "raw")
    edit(files["caracteristiques"], duplicate_line(9, set_last_field("9.87654")))
    edit(files["vehicules"], duplicate_line(5))
    out, progress_file = tmp_path / "chunks", tmp_path / "progress.json"
    ingest.ingest(tmp_path / "raw", None, 16, None, out, progress_file)
    progress = json.loads(progress_file.read_text())
    quarantine_dir = out / ingest.QUARANTINE_DIR
    for table, path in files.items():
        entry = progress["tables"][table]
        year = progress["years"]["2018"][table]
        chunk_rows = sum(len(pd.read_parquet(p)) for p in out.glob(f"chunk-*/{table}.parquet"))
        quarantined = pq.ParquetFile(quarantine_dir / f"{table}.parquet").metadata.num_rows
        assert entry["read"] == year["read"] == file_rows(path), table
        assert entry["total"] == year["kept"] == chunk_rows, table
        assert entry["quarantined"] == year["quarantined"] == quarantined, table
        assert entry["read"] == entry["total"] + entry["quarantined"], table
        assert sum(progress["quarantine"][table].values()) == quarantined, table
    assert progress["quarantine"]["vehicules"]["duplicate_row"] == 1
    assert progress["quarantine"]["caracteristiques"] == {"conflicting_num_acc": 2}
    # Repaired raw data: the quarantine goes, and the metrics say none.
    small_2018(tmp_path / "repaired")
    ingest.ingest(tmp_path / "repaired", None, 16, None, out, progress_file)
    progress = json.loads(progress_file.read_text())
    assert not quarantine_dir.exists()
    assert all(entry["quarantined"] == 0 for entry in progress["tables"].values())


def test_cli_truncated_file_exits_2_and_keeps_earlier_outputs(repo_root, tmp_path):
    project = tmp_path / "project"
    files = small_2018(project / "raw")
    params = OmegaConf.load(repo_root / "params.yaml")
    params.data.raw_dir, params.data.years = "raw", None
    params.ingest.chunk_size, params.ingest.chunks = 16, "all"
    OmegaConf.save(params, project / "params.yaml")
    chunks, progress = project / "data" / "chunks", project / "metrics" / "progress.json"
    ingest.ingest(project / "raw", None, 16, None, chunks, progress)  # the earlier run
    before = outputs(project)
    edit(files["lieux"], cut_last_row, terminated=False)
    result = run_ingest(project)
    assert result.returncode == 2, result.stderr
    line = last_line(files["lieux"])
    expected = f"ingest-chunk: bad input: raw/2018/{files['lieux'].name}, line {line}: "
    assert expected in result.stderr and "truncated mid-row?" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert outputs(project) == before
