"""Read BAAC files of every publication format into the normalised tables of ``schema``.

Formats handled:
- 2005-2018 ("old"): ``,``-separated, Latin-1, ``an`` on 2 digits, ``hrmn`` as HHMM,
  ``lat``/``long`` as integers x 100000, ``dep`` x 10 (``590`` is Nord, ``201``/``202`` Corsica),
  a single ``secu`` field, and ``catu`` 4 for pedestrians on rollers or scooters.
- 2019+ ("new"): ``;``-separated and quoted, UTF-8, ``HH:MM``, decimal-comma coordinates,
  ``-1`` for "not filled in", ``secu1``-``secu3``, several ``lieux`` rows per accident, and
  file-name and key-column variations (``carcteristiques-2021``, ``caract-2023``, ``Accident_Id``).
- The bundled variants: the 2018 column subsets (declared by ``columns-subset`` in the file
  name: absent columns become missing values) and the 2024 Parquet copies (their
  outcome-derived extra columns are dropped; ``jour``/``mois``/``an``/``hrmn`` are recovered from
  ``datetime``).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from baac_severity.data import schema
from baac_severity.data.io import BadInputError

FIRST_NEW_FORMAT_YEAR = 2019
MISSING_TOKENS = {"", ".", "-1", "N/A", "NA", "nan", "<NA>"}
MISSING_ARRAY = pa.array(sorted(MISSING_TOKENS))
SUBSET_MARKER = "columns-subset"

TABLE_FILE_PATTERNS = {
    "caracteristiques": re.compile(r"^(caracteristiques|carcteristiques|caract)[-_]", re.I),
    "lieux": re.compile(r"^lieux[-_]", re.I),
    "vehicules": re.compile(r"^vehicules[-_]", re.I),
    "usagers": re.compile(r"^usagers[-_]", re.I),
}
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet")

# Columns each published format must carry, by table (after lower-casing the header).
PUBLISHED_COLUMNS = {
    "old": {
        "caracteristiques": "num_acc an mois jour hrmn lum agg int atm col com lat long dep",
        "lieux": "num_acc catr circ nbv vosp prof plan surf infra situ",
        "vehicules": "num_acc senc catv occutc obs obsm choc manv num_veh",
        "usagers": "num_acc place catu grav sexe trajet secu locp actp etatp an_nais num_veh",
    },
    "new": {
        "caracteristiques": "num_acc jour mois an hrmn lum dep com agg int atm col lat long",
        "lieux": "num_acc catr circ nbv vosp prof plan surf infra situ vma",
        "vehicules": "num_acc id_vehicule num_veh senc catv obs obsm choc manv motor occutc",
        "usagers": (
            "num_acc id_vehicule num_veh place catu grav sexe an_nais trajet "
            "secu1 secu2 secu3 locp actp etatp"
        ),
    },
}
# The 2024 Parquet copies replace jour/mois/an/hrmn with a datetime column.
PARQUET_DATE_COLUMN = "datetime"


def table_of(path: Path) -> str | None:
    """The BAAC table a file holds, from its name, or None if it is not a BAAC file."""
    if not path.name.lower().endswith(SUPPORTED_SUFFIXES):
        return None
    for table, pattern in TABLE_FILE_PATTERNS.items():
        if pattern.match(path.name):
            return table
    return None


def format_of(year: int) -> str:
    return "new" if year >= FIRST_NEW_FORMAT_YEAR else "old"


# --------------------------------------------------------------------------- reading text


def _read_bytes(path: Path) -> bytes:
    if not path.name.lower().endswith(".gz"):
        try:
            return path.read_bytes()
        except OSError as error:
            raise BadInputError(path, f"cannot read file: {error}") from error
    parts: list[bytes] = []
    try:
        with gzip.open(path, "rb") as handle:
            while part := handle.read(1 << 20):
                parts.append(part)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as error:
        # Name the first line that could not be read completely.
        line = sum(part.count(b"\n") for part in parts) + 1
        raise BadInputError(path, f"truncated or corrupt gzip file: {error}", line=line) from error
    return b"".join(parts)


UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A well-formed multi-byte UTF-8 sequence. Decoded as Latin-1 it reads "Ã©", "Ã¨", "â€™"...:
# pairs that French Latin-1 text does not contain (none in the 223 accented bytes of the
# published 2005-2018 files), so finding one means UTF-8 text was pasted into a Latin-1 file.
UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def _line_at(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _decode(path: Path, raw: bytes, fmt: str) -> str:
    """Text of a CSV file in its format's one encoding; a second encoding inside it is fatal.

    A UTF-8 byte-order mark at the start is accepted (some tools write one) and stripped.
    """
    if raw.startswith(UTF16_BOMS):
        raise BadInputError(path, "UTF-16 text (BAAC files are UTF-8 or Latin-1)", line=1)
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    if fmt == "old":
        # Latin-1 decodes any byte: a UTF-8 line would silently become mojibake.
        found = None if raw.isascii() else UTF8_SEQUENCE.search(raw)
        if found is not None:
            raise BadInputError(
                path,
                "UTF-8 text in a Latin-1 file (2005-2018 files are Latin-1): mixed encodings",
                line=_line_at(raw, found.start()),
                value=found.group().decode("utf-8"),
            )
        return raw.decode("latin-1")  # the published old-format encoding
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadInputError(
            path,
            "not valid UTF-8 (2019+ files are UTF-8; Latin-1 text in it?)",
            line=_line_at(raw, error.start),
            value=raw[error.start : error.end],
        ) from error


def _sniff_separator(path: Path, header: str, fmt: str) -> str:
    expected = "," if fmt == "old" else ";"
    if expected in header:
        return expected
    found = next((sep for sep in (",", ";", "\t", "|") if sep in header), None)
    if found is None:
        raise BadInputError(path, f"header has a single field; expected {expected!r}", line=1)
    raise BadInputError(
        path,
        f"wrong separator: expected {expected!r} for the {fmt} format, found {found!r}",
        line=1,
    )


TRUNCATED_HINT = "; the file ends inside this row without a line break: truncated mid-row?"


def _check_rows(path: Path, text: str, sep: str, terminated: bool) -> None:
    """Every row must sit on one line, quote its fields properly and have the header's fields.

    pandas cannot be trusted with this: it pads a short row with "" when
    ``keep_default_na=False``, and when the first data row has one field too many it silently
    turns the first column into the index and shifts every column. The csv module parses the
    same quoting rules, strictly, and reports the physical line of each row. One row per line
    (true of every published file) is also what makes "line = row + 1" exact everywhere.
    ``terminated``: whether the file ended with a line break (a cut file does not; some
    published files do not either, so it only sharpens the message).
    """
    lines = text.count("\n")  # ``text`` ends with exactly one line break
    reader = csv.reader(io.StringIO(text), delimiter=sep, quotechar='"', strict=True)
    try:
        expected = len(next(reader))
        # Fast path, no Python loop over the rows: field counts and row count at once.
        counts = Counter(map(len, reader))
        if set(counts) <= {expected} and sum(counts.values()) == lines - 1:
            return
    except csv.Error:
        pass  # located below
    reader = csv.reader(io.StringIO(text), delimiter=sep, quotechar='"', strict=True)
    previous = 0
    try:
        next(reader)
        previous = reader.line_num
        for row in reader:
            first, last = previous + 1, reader.line_num
            if last != first:
                raise BadInputError(
                    path,
                    f"unbalanced quote: one row spans lines {first}-{last}",
                    line=first,
                    value=sep.join(row)[:80],
                )
            if len(row) != expected:
                problem = "too few" if len(row) < expected else "too many"
                cut = not terminated and last == lines and len(row) < expected
                raise BadInputError(
                    path,
                    f"row has {problem} fields ({len(row)}, header has {expected})"
                    + (TRUNCATED_HINT if cut else ""),
                    line=last,
                    value=sep.join(row)[:80],
                )
            previous = last
    except csv.Error as error:
        at_end = reader.line_num >= lines
        raise BadInputError(
            path,
            f"malformed quoting: {error}" + (TRUNCATED_HINT if at_end else ""),
            line=previous + 1,
        ) from error


def read_csv_text(path: Path, fmt: str) -> pd.DataFrame:
    """All fields as strings, one row per line; structural faults are errors naming the line."""
    text = _decode(path, _read_bytes(path), fmt)
    if not text.strip():
        raise BadInputError(path, "file is empty")
    terminated = text.endswith(("\n", "\r"))
    # Line terminators after the last row are not rows; a blank line inside the file is.
    text = text.rstrip("\r\n") + "\n"
    header = text.split("\n", 1)[0]
    sep = _sniff_separator(path, header, fmt)
    _check_rows(path, text, sep, terminated)
    try:
        frame = pd.read_csv(
            _StringSource(text),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            quotechar='"',
            skipinitialspace=False,
            skip_blank_lines=False,
            index_col=False,
        )
    except pd.errors.ParserError as error:
        match = re.search(r"line (\d+)", str(error))
        line = int(match.group(1)) if match else None
        raise BadInputError(path, f"malformed row: {error}", line=line) from error
    if frame.empty:
        raise BadInputError(path, "file has a header but no rows", line=2)
    frame.columns = [str(name).strip().strip('"').lower() for name in frame.columns]
    return frame.rename(columns={"accident_id": schema.KEY})


class _StringSource:
    """A file-like view of a str, so pandas does not copy the text into a new buffer."""

    def __init__(self, text: str) -> None:
        self._buffer = io.StringIO(text)

    def read(self, size: int = -1) -> str:
        return self._buffer.read(size)

    def __iter__(self):
        return iter(self._buffer)


# ------------------------------------------------------------------------- value parsing


def _line_of(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 2  # +1 for the header, +1 for 1-based lines


def _is_missing_token(text: pd.Series) -> np.ndarray:
    # pyarrow's is_in is vectorised; pandas' isin on Arrow strings loops in Python.
    array = pa.array(text.to_numpy(dtype=object, na_value=None), type=pa.string())
    return pc.is_in(array, value_set=MISSING_ARRAY).to_numpy(zero_copy_only=False)


def _clean_strings(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(_is_missing_token(text))


INT16_LIMIT = 2**15 - 1  # codes are stored as Int16: a larger value would wrap around


def _plain_integers(text: pd.Series) -> pd.Series | None:
    """Fast path: pyarrow's cast when every value is a plain integer string, else None."""
    try:
        cast = pc.cast(pa.array(text.array), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return None
    return pd.Series(cast.to_pandas(types_mapper=pd.ArrowDtype), index=text.index)


def parse_int(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Integer codes; missing tokens become NA; anything non-numeric is an error."""
    text = _clean_strings(values)
    numbers = _plain_integers(text)
    if numbers is None:  # "1.0" (pandas-written subsets) and errors take the slow path
        numbers = pd.to_numeric(text, errors="coerce")
        bad = (text.notna() & (numbers.isna() | (numbers % 1 != 0))).to_numpy(dtype=bool)
        if bad.any():
            raise BadInputError(
                path,
                "not an integer code",
                line=_line_of(bad),
                column=column,
                value=text[bad].iloc[0],
            )
    too_large = (numbers.abs() > INT16_LIMIT).fillna(False).to_numpy(dtype=bool)
    if too_large.any():
        raise BadInputError(
            path,
            f"integer code out of range (|value| > {INT16_LIMIT})",
            line=_line_of(too_large),
            column=column,
            value=text[too_large].iloc[0],
        )
    return numbers.astype("Int64")


def parse_float(values: pd.Series, path: Path, column: str) -> pd.Series:
    text = _clean_strings(values).str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = (text.notna() & numbers.isna()).to_numpy(dtype=bool)
    if bad.any():
        raise BadInputError(
            path, "not a number", line=_line_of(bad), column=column, value=text[bad].iloc[0]
        )
    return numbers.astype("float64")


def normalise_key(values: pd.Series, path: Path) -> pd.Series:
    keys = values.astype("string").str.strip().str.replace(r"\.0$", "", regex=True)
    bad = ~keys.str.fullmatch(r"\d{12}").fillna(False).to_numpy(dtype=bool)
    if bad.any():
        raise BadInputError(
            path,
            "Num_Acc must be 12 digits (year + serial)",
            line=_line_of(bad),
            column="Num_Acc",
            value=keys[bad].iloc[0],
        )
    return keys


def _strip_id(values: pd.Series) -> pd.Series:
    # Published ids carry a non-breaking space as thousands separator ("203 988 581").
    text = values.astype("string").str.replace(r"[\s\u00a0\u202f]", "", regex=True)
    return text.mask(_is_missing_token(text))


def old_department(values: pd.Series) -> pd.Series:
    """Old-format ``dep`` is the INSEE code followed by 0 (590), Corsica 201/202, DOM 971..."""
    text = _clean_strings(values).str.lstrip("0").str.zfill(3)
    corsica = {"201": "2A", "202": "2B"}
    overseas = text.str.startswith("97")
    metro = text.str[:-1].str.lstrip("0").str.zfill(2)
    result = metro.where(~overseas, text).replace(corsica)
    result = result.mask(text.isin(corsica), text.map(corsica))
    return result.mask(text.isin(["000", ""]))


def new_department(values: pd.Series) -> pd.Series:
    text = _clean_strings(values).str.upper()
    return text.where(~text.str.fullmatch(r"\d").fillna(False), text.str.zfill(2))


def old_hrmn(values: pd.Series, path: Path) -> pd.Series:
    minutes = parse_int(values.astype("string").str.replace(":", "", regex=False), path, "hrmn")
    valid = minutes.notna() & (minutes // 100 < 24) & (minutes % 100 < 60)
    hours = (minutes // 100).astype("string").str.zfill(2)
    mins = (minutes % 100).astype("string").str.zfill(2)
    return (hours + ":" + mins).where(valid)


def new_hrmn(values: pd.Series) -> pd.Series:
    text = _clean_strings(values)
    valid = text.str.fullmatch(r"\d{1,2}:\d{2}").fillna(False)
    return text.where(valid).str.zfill(5)


# -------------------------------------------------------------------- table normalisation


def _require(frame: pd.DataFrame, path: Path, fmt: str, table: str) -> None:
    if SUBSET_MARKER in path.name:
        missing = {schema.KEY} - set(frame.columns)
    else:
        missing = set(PUBLISHED_COLUMNS[fmt][table].split()) - set(frame.columns)
    if missing:
        raise BadInputError(
            path,
            f"missing column(s) {sorted(missing)} for a {fmt}-format {table} file "
            f"(header: {list(frame.columns)})",
            line=1,
        )


def _typed(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Select and cast the schema columns; columns a source lacks become missing values."""
    out = pd.DataFrame(index=frame.index)
    for name, dtype in schema.dtypes(table).items():
        if name in frame:
            out[name] = frame[name].astype(dtype)
        else:
            out[name] = pd.Series(pd.NA, index=frame.index, dtype=dtype)
    return out.reset_index(drop=True)


def _codes_to_int(frame: pd.DataFrame, path: Path, table: str) -> pd.DataFrame:
    for name, dtype in schema.dtypes(table).items():
        if dtype == "Int16" and name in frame:
            frame[name] = parse_int(frame[name], path, name)
    return frame


def _old_secu(values: pd.Series) -> pd.Series:
    """Old ``secu`` is <equipment><used>: 11 belt worn, 12 belt not worn, 13 undeterminable."""
    equipment, used = values // 10, values % 10
    # Conditions are filled with False: pandas' mask() replaces where the condition is NA,
    # which would turn a missing secu into a code.
    worn = (used == 1) & (equipment > 0)  # equipment 0 is "not filled in"
    secu1 = equipment.where(worn.fillna(False))
    secu1 = secu1.mask((used == 2).fillna(False), 0).mask((used == 3).fillna(False), 8)
    return secu1.astype("Int64")


def _user_ids(frame: pd.DataFrame) -> pd.Series:
    """Published ``id_usager`` where it exists, else num_acc + position in publication order."""
    position = frame.groupby(schema.KEY, sort=False).cumcount() + 1
    fallback = frame[schema.KEY] + "-" + position.astype("string").str.zfill(3)
    if "id_usager" not in frame:
        return fallback
    return _strip_id(frame["id_usager"]).fillna(fallback)


def _normalise_csv(frame: pd.DataFrame, path: Path, table: str, year: int) -> pd.DataFrame:
    fmt = format_of(year)
    _require(frame, path, fmt, table)
    frame[schema.KEY] = normalise_key(frame[schema.KEY], path)
    if table == "caracteristiques":
        frame = _normalise_characteristics(frame, path, fmt, year)
    if table == "usagers" and fmt == "old" and "secu" in frame:
        frame["secu1"] = _old_secu(parse_int(frame["secu"], path, "secu"))
        frame = frame.drop(columns="secu")
    for name in ("id_vehicule", "num_veh", "actp"):
        if name in frame:
            frame[name] = (
                _strip_id(frame[name]) if name == "id_vehicule" else _clean_strings(frame[name])
            )
    frame = _codes_to_int(frame, path, table)
    if table == "usagers":
        if fmt == "old" and "catu" in frame:
            # fillna: mask() would also replace a missing catu (NA condition) by 3.
            frame["catu"] = frame["catu"].mask((frame["catu"] == 4).fillna(False), 3)
        frame[schema.USER_KEY] = _user_ids(frame)
    return frame


def _normalise_characteristics(
    frame: pd.DataFrame, path: Path, fmt: str, year: int
) -> pd.DataFrame:
    if "an" not in frame:
        frame["an"] = str(year)
    if fmt == "old":
        an = parse_int(frame["an"], path, "an")
        frame["an"] = an.where(an >= 100, an + 2000)
        frame["hrmn"] = old_hrmn(frame["hrmn"], path)
        frame["lat"], frame["long"] = (_old_coordinate(frame, path, c) for c in ("lat", "long"))
        if "dep" in frame:
            frame["dep"] = old_department(frame["dep"])
            if "com" in frame:
                # INSEE commune codes have 5 characters: "59" + "052", but "972" + "13".
                com = _clean_strings(frame["com"]).str.zfill(3)
                overseas = frame["dep"].str.len().eq(3).fillna(False)
                number = com.str[-3:].where(~overseas, com.str[-2:])
                frame["com"] = (frame["dep"] + number).where(com.notna())
    else:
        frame["hrmn"] = new_hrmn(frame["hrmn"])
        frame["lat"] = parse_float(frame["lat"], path, "lat")
        frame["long"] = parse_float(frame["long"], path, "long")
        frame["dep"] = new_department(frame["dep"])
        frame["com"] = _clean_strings(frame["com"])
    return frame


def _old_coordinate(frame: pd.DataFrame, path: Path, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    text = _clean_strings(frame[column])
    values = parse_float(text, path, column)
    # The published files hold integers x 100000; the bundled subset already holds degrees.
    scaled = ~text.str.contains(".", regex=False).fillna(False)
    values = values.where(~scaled, values / 100000)
    return values.mask(values == 0)


def _normalise_parquet(frame: pd.DataFrame, path: Path, table: str, year: int) -> pd.DataFrame:
    frame = frame.rename(columns=str.lower).rename(columns={"accident_id": schema.KEY})
    if table == "caracteristiques" and PARQUET_DATE_COLUMN in frame:
        stamp = pd.to_datetime(frame[PARQUET_DATE_COLUMN])
        frame["an"], frame["mois"], frame["jour"] = stamp.dt.year, stamp.dt.month, stamp.dt.day
        frame["hrmn"] = stamp.dt.strftime("%H:%M")
    as_text = frame.astype({c: "string" for c in frame.columns if c != PARQUET_DATE_COLUMN})
    as_text = as_text.drop(columns=[PARQUET_DATE_COLUMN, "date"], errors="ignore")
    return _normalise_csv(as_text, path, table, year)


# ------------------------------------------------------------ quarantine and row accounting
#
# The rules are documented in data/README.md ("Bad and quarantined rows"). Structural faults
# (above) are fatal. A row that parses but cannot be kept as it is gets one reason below: it is
# left out of the tables and returned beside them, typed like them and with its source, so that
# for every table and year: rows read = rows kept + rows quarantined.
DUPLICATE_ROW = "duplicate_row"  # identical to an earlier row of its file: a second copy
CONFLICTING_NUM_ACC = "conflicting_num_acc"  # one of several different rows of one accident
CHILD_OF_CONFLICTING = "child_of_conflicting_num_acc"  # a row of such an accident elsewhere
EXTRA_LIEUX_ROW = "extra_lieux_row"  # a second lieux row of an accident (2019+: not an error)
# Columns a quarantined row carries besides its table's schema columns.
SOURCE_COLUMNS = {
    "source_year": "Int16",
    "source_file": "string",
    "source_line": "Int64",  # Parquet sources: row number + 1, as if they had a header line
    "reason": "string",
}


@dataclass
class TableRows:
    """Every row of one file, normalised, with its line and quarantine reason (None: kept)."""

    frame: pd.DataFrame
    lines: np.ndarray
    reasons: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.reasons = np.full(len(self.frame), None, dtype=object)

    @property
    def kept(self) -> np.ndarray:
        return pd.isna(self.reasons)

    def set_aside(self, mask: np.ndarray, reason: str) -> None:
        """Quarantine the rows of ``mask``; a row already quarantined keeps its first reason."""
        self.reasons[mask & self.kept] = reason


def _has_row_identity(table: str, columns: pd.Index) -> bool:
    """Whether two identical rows of this file can only be one row published twice.

    Not for road users without a published ``id_usager``: two passengers can share every
    recorded attribute (the 2018 subset, ``Num_Acc,grav`` only, has 27,365 such rows).
    """
    return table != "usagers" or "id_usager" in {str(name).lower() for name in columns}


def _read_rows(path: Path, year: int, table: str | None) -> tuple[str, TableRows]:
    """The file's table name and all its rows, with duplicate and extra lieux rows marked."""
    table = table or table_of(path)
    if table is None:
        raise BadInputError(path, "not a BAAC table file name (caracteristiques/lieux/...)")
    if path.suffix == ".parquet":
        try:
            raw = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise BadInputError(path, f"unreadable Parquet file: {error}") from error
        if raw.empty:
            raise BadInputError(path, "file has no rows")
    else:
        raw = read_csv_text(path, format_of(year))
    # Compared on the source values, before normalisation rewrites (and mutates) them.
    duplicate = (
        raw.duplicated(keep="first").to_numpy()
        if _has_row_identity(table, raw.columns)
        else np.zeros(len(raw), dtype=bool)
    )
    if path.suffix == ".parquet":
        frame = _normalise_parquet(raw, path, table, year)
    else:
        frame = _normalise_csv(raw, path, table, year)
    # One row per line (``_check_rows``): +1 for the header, +1 for 1-based lines.
    rows = TableRows(_typed(frame, table), np.arange(len(frame)) + 2)
    rows.set_aside(duplicate, DUPLICATE_ROW)
    if table == "lieux":
        # From 2019 an accident can have several lieux rows: the schema keeps the first one.
        rows.set_aside(rows.frame[schema.KEY].duplicated(keep="first").to_numpy(), EXTRA_LIEUX_ROW)
    return table, rows


def _kept(rows: TableRows) -> pd.DataFrame:
    kept = rows.kept
    return rows.frame if kept.all() else rows.frame[kept].reset_index(drop=True)


# ------------------------------------------------------------------------- whole raw dump


def year_files(year_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(year_dir.iterdir()):
        table = table_of(path)
        if table is None:
            continue
        if table in found:
            raise BadInputError(
                year_dir, f"two files for table {table}: {found[table].name}, {path.name}"
            )
        found[table] = path
    return found


def raw_years(raw_dir: str | Path) -> dict[int, Path]:
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise BadInputError(raw_dir, "raw data directory does not exist (run `dvc pull`?)")
    years = {int(p.name): p for p in sorted(raw_dir.iterdir()) if p.is_dir() and p.name.isdigit()}
    if not years:
        raise BadInputError(raw_dir, "no year directories (e.g. 2018/) in the raw dump")
    return years


def _quarantine_conflicting_accidents(rows: dict[str, TableRows]) -> None:
    """An accident published as several different caracteristiques rows.

    Which row is true is unknown and the other tables cannot say which one their rows belong
    to, so keeping the first would be a guess: every row of that accident, in all four tables,
    is quarantined. (Identical copies were already set aside as duplicate rows.)
    """
    accidents = rows["caracteristiques"]
    keys = accidents.frame[schema.KEY]
    candidates = keys[accidents.kept]
    conflicting = candidates[candidates.duplicated(keep=False)].unique()
    if len(conflicting) == 0:
        return
    accidents.set_aside(keys.isin(conflicting).to_numpy(dtype=bool), CONFLICTING_NUM_ACC)
    for table in schema.CHILD_TABLES:
        child = rows[table]
        in_conflict = child.frame[schema.KEY].isin(conflicting).to_numpy(dtype=bool)
        child.set_aside(in_conflict, CHILD_OF_CONFLICTING)


def _check_children_known(rows: dict[str, TableRows], files: dict[str, Path]) -> None:
    """Every kept child row must belong to a kept accident; a stray one is fatal."""
    accidents = rows["caracteristiques"]
    known = pd.Index(accidents.frame[schema.KEY][accidents.kept])
    for table in schema.CHILD_TABLES:
        child = rows[table]
        unknown = (known.get_indexer(child.frame[schema.KEY]) < 0) & child.kept
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            raise BadInputError(
                files[table],
                "Num_Acc not found in caracteristiques",
                line=int(child.lines[first]),
                column="Num_Acc",
                value=child.frame[schema.KEY].iloc[first],
            )


def _quarantined(rows: TableRows, year: int, file_name: str) -> pd.DataFrame:
    """The quarantined rows, typed like the table, with their source and reason."""
    mask = ~rows.kept
    out = rows.frame[mask].reset_index(drop=True)
    out["source_year"] = year
    out["source_file"] = file_name
    out["source_line"] = rows.lines[mask]
    out["reason"] = rows.reasons[mask]
    return out.astype(SOURCE_COLUMNS)


def row_counts(rows: TableRows) -> dict:
    """Rows read, kept and quarantined (in total and per reason) of one file."""
    reasons = pd.Series(rows.reasons[~rows.kept], dtype=object).value_counts()
    quarantined = int(reasons.sum())
    return {
        "read": len(rows.frame),
        "kept": len(rows.frame) - quarantined,
        "quarantined": quarantined,
        "reasons": {str(reason): int(count) for reason, count in sorted(reasons.items())},
    }


class RawTables(dict):
    """The kept rows of each table, as a plain ``{table: frame}`` dict, plus what was set aside.

    ``quarantine``: per table, the quarantined rows (schema columns + ``SOURCE_COLUMNS``);
    ``counts``: ``{year: {table: row_counts}}``, where read = kept + quarantined.
    """

    def __init__(
        self,
        tables: dict[str, pd.DataFrame],
        quarantine: dict[str, pd.DataFrame],
        counts: dict[str, dict[str, dict]],
    ) -> None:
        super().__init__(tables)
        self.quarantine = quarantine
        self.counts = counts


def load_year(year_dir: Path, year: int) -> RawTables:
    """The four tables of one year, with every kept child row tied to a kept accident."""
    files = year_files(year_dir)
    missing = [table for table in schema.TABLE_NAMES if table not in files]
    if missing:
        raise BadInputError(year_dir, f"year {year} lacks table(s) {missing}")
    rows = {table: _read_rows(files[table], year, table)[1] for table in schema.TABLE_NAMES}
    _quarantine_conflicting_accidents(rows)
    _check_children_known(rows, files)
    return RawTables(
        {table: _kept(rows[table]) for table in schema.TABLE_NAMES},
        {table: _quarantined(rows[table], year, files[table].name) for table in rows},
        {str(year): {table: row_counts(rows[table]) for table in schema.TABLE_NAMES}},
    )


def load_raw_dump(raw_dir: str | Path, years: list[int] | None = None) -> RawTables:
    """Every selected year of the raw dump, concatenated per table, with its quarantine."""
    available = raw_years(raw_dir)
    selected = sorted(available) if years is None else sorted(years)
    absent = [year for year in selected if year not in available]
    if absent:
        raise BadInputError(raw_dir, f"year(s) {absent} not in the raw dump ({sorted(available)})")
    per_year = [load_year(available[year], year) for year in selected]
    return RawTables(
        {
            table: pd.concat([tables[table] for tables in per_year], ignore_index=True)
            for table in schema.TABLE_NAMES
        },
        {
            table: pd.concat([tables.quarantine[table] for tables in per_year], ignore_index=True)
            for table in schema.TABLE_NAMES
        },
        {year: counts for tables in per_year for year, counts in tables.counts.items()},
    )
