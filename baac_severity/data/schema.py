"""The normalised BAAC schema: table columns, dtypes and code tables, defined once.

Every loader maps its source format onto these tables, the cleaning stage builds its entities
from them, and the serving schema derives its allowed values from ``CODES``. Names are the
published BAAC names in snake_case (``Num_Acc`` becomes ``num_acc``).
"""

from __future__ import annotations

from dataclasses import dataclass

KEY = "num_acc"
USER_KEY = "user_id"

# Ordinal severity classes of a road user (``grav``) and of an accident (its worst-off user).
# BAAC codes grav as 1 unscathed, 2 killed, 3 hospitalised, 4 light injury: not an order.
SEVERITY_LABELS = ["unscathed", "light_injury", "hospitalised", "killed"]
GRAV_TO_SEVERITY = {1: 0, 4: 1, 3: 2, 2: 3}
SEVERE_LABELS = ["not_severe", "severe"]
SEVERE_MIN_SEVERITY = 2  # killed or hospitalised

# Code tables (2019+ coding, the one published today). Codes outside a table become missing
# during cleaning; 0 is a real code only where it is listed.
CODES: dict[str, dict[int, str]] = {
    "lum": {
        1: "daylight",
        2: "dusk or dawn",
        3: "night, no street lighting",
        4: "night, street lighting off",
        5: "night, street lighting on",
    },
    "agg": {1: "outside built-up area", 2: "inside built-up area"},
    "int": {
        1: "no intersection",
        2: "X intersection",
        3: "T intersection",
        4: "Y intersection",
        5: "intersection with more than 4 branches",
        6: "roundabout",
        7: "square",
        8: "level crossing",
        9: "other intersection",
    },
    "atm": {
        1: "normal",
        2: "light rain",
        3: "heavy rain",
        4: "snow or hail",
        5: "fog or smoke",
        6: "strong wind or storm",
        7: "dazzling weather",
        8: "overcast",
        9: "other",
    },
    "col": {
        1: "two vehicles, head-on",
        2: "two vehicles, from the rear",
        3: "two vehicles, from the side",
        4: "three or more vehicles, chain",
        5: "three or more vehicles, multiple collisions",
        6: "other collision",
        7: "no collision",
    },
    "catr": {
        1: "motorway",
        2: "national road",
        3: "departmental road",
        4: "communal road",
        5: "off public network",
        6: "public car park",
        7: "metropolitan-area road",
        9: "other",
    },
    "circ": {1: "one-way", 2: "two-way", 3: "separated carriageways", 4: "variable lanes"},
    "vosp": {0: "none", 1: "cycle track", 2: "cycle lane", 3: "reserved lane"},
    "prof": {1: "flat", 2: "slope", 3: "hilltop", 4: "hill bottom"},
    "plan": {1: "straight", 2: "left bend", 3: "right bend", 4: "S-bend"},
    "surf": {
        1: "normal",
        2: "wet",
        3: "puddles",
        4: "flooded",
        5: "snow",
        6: "mud",
        7: "ice",
        8: "oil or grease",
        9: "other",
    },
    "infra": {
        0: "none",
        1: "tunnel",
        2: "bridge",
        3: "interchange ramp",
        4: "railway",
        5: "built junction",
        6: "pedestrian zone",
        7: "toll zone",
        8: "shared zone",
        9: "other",
    },
    "situ": {
        0: "none",
        1: "carriageway",
        2: "hard shoulder",
        3: "verge",
        4: "pavement",
        5: "cycle track",
        6: "other special lane",
        8: "other",
    },
    "senc": {0: "unknown", 1: "increasing mileposts", 2: "decreasing mileposts", 3: "none"},
    "catv": {
        0: "undeterminable",
        1: "bicycle",
        2: "moped under 50cc",
        3: "light quadricycle",
        4: "scooter (old code)",
        5: "motorcycle (old code)",
        6: "sidecar (old code)",
        7: "car",
        8: "car with caravan (old code)",
        9: "car with trailer (old code)",
        10: "van 1.5-3.5 t",
        11: "van with trailer (old code)",
        12: "van with caravan (old code)",
        13: "heavy goods 3.5-7.5 t",
        14: "heavy goods over 7.5 t",
        15: "heavy goods with trailer",
        16: "road tractor",
        17: "road tractor with semi-trailer",
        18: "public transport (old code)",
        19: "tram (old code)",
        20: "special vehicle",
        21: "farm tractor",
        30: "scooter under 50cc",
        31: "motorcycle or scooter 50-125cc",
        32: "scooter 50-125cc",
        33: "motorcycle over 125cc",
        34: "scooter over 125cc",
        35: "light quad",
        36: "heavy quad",
        37: "bus",
        38: "coach",
        39: "train",
        40: "tram",
        41: "three-wheeler up to 50cc",
        42: "three-wheeler 50-125cc",
        43: "three-wheeler over 125cc",
        50: "motorised personal mobility device",
        60: "non-motorised personal mobility device",
        80: "e-bike",
        99: "other vehicle",
    },
    "obs": {
        0: "none",
        1: "parked vehicle",
        2: "tree",
        3: "metal barrier",
        4: "concrete barrier",
        5: "other barrier",
        6: "building, wall, bridge pier",
        7: "sign post or emergency call box",
        8: "pole",
        9: "street furniture",
        10: "parapet",
        11: "island, refuge, bollard",
        12: "kerb",
        13: "ditch, embankment, rock face",
        14: "other fixed obstacle on the carriageway",
        15: "other fixed obstacle on the pavement or verge",
        16: "left the carriageway without obstacle",
        17: "aqueduct head",
    },
    "obsm": {
        0: "none",
        1: "pedestrian",
        2: "vehicle",
        4: "rail vehicle",
        5: "pet",
        6: "wild animal",
        9: "other",
    },
    "choc": {
        0: "none",
        1: "front",
        2: "front right",
        3: "front left",
        4: "rear",
        5: "rear right",
        6: "rear left",
        7: "right side",
        8: "left side",
        9: "multiple impacts (rollover)",
    },
    # ONISR's description of the annual files (2019 on), "manv": the main manoeuvre before
    # the accident.
    "manv": {
        0: "unknown",
        1: "no change of direction",
        2: "same direction, same lane",
        3: "between two lanes",
        4: "reversing",
        5: "wrong way",
        6: "crossing the central reservation",
        7: "in the bus lane, same direction",
        8: "in the bus lane, opposite direction",
        9: "merging",
        10: "U-turn on the carriageway",
        11: "changing lane to the left",
        12: "changing lane to the right",
        13: "swerving to the left",
        14: "swerving to the right",
        15: "turning left",
        16: "turning right",
        17: "overtaking on the left",
        18: "overtaking on the right",
        19: "crossing the carriageway",
        20: "parking manoeuvre",
        21: "avoiding manoeuvre",
        22: "opening a door",
        23: "stopped (not parked)",
        24: "parked, with occupants",
        25: "driving on the pavement",
        26: "other manoeuvre",
    },
    "motor": {
        0: "unknown",
        1: "hydrocarbon",
        2: "hybrid electric",
        3: "electric",
        4: "hydrogen",
        5: "human",
        6: "other",
    },
    "catu": {1: "driver", 2: "passenger", 3: "pedestrian"},
    "grav": {1: "unscathed", 2: "killed", 3: "hospitalised", 4: "light injury"},
    "sexe": {1: "male", 2: "female"},
    "trajet": {
        0: "not filled in",
        1: "home to work",
        2: "home to school",
        3: "shopping",
        4: "professional use",
        5: "leisure",
        9: "other",
    },
    "secu": {
        0: "no equipment",
        1: "belt",
        2: "helmet",
        3: "child device",
        4: "reflective vest",
        5: "airbag (two-wheeler)",
        6: "gloves",
        7: "gloves and airbag",
        8: "undeterminable",
        9: "other",
    },
    "place": {code: f"seat {code}" for code in range(1, 11)},
    "locp": {
        0: "not applicable",
        1: "on carriageway, over 50 m from a crossing",
        2: "on carriageway, under 50 m from a crossing",
        3: "on a crossing without lights",
        4: "on a crossing with lights",
        5: "on the pavement",
        6: "on the verge",
        7: "on a refuge or hard shoulder",
        8: "on a side lane",
        9: "unknown",
    },
    "etatp": {1: "alone", 2: "accompanied", 3: "in a group"},
}
# secu1..secu3 share one code table.
for _slot in ("secu1", "secu2", "secu3"):
    CODES[_slot] = CODES["secu"]

# Pedestrian action: published as digits plus the letters A and B since 2019.
ACTP_CODES = {
    "0": "not applicable",
    "1": "moving in the direction of the vehicle",
    "2": "moving against the vehicle",
    "3": "crossing",
    "4": "masked",
    "5": "playing or running",
    "6": "with an animal",
    "9": "other",
    "A": "getting in or out of a vehicle",
    "B": "unknown",
}


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # pandas dtype of the normalised table


def _codes(*names: str) -> list[Column]:
    return [Column(name, "Int16") for name in names]


# The four normalised tables written into every chunk snapshot.
TABLES: dict[str, list[Column]] = {
    "caracteristiques": [
        Column(KEY, "string"),
        Column("an", "Int16"),
        Column("mois", "Int16"),
        Column("jour", "Int16"),
        Column("hrmn", "string"),  # "HH:MM"
        *_codes("lum", "agg", "int", "atm", "col"),
        Column("dep", "string"),  # INSEE department code: "59", "2A", "971"
        Column("com", "string"),  # INSEE commune code
        Column("lat", "float64"),
        Column("long", "float64"),
    ],
    "lieux": [
        Column(KEY, "string"),
        *_codes("catr", "circ", "nbv", "vosp", "prof", "plan", "surf", "infra", "situ", "vma"),
    ],
    "vehicules": [
        Column(KEY, "string"),
        Column("id_vehicule", "string"),
        Column("num_veh", "string"),
        *_codes("senc", "catv", "obs", "obsm", "choc", "manv", "motor", "occutc"),
    ],
    "usagers": [
        Column(KEY, "string"),
        Column(USER_KEY, "string"),
        Column("id_vehicule", "string"),
        Column("num_veh", "string"),
        *_codes("place", "catu", "grav", "sexe", "an_nais", "trajet", "secu1", "secu2", "secu3"),
        *_codes("locp"),
        Column("actp", "string"),
        *_codes("etatp"),
    ],
}
TABLE_NAMES = list(TABLES)
CHILD_TABLES = ["lieux", "vehicules", "usagers"]

# Numeric fields that are counts or measures, not codes (no code table applies): their ranges.
MEASURE_RANGES = {"nbv": (0, 20), "vma": (5, 130), "occutc": (0, 200), "an_nais": (1900, 2030)}


def columns(table: str) -> list[str]:
    return [column.name for column in TABLES[table]]


def dtypes(table: str) -> dict[str, str]:
    return {column.name: column.dtype for column in TABLES[table]}
