"""The loaders read both published BAAC formats (and the bundled variants) into ``schema``.

Expected values come from the raw text (read here with gzip/csv, independently of the
loaders), from the row counts documented in ``SOURCES.md``/``README.md`` of the shared data, or
from the hand-written fixtures in ``tests/fixtures/new_format``; never from loader output.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from baac_severity.data import entities, loaders, schema
from tests.baac_facts import OUTCOME_DERIVED_2024
from tests.helpers import load_table

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "new_format"
NBSP = "\u00a0"
BOM = b"\xef\xbb\xbf"
HRMN = re.compile(r"^\d{2}:\d{2}$")


# ----------------------------------------------------------------------------- helpers


def raw_rows(path: Path, encoding: str, sep: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a published file, parsed with the csv module (not the loaders)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    rows = list(csv.reader(io.StringIO(data.decode(encoding)), delimiter=sep))
    return rows[0], rows[1:]


def records(path: Path, encoding: str = "utf-8-sig", sep: str = ";") -> list[dict[str, str]]:
    header, rows = raw_rows(path, encoding, sep)
    return [dict(zip(header, row, strict=True)) for row in rows]


def py(value):
    """A cell as a plain Python value, None for any missing marker."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def code(text: str) -> int | None:
    """A 2019+ code: "-1" (sometimes published as " -1") and "" mean not filled in."""
    text = text.strip()
    return None if text in {"", "-1"} else int(text)


def decimal(text: str) -> float | None:
    text = text.strip()
    return None if text in {"", "-1"} else float(text.replace(",", "."))


def old_dep(raw: str) -> str:
    """Old-format dep: INSEE code x 10; 201/202 are Corsica; 97x are overseas departments."""
    if raw in {"201", "202"}:
        return {"201": "2A", "202": "2B"}[raw]
    if raw.startswith("97"):
        return raw
    return raw[:-1].zfill(2)


def old_com(dep: str, raw: str) -> str:
    """The 5-character INSEE commune code: "59" + "052", overseas "972" + "13"."""
    return dep + (raw.zfill(3)[-2:] if len(dep) == 3 else raw.zfill(3))


def old_hrmn(raw: str) -> str:
    value = int(raw)
    return f"{value // 100:02d}:{value % 100:02d}"


def old_coordinate(raw: str) -> float | None:
    value = int(raw) if raw.strip() else 0
    return None if value == 0 else value / 100000


# ------------------------------------------------------------------------ file naming


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("caracteristiques_2013.csv.gz", "caracteristiques"),
        ("caracteristiques-2019.csv", "caracteristiques"),
        ("carcteristiques-2022.csv", "caracteristiques"),
        ("caract-2023.csv", "caracteristiques"),
        ("caracteristiques_2024.silver.parquet", "caracteristiques"),
        ("lieux-2018.csv.gz", "lieux"),
        ("vehicules_2011.csv.gz", "vehicules"),
        ("usagers-2018.columns-subset.csv.gz", "usagers"),
        ("README.md", None),
        ("lieux-2018.xlsx", None),
        ("accidents-2018.csv", None),
    ],
)
def test_table_of_recognises_published_names(name, table):
    assert loaders.table_of(Path(name)) == table


def test_format_switches_in_2019():
    assert [loaders.format_of(year) for year in (2005, 2018, 2019, 2024)] == [
        "old",
        "old",
        "new",
        "new",
    ]


# ------------------------------------------------------- old format: genuine 2013 file

CARAC_2013_ROWS = 58397  # SOURCES.md, caracteristiques_2013.csv: rows 58397


@pytest.fixture(scope="module")
def caract_2013(shared_baac):
    path = shared_baac / "2013" / "caracteristiques_2013.csv.gz"
    header, rows = raw_rows(path, "latin-1", ",")
    raw = [dict(zip(header, row, strict=True)) for row in rows]
    return load_table(path, 2013), raw


def test_2013_row_count_year_and_keys(caract_2013):
    frame, raw = caract_2013
    assert len(raw) == CARAC_2013_ROWS
    assert len(frame) == CARAC_2013_ROWS
    assert frame["num_acc"].is_unique
    assert frame["num_acc"].str.fullmatch(r"2013\d{8}").all()
    assert frame["num_acc"].tolist() == [row["Num_Acc"] for row in raw]
    assert (frame["an"] == 2013).all()
    assert list(frame.columns) == schema.columns("caracteristiques")
    assert frame.dtypes.astype(str).to_dict() == schema.dtypes("caracteristiques")


def test_2013_departments(caract_2013):
    frame, raw = caract_2013
    deps = frame["dep"]
    assert deps.notna().all()
    raw_nord = sum(row["dep"] == "590" for row in raw)
    assert raw_nord > 0
    assert (deps == "59").sum() == raw_nord
    assert {"2A", "2B"} <= set(deps)
    overseas = {dep for dep in deps if dep.startswith("97")}
    assert overseas and all(re.fullmatch(r"97[1-6]", dep) for dep in overseas)
    # Every metropolitan code is two characters: digits 01-95 or Corsica.
    metro = deps[~deps.str.startswith("97")]
    assert metro.str.fullmatch(r"(0[1-9]|[1-8]\d|9[0-5]|2A|2B)").all()
    assert not (deps == "20").any()  # Corsica is never the old code 20


def test_2013_communes_are_five_character_insee_codes(caract_2013):
    frame, _ = caract_2013
    com = frame["com"].dropna()
    assert len(com) == len(frame)
    assert com.str.len().eq(5).all()
    assert (com.str[:2] == frame["dep"].str[:2]).all()
    overseas = frame["dep"].str.len() == 3
    assert (frame.loc[overseas, "com"].str[:3] == frame.loc[overseas, "dep"]).all()


def test_2013_coordinates_and_times(caract_2013):
    frame, raw = caract_2013
    raw_missing = [old_coordinate(row["lat"]) is None for row in raw]
    assert frame["lat"].isna().tolist() == raw_missing
    metro = ~frame["dep"].str.startswith("97")
    lat, lon = frame.loc[metro, "lat"].dropna(), frame.loc[metro, "long"].dropna()
    assert len(lat) > 10000  # most 2013 rows have no coordinates, but many do
    assert lat.between(41.0, 51.2).all()
    assert lon.between(-5.5, 9.7).all()
    hrmn = frame["hrmn"].dropna()
    assert len(hrmn) == len(frame)
    assert hrmn.str.match(HRMN).all()
    assert (hrmn.str[:2].astype(int) < 24).all() and (hrmn.str[3:].astype(int) < 60).all()


def _first(raw, predicate):
    return next(i for i, row in enumerate(raw) if predicate(row))


def test_2013_specific_rows_match_the_raw_lines(caract_2013):
    frame, raw = caract_2013
    picks = {
        "first row": 0,
        "Corse-du-Sud": _first(raw, lambda r: r["dep"] == "201"),
        "Haute-Corse": _first(raw, lambda r: r["dep"] == "202"),
        "overseas": _first(raw, lambda r: r["dep"].startswith("97")),
        "minutes only": _first(raw, lambda r: len(r["hrmn"]) <= 2),
        "west of Greenwich": _first(raw, lambda r: r["long"].startswith("-")),
    }
    for label, i in picks.items():
        line, row = raw[i], frame.iloc[i]
        dep = old_dep(line["dep"])
        expected = {
            "num_acc": line["Num_Acc"],
            "an": 2000 + int(line["an"]),
            "mois": int(line["mois"]),
            "jour": int(line["jour"]),
            "hrmn": old_hrmn(line["hrmn"]),
            "lum": int(line["lum"]),
            "col": int(line["col"]),
            "dep": dep,
            "com": old_com(dep, line["com"]),
            "lat": old_coordinate(line["lat"]),
            "long": old_coordinate(line["long"]),
        }
        got = {name: py(row[name]) for name in expected}
        for name in ("lat", "long"):
            if expected[name] is not None:
                expected[name] = pytest.approx(expected[name], abs=1e-9)
        assert got == expected, label
    assert frame.iloc[picks["minutes only"]]["hrmn"].startswith("00:")
    assert frame.iloc[picks["west of Greenwich"]]["long"] < 0


# ---------------------------------------- old format at scale: every lieux and vehicules

# (year, file, rows, distinct Num_Acc), copied from the "Files" table of SOURCES.md.
PUBLISHED = [
    (2009, "lieux_2009.csv", 74409, 74409),
    (2010, "lieux_2010.csv", 69379, 69379),
    (2011, "lieux_2011.csv", 66974, 66974),
    (2012, "lieux_2012.csv", 62250, 62250),
    (2013, "lieux_2013.csv", 58397, 58397),
    (2014, "lieux_2014.csv", 59854, 59854),
    (2015, "lieux_2015.csv", 58654, 58654),
    (2016, "lieux_2016.csv", 59432, 59432),
    (2017, "lieux-2017.csv", 60701, 60701),
    (2018, "lieux-2018.csv", 57783, 57783),
    (2011, "vehicules_2011.csv", 113854, 66974),
    (2012, "vehicules_2012.csv", 105814, 62250),
    (2013, "vehicules_2013.csv", 98925, 58397),
    (2014, "vehicules_2014.csv", 101762, 59854),
    (2015, "vehicules_2015.csv", 99778, 58654),
    (2016, "vehicules_2016.csv", 101924, 59432),
    (2017, "vehicules-2017.csv", 103546, 60701),
    (2018, "vehicules-2018.csv", 98876, 57783),
]
KNOWN_CODE_SHARE = 0.99


def sources_table(text: str) -> dict[str, tuple[int, int, int]]:
    """The "Files" table of SOURCES.md: file -> (year, rows, distinct Num_Acc)."""
    lines = [line for line in text.splitlines() if line.startswith("| year | file (")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    start = text.splitlines().index(lines[0]) + 2
    table = {}
    for line in text.splitlines()[start:]:
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        name = cells["file (`<year>/<file>.gz`)"].strip("`")
        table[name] = (int(cells["year"]), int(cells["rows"]), int(cells["distinct Num_Acc"]))
    return table


def test_published_counts_match_sources_md(shared_baac):
    documented = sources_table((shared_baac / "SOURCES.md").read_text(encoding="utf-8"))
    for year, name, rows, distinct in PUBLISHED:
        assert documented[name] == (year, rows, distinct), name
    listed = {name for name in documented if name.startswith(("lieux", "vehicules"))}
    assert listed == {name for _, name, _, _ in PUBLISHED}


@pytest.fixture(scope="module")
def lieux_keys() -> dict[int, set[str]]:
    return {}  # filled by the lieux cases, used by the vehicules cases of the same year


@pytest.mark.parametrize(
    ("year", "name", "rows", "distinct"),
    PUBLISHED,
    ids=[name.removesuffix(".csv") for _, name, _, _ in PUBLISHED],
)
def test_published_old_format_file(shared_baac, lieux_keys, year, name, rows, distinct):
    path = shared_baac / str(year) / f"{name}.gz"
    table = loaders.table_of(path)
    frame = load_table(path, year)
    assert len(frame) == rows
    assert frame["num_acc"].nunique() == distinct
    assert frame["num_acc"].str.fullmatch(rf"{year}\d{{8}}").all()
    assert list(frame.columns) == schema.columns(table)
    assert frame.dtypes.astype(str).to_dict() == schema.dtypes(table)
    checked = ["catr"] if table == "lieux" else ["catv", "obs"]
    for column in checked:
        values = frame[column].dropna()
        assert len(values) > 0.9 * rows, column
        share = values.isin(list(schema.CODES[column])).mean()
        assert share >= KNOWN_CODE_SHARE, (column, share)
    if table == "lieux":
        assert frame["vma"].isna().all()  # no speed limit before 2019: never invented
        lieux_keys[year] = set(frame["num_acc"])
    else:
        assert frame["id_vehicule"].isna().all() and frame["motor"].isna().all()
        assert frame["num_veh"].str.fullmatch(r"[A-Z]+\d+").all()
        if year in lieux_keys:  # SOURCES.md: every vehicules Num_Acc is in the lieux set
            assert set(frame["num_acc"]) <= lieux_keys[year]


# ---------------------------------------------- the embedded raw dump (2018 + 2024)

# README.md of the shared data: accidents, vehicles and road users per year.
ACCIDENTS = {2018: 57783, 2024: 54402}
VEHICLES = {2018: 98876, 2024: 92678}
USERS = {2018: 130169, 2024: 125187}
GRAV = {
    2018: {1: 54248, 2: 3392, 3: 22169, 4: 50360},
    2024: {1: 52920, 2: 3432, 3: 19126, 4: 49709},
}
OUTCOME_AND_DATE_COLUMNS = [*OUTCOME_DERIVED_2024, "date", "datetime"]
USER_ATTRIBUTES = ["id_vehicule", "num_veh", *entities.USER_ATTRIBUTES]


@pytest.fixture(scope="module")
def raw_dir(repo_root) -> Path:
    folder = repo_root / "data" / "raw"
    if not (folder / "2018").is_dir() or not (folder / "2024").is_dir():
        pytest.skip(f"embedded raw dump not present in {folder} (run `dvc pull`)")
    return folder


@pytest.fixture(scope="module")
def dump(raw_dir) -> dict[str, pd.DataFrame]:
    return loaders.load_raw_dump(raw_dir)


def _year(frame: pd.DataFrame, year: int) -> pd.DataFrame:
    return frame[frame["num_acc"].str.startswith(str(year))]


def test_dump_counts(dump):
    assert len(dump["caracteristiques"]) == sum(ACCIDENTS.values())  # 112,185
    assert len(dump["lieux"]) == sum(ACCIDENTS.values())  # one lieux row per accident
    assert len(dump["vehicules"]) == sum(VEHICLES.values())  # 191,554
    assert len(dump["usagers"]) == sum(USERS.values())  # 255,356
    for year in (2018, 2024):
        assert len(_year(dump["caracteristiques"], year)) == ACCIDENTS[year]
        assert len(_year(dump["usagers"], year)) == USERS[year]
        grav = _year(dump["usagers"], year)["grav"].value_counts().to_dict()
        assert grav == GRAV[year]
    assert dump["caracteristiques"]["num_acc"].is_unique
    assert set(dump["lieux"]["num_acc"]) == set(dump["caracteristiques"]["num_acc"])


def test_dump_columns_are_the_schema(dump):
    for table, frame in dump.items():
        assert list(frame.columns) == schema.columns(table), table
        assert frame.dtypes.astype(str).to_dict() == schema.dtypes(table), table
        assert not set(OUTCOME_AND_DATE_COLUMNS) & set(frame.columns), table


def test_2024_date_and_time_recovered_from_datetime(dump, raw_dir):
    published = pd.read_parquet(raw_dir / "2024" / "caracteristiques_2024.silver.parquet")
    assert "datetime" in published.columns  # the variant this recovery exists for
    stamp = pd.to_datetime(published["datetime"])
    expected = pd.DataFrame(
        {
            "num_acc": published["Num_Acc"].astype(str),
            "an": stamp.dt.year.astype(int),
            "mois": stamp.dt.month.astype(int),
            "jour": stamp.dt.day.astype(int),
            "hrmn": [
                f"{h:02d}:{m:02d}" for h, m in zip(stamp.dt.hour, stamp.dt.minute, strict=True)
            ],
        }
    )
    got = _year(dump["caracteristiques"], 2024)[["num_acc", "an", "mois", "jour", "hrmn"]]
    got = got.astype({"num_acc": str, "an": int, "mois": int, "jour": int, "hrmn": str})
    merged = expected.merge(got, on="num_acc", suffixes=("_raw", ""), validate="1:1")
    assert len(merged) == ACCIDENTS[2024]
    for column in ("an", "mois", "jour", "hrmn"):
        assert (merged[column] == merged[f"{column}_raw"]).all(), column


def test_2018_subset_columns_stay_missing(dump, raw_dir):
    characteristics = _year(dump["caracteristiques"], 2018)
    for column in ("jour", "col", "dep", "com"):
        assert characteristics[column].isna().all(), column
    assert (characteristics["an"] == 2018).all()
    # The subset already holds degrees: they must not be divided by 100000 again.
    subset = pd.read_csv(
        raw_dir / "2018" / "caracteristiques-2018.columns-subset.csv.gz",
        dtype={"Num_Acc": str},
        index_col=0,
    )
    merged = subset.merge(characteristics, left_on="Num_Acc", right_on="num_acc")
    assert len(merged) == ACCIDENTS[2018]
    assert ((merged["lat_x"] - merged["lat_y"]).abs().max()) < 1e-9
    assert (merged["mois_x"] == merged["mois_y"]).all()
    users = _year(dump["usagers"], 2018)
    for column in USER_ATTRIBUTES:
        assert users[column].isna().all(), column
    assert users["grav"].notna().all()


def test_user_ids(dump, raw_dir):
    users = dump["usagers"]
    assert users["user_id"].notna().all()
    assert users["user_id"].is_unique
    old = _year(users, 2018)
    position = old.groupby("num_acc", sort=False).cumcount() + 1
    expected = old["num_acc"] + "-" + position.astype(str).str.zfill(3)
    assert (old["user_id"] == expected).all()
    published = pd.read_parquet(raw_dir / "2024" / "usagers_2024.silver.parquet")
    assert published["id_usager"].str.contains(NBSP).any()  # the separator being removed
    new = _year(users, 2024)
    assert new["user_id"].tolist() == published["id_usager"].str.replace(NBSP, "").tolist()
    assert new["user_id"].str.fullmatch(r"\d+").all()
    assert _year(dump["vehicules"], 2024)["id_vehicule"].str.fullmatch(r"\d+").all()


# ------------------------------------------ 2019+ format: hand-written published layout


USER_CODES = [c for c in schema.columns("usagers") if schema.dtypes("usagers")[c] == "Int16"]


def fixture_file(year: int, table: str) -> Path:
    (path,) = [p for p in (FIXTURES / str(year)).iterdir() if loaders.table_of(p) == table]
    return path


@pytest.mark.parametrize("year", [2019, 2022, 2023])
def test_new_format_fixture_follows_every_rule(year):
    tables = loaders.load_year(FIXTURES / str(year), year)

    accidents = records(fixture_file(year, "caracteristiques"))
    key = "Accident_Id" if "Accident_Id" in accidents[0] else "Num_Acc"
    frame = tables["caracteristiques"]
    assert frame["num_acc"].tolist() == [row[key] for row in accidents]
    for row, (_, got) in zip(accidents, frame.iterrows(), strict=True):
        expected = {
            "an": int(row["an"]),
            "mois": int(row["mois"]),
            "jour": int(row["jour"]),
            "hrmn": row["hrmn"],
            **{name: code(row[name]) for name in ("lum", "agg", "int", "atm", "col")},
            "dep": row["dep"],
            "com": row["com"],
            "lat": decimal(row["lat"]),
            "long": decimal(row["long"]),
        }
        assert {name: py(got[name]) for name in expected} == expected

    places = records(fixture_file(year, "lieux"))
    first = {}
    for row in places:
        first.setdefault(row["Num_Acc"], row)  # several rows per accident: the first one
    frame = tables["lieux"]
    assert frame["num_acc"].tolist() == list(first)
    for row, (_, got) in zip(first.values(), frame.iterrows(), strict=True):
        assert {name: py(got[name]) for name in schema.columns("lieux")[1:]} == {
            name: code(row[name]) for name in schema.columns("lieux")[1:]
        }

    vehicles = records(fixture_file(year, "vehicules"))
    frame = tables["vehicules"]
    assert len(frame) == len(vehicles)
    for row, (_, got) in zip(vehicles, frame.iterrows(), strict=True):
        assert got["num_acc"] == row["Num_Acc"]
        assert got["id_vehicule"] == row["id_vehicule"].replace(NBSP, "")
        assert got["num_veh"] == row["num_veh"]
        for name in ("senc", "catv", "obs", "obsm", "choc", "manv", "motor", "occutc"):
            assert py(got[name]) == code(row[name]), name

    users = records(fixture_file(year, "usagers"))
    frame = tables["usagers"]
    assert len(frame) == len(users)
    rank: dict[str, int] = {}
    for row, (_, got) in zip(users, frame.iterrows(), strict=True):
        rank[row["Num_Acc"]] = rank.get(row["Num_Acc"], 0) + 1
        if "id_usager" in row:
            assert got["user_id"] == row["id_usager"].replace(NBSP, "")
        else:
            assert got["user_id"] == f"{row['Num_Acc']}-{rank[row['Num_Acc']]:03d}"
        assert got["id_vehicule"] == row["id_vehicule"].replace(NBSP, "")
        actp = row["actp"].strip()
        assert py(got["actp"]) == (None if actp == "-1" else actp)
        for name in USER_CODES:
            assert py(got[name]) == code(row[name]), name
    assert frame["user_id"].is_unique

    for table, got in tables.items():
        assert list(got.columns) == schema.columns(table)
        assert got.dtypes.astype(str).to_dict() == schema.dtypes(table)


def test_new_format_fixtures_carry_the_published_quirks():
    """The fixtures hold what the rules are about, so the test above exercises them."""
    texts = {p: p.read_bytes() for p in FIXTURES.glob("*/*.csv")}
    assert all(b'";"' in data for data in texts.values())  # quoted, ';'-separated
    assert sum(data.startswith(BOM) for data in texts.values()) == 1
    assert (
        (FIXTURES / "2022" / "carcteristiques-2022.csv").read_bytes().startswith(b'"Accident_Id"')
    )
    assert (FIXTURES / "2023" / "caract-2023.csv").is_file()
    assert NBSP.encode() in texts[FIXTURES / "2022" / "usagers-2022.csv"]
    assert b'"-1"' in texts[FIXTURES / "2022" / "carcteristiques-2022.csv"]
    assert b'" -1"' in texts[FIXTURES / "2019" / "usagers-2019.csv"]
    assert "é".encode() in texts[FIXTURES / "2022" / "carcteristiques-2022.csv"]
    lieux = records(FIXTURES / "2022" / "lieux-2022.csv")
    assert len(lieux) > len({row["Num_Acc"] for row in lieux})


def test_new_format_specific_values():
    tables = loaders.load_raw_dump(FIXTURES)
    accidents = tables["caracteristiques"].set_index("num_acc")
    # Accident_Id (2022) is read as the key.
    assert accidents.loc["202200000003", "dep"] == "971"
    assert accidents.loc["202200000003", "long"] == pytest.approx(-61.504)
    assert accidents.loc["202200000002", "dep"] == "2A"
    assert accidents.loc["202200000002", "com"] == "2A004"
    assert accidents.loc["201900000004", "dep"] == "01"
    assert accidents.loc["202300000001", "hrmn"] == "00:05"
    assert accidents.loc["201900000003", "lat"] == pytest.approx(-20.8823)  # BOM file
    assert accidents.loc["202200000003", ["atm", "col"]].isna().all()  # "-1"
    # The first published lieux row of an accident wins (catr 4, vma 50; not 3 / 80).
    places = tables["lieux"].set_index("num_acc")
    assert places.index.is_unique
    assert (places.loc["202200000001", "catr"], places.loc["202200000001", "vma"]) == (4, 50)
    vehicles = tables["vehicules"]
    assert {50, 60, 80} <= set(vehicles["catv"].dropna())
    assert "813952" in set(vehicles["id_vehicule"])
    users = tables["usagers"]
    assert {"A", "B"} <= set(users["actp"].dropna())
    assert "1099700" in set(users["user_id"])
    assert "201900000001-003" in set(users["user_id"])
    assert not users["user_id"].str.contains(r"\s").any()
    assert len(users) == sum(len(records(fixture_file(y, "usagers"))) for y in (2019, 2022, 2023))


def test_new_format_text_is_utf8_and_bom_is_not_part_of_the_key():
    frame = loaders.read_csv_text(FIXTURES / "2022" / "carcteristiques-2022.csv", "new")
    assert "Chaussée de l'Étang" in set(frame["adr"])
    assert frame.columns[0] == "num_acc"  # Accident_Id, renamed
    frame = loaders.read_csv_text(FIXTURES / "2019" / "caracteristiques-2019.csv", "new")
    assert frame.columns[0] == "num_acc"
    assert "Route de l'Île-Rousse" in set(frame["adr"])


# ------------------------------------------------- old format: hand-written, Latin-1

OLD_CARAC = """\
Num_Acc,an,mois,jour,hrmn,lum,agg,int,atm,col,com,adr,gps,lat,long,dep
201500000001,15,1,5,5,1,2,1,1,3,052,Rue de l'Église,M,5051199,0290046,590
201500000002,15,2,6,1715,1,1,1,1,6,004,Cours Napoléon,M,4192600,0873690,201
201500000003,15,3,7,930,1,1,1,1,1,033,Route de l'Île-Rousse,M,4269750,0945060,202
201500000004,15,4,8,2359,5,2,1,1,7,013,Lamentin,A,0000000,0000000,972
201500000005,15,5,9,0,1,1,1,,1,101,,M,,,010
"""
OLD_LIEUX = """\
Num_Acc,catr,voie,v1,v2,circ,nbv,pr,pr1,vosp,prof,plan,lartpc,larrout,surf,infra,situ,env1
201500000001,3,41,,C,2,02,,,0,1,3,,,1,0,1,00
201500000002,4,,,,1,01,,,0,1,1,,,1,0,1,00
201500000003,3,193,,,2,02,12,300,0,2,2,000,060,2,0,1,00
201500000004,2,5,,,2,02,,,0,1,1,,,1,0,1,00
201500000005,4,,,,2,02,,,0,1,1,,,1,0,1,00
"""
OLD_VEHICULES = """\
Num_Acc,senc,catv,occutc,obs,obsm,choc,manv,num_veh
201500000001,0,07,000,00,2,3,01,B01
201500000001,0,07,000,00,2,2,15,A01
201500000002,0,33,000,01,0,1,01,A01
201500000003,0,07,000,00,1,1,01,A01
201500000004,0,02,000,00,2,1,01,A01
201500000005,0,37,015,00,2,1,01,A01
"""
# place,catu,grav,sexe,trajet,secu,locp,actp,etatp,an_nais,num_veh
OLD_USAGERS = """\
Num_Acc,place,catu,grav,sexe,trajet,secu,locp,actp,etatp,an_nais,num_veh
201500000001,1,1,3,1,5,11,0,0,0,1980,B01
201500000001,1,1,1,2,0,12,0,0,0,1985,A01
201500000001,,4,4,1,0,,3,1,1,2001,A01
201500000002,1,1,4,1,1,21,0,0,0,1975,A01
201500000002,2,2,4,2,0,13,0,0,0,2010,A01
201500000003,1,1,1,1,5,31,0,0,0,1990,A01
201500000003,,3,2,2,0,93,2,3,2,1930,A01
201500000004,1,1,4,1,1,91,0,0,0,1999,A01
201500000004,2,,4,1,1,1,0,0,0,2000,A01
201500000005,1,1,1,1,4,41,0,0,0,1960,A01
"""
# (raw secu, expected secu1): <equipment><used>; used 1 = worn -> the equipment code,
# 2 = not worn -> 0 "no equipment", 3 = undeterminable -> 8; missing stays missing.
OLD_SECU = [
    ("11", 1),
    ("12", 0),
    ("", None),
    ("21", 2),
    ("13", 8),
    ("31", 3),
    ("93", 8),
    ("91", 9),
    ("1", None),
    ("41", 4),
]
OLD_CATU = [1, 1, 3, 1, 2, 1, 3, 1, None, 1]  # catu 4 (pedestrian on rollers) -> 3


@pytest.fixture
def old_year(tmp_path) -> Path:
    folder = tmp_path / "2015"
    folder.mkdir()
    for name, text in [
        ("caracteristiques_2015.csv", OLD_CARAC),
        ("lieux_2015.csv", OLD_LIEUX),
        ("vehicules_2015.csv", OLD_VEHICULES),
        ("usagers_2015.csv", OLD_USAGERS),
    ]:
        # As published: Latin-1 with CRLF line endings.
        (folder / name).write_bytes(text.replace("\n", "\r\n").encode("latin-1"))
    return folder


def test_old_format_handwritten_year(old_year):
    assert "É".encode("latin-1") in (old_year / "caracteristiques_2015.csv").read_bytes()
    tables = loaders.load_year(old_year, 2015)
    accidents = tables["caracteristiques"]
    assert accidents["an"].tolist() == [2015] * 5
    assert accidents["hrmn"].tolist() == ["00:05", "17:15", "09:30", "23:59", "00:00"]
    assert accidents["dep"].tolist() == ["59", "2A", "2B", "972", "01"]
    assert accidents["com"].tolist() == ["59052", "2A004", "2B033", "97213", "01101"]
    assert accidents["lat"].tolist()[:3] == pytest.approx([50.51199, 41.926, 42.6975])
    assert accidents["long"].tolist()[:3] == pytest.approx([2.90046, 8.7369, 9.4506])
    assert accidents[["lat", "long"]].iloc[3:].isna().all().all()  # 0 and "" are missing
    assert pd.isna(accidents["atm"].iloc[4])

    users = tables["usagers"]
    secu1 = [py(v) for v in users["secu1"]]
    assert secu1 == [expected for _, expected in OLD_SECU]
    assert [raw for raw, _ in OLD_SECU] == [
        line.split(",")[6] for line in OLD_USAGERS.splitlines()[1:]
    ]
    assert [py(v) for v in users["catu"]] == OLD_CATU
    assert users[["secu2", "secu3", "id_vehicule"]].isna().all().all()
    assert users["user_id"].tolist()[:4] == [
        "201500000001-001",
        "201500000001-002",
        "201500000001-003",
        "201500000002-001",
    ]
    assert tables["vehicules"]["catv"].tolist() == [7, 7, 33, 7, 2, 37]
    assert tables["vehicules"]["occutc"].tolist() == [0, 0, 0, 0, 0, 15]
    assert tables["lieux"]["nbv"].tolist() == [2, 1, 2, 2, 2]
