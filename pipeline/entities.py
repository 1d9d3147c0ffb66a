"""Build the two modelled entities from the four BAAC tables: accidents and road users.

Used by the ``clean-scd2`` stage on chunk snapshots and by the prediction service on request
records, so that a served accident is described exactly as a trained one.

- An **accident** holds its characteristics, its place, aggregated vehicle facts (the vehicle
  mix, obstacles, impacts, manoeuvres), user facts that do not depend on the outcome (number of
  users, pedestrians, age range, safety equipment) and, when ``grav`` is known, ``severity``:
  the class of its worst-off user.
- A **road user** holds the user's attributes, their vehicle's attributes and ``grav``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import schema

KEY = schema.KEY

# Vehicle categories (catv) grouped by vulnerability and mass.
VEHICLE_MIX = {
    "n_bicycles": {1, 80},  # bicycles and e-bikes
    "n_personal_mobility": {50, 60},  # scooters, hoverboards... (motorised or not)
    "n_mopeds": {2, 30, 41},  # two- and three-wheelers up to 50cc
    "n_motorcycles_125": {31, 32, 42},
    "n_motorcycles_large": {33, 34, 43},
    "n_cars": {7},
    "n_light_quadricycles": {3, 35, 36},
    "n_vans": {10},
    "n_heavy_goods": {13, 14, 15, 16, 17},
    "n_buses": {37, 38},
    "n_trains_trams": {39, 40},
    "n_other_vehicles": {0, 20, 21, 99},
}
OBSTACLES = {  # fixed obstacle hit (obs)
    "n_hit_parked_vehicle": {1},
    "n_hit_tree": {2},
    "n_hit_barrier": {3, 4, 5},
    "n_hit_building": {6},
    "n_hit_post_or_pole": {7, 8},
    "n_hit_other_fixed": {9, 10, 11, 12, 13, 14, 15, 17},
    "n_left_road": {16},
}
MOBILE_OBSTACLES = {  # mobile obstacle hit (obsm)
    "n_pedestrians_hit": {1},
    "n_vehicle_obstacles": {2},
    "n_rail_obstacles": {4},
    "n_animals_hit": {5, 6},
}
IMPACTS = {  # initial impact point (choc)
    "n_front_impacts": {1, 2, 3},
    "n_rear_impacts": {4, 5, 6},
    "n_side_impacts": {7, 8},
    "n_rollovers": {9},
}
MANOEUVRES = {  # main manoeuvre before the accident (manv)
    "n_going_straight": {1, 2, 3},
    "n_wrong_way": {5, 6, 8},
    "n_turning": {10, 15, 16},
    "n_changing_lane": {11, 12, 13, 14},
    "n_overtaking": {17, 18},
    "n_crossing": {19},
    "n_avoiding": {21},
    "n_stationary": {20, 22, 23, 24},
}
VEHICLE_COUNTS = {
    "catv": VEHICLE_MIX,
    "obs": OBSTACLES,
    "obsm": MOBILE_OBSTACLES,
    "choc": IMPACTS,
    "manv": MANOEUVRES,
}
# Safety equipment that protects when worn (secu1..3 codes): belt, helmet, child device,
# vest, airbag, gloves.
PROTECTIVE_EQUIPMENT = {1, 2, 3, 4, 5, 6, 7}
VEHICLE_ATTRIBUTES = ["catv", "obs", "obsm", "choc", "manv", "motor"]
USER_ATTRIBUTES = [
    "place",
    "catu",
    "sexe",
    "an_nais",
    "trajet",
    "secu1",
    "secu2",
    "secu3",
    "locp",
    "actp",
    "etatp",
]


def valid_codes(frame: pd.DataFrame) -> pd.DataFrame:
    """Codes outside their BAAC table, and measures outside their range, become missing.

    This is the documented rule for unknown categories: a new ``catv`` code is treated as
    "not filled in", never as an error.
    """
    frame = frame.copy()
    for column in frame.columns:
        if column in schema.CODES:
            known = np.array(sorted(schema.CODES[column]))
            values = frame[column]
            frame[column] = values.where(values.isin(known))
        elif column in schema.MEASURE_RANGES:
            low, high = schema.MEASURE_RANGES[column]
            values = frame[column]
            frame[column] = values.where((values >= low) & (values <= high))
        elif column == "actp":
            frame[column] = frame[column].where(frame[column].isin(list(schema.ACTP_CODES)))
    return frame


def _count_by_group(vehicles: pd.DataFrame) -> pd.DataFrame:
    counts = {"n_vehicles": vehicles.groupby(KEY, sort=True).size()}
    for column, groups in VEHICLE_COUNTS.items():
        for name, codes in groups.items():
            hit = vehicles[column].isin(list(codes)).fillna(False).astype("int64")
            counts[name] = hit.groupby(vehicles[KEY], sort=True).sum()
    return pd.DataFrame(counts).astype("Int16")


def vehicle_facts(vehicles: pd.DataFrame) -> pd.DataFrame:
    """Per accident: number of vehicles and counts by vehicle kind, obstacle, impact, manoeuvre."""
    return _count_by_group(valid_codes(vehicles)).rename_axis(KEY)


def user_facts(users: pd.DataFrame, accident_year: pd.Series) -> pd.DataFrame:
    """Per accident: facts about its users known before the outcome (``grav`` is not used).

    Facts that need user attributes stay missing where the source has none (2018 subset).
    """
    users = valid_codes(users)
    by_accident = users.groupby(KEY, sort=True)
    known = by_accident["catu"].count() > 0
    year = accident_year.reindex(users[KEY].to_numpy()).to_numpy()
    age = pd.Series(year, index=users.index).astype("Float64") - users["an_nais"].astype("Float64")
    protected = pd.concat(
        [users[slot].isin(list(PROTECTIVE_EQUIPMENT)) for slot in ("secu1", "secu2", "secu3")],
        axis=1,
    ).any(axis=1)
    not_pedestrian = users["catu"].isin([1, 2]).fillna(False)
    facts = pd.DataFrame(
        {
            "n_users": by_accident.size(),
            "n_pedestrians": (users["catu"] == 3).fillna(False).groupby(users[KEY]).sum(),
            "n_passengers": (users["catu"] == 2).fillna(False).groupby(users[KEY]).sum(),
            "min_age": age.groupby(users[KEY]).min(),
            "max_age": age.groupby(users[KEY]).max(),
            "share_protected": (protected & not_pedestrian).groupby(users[KEY]).sum()
            / not_pedestrian.groupby(users[KEY]).sum().replace(0, np.nan),
        }
    )
    for column in ("n_pedestrians", "n_passengers", "min_age", "max_age", "share_protected"):
        facts[column] = facts[column].where(known)
    return facts.astype(
        {
            "n_users": "Int16",
            "n_pedestrians": "Int16",
            "n_passengers": "Int16",
            "min_age": "Float64",
            "max_age": "Float64",
            "share_protected": "Float64",
        }
    ).rename_axis(KEY)


def worst_severity(users: pd.DataFrame) -> pd.Series:
    """The class of the accident's worst-off user (0 unscathed ... 3 killed)."""
    classes = users["grav"].map(schema.GRAV_TO_SEVERITY).astype("Int16")
    return classes.groupby(users[KEY], sort=True).max().rename("severity")


def time_of_day(characteristics: pd.DataFrame) -> pd.DataFrame:
    hrmn = characteristics["hrmn"].astype("string")
    return pd.DataFrame(
        {
            "hour": pd.to_numeric(hrmn.str[:2], errors="coerce").astype("Int16"),
            "minute": pd.to_numeric(hrmn.str[3:5], errors="coerce").astype("Int16"),
        },
        index=characteristics.index,
    )


def accidents(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One record per accident, sorted by ``num_acc``."""
    characteristics = valid_codes(tables["caracteristiques"]).set_index(KEY).sort_index()
    characteristics = characteristics.join(time_of_day(characteristics)).drop(columns="hrmn")
    place = valid_codes(tables["lieux"]).set_index(KEY)
    record = characteristics.join(place, how="left")
    record = record.join(vehicle_facts(tables["vehicules"]), how="left")
    record = record.join(user_facts(tables["usagers"], characteristics["an"]), how="left")
    # An accident without vehicle rows has no vehicles, rather than unknown ones.
    vehicle_counts = ["n_vehicles", *(n for groups in VEHICLE_COUNTS.values() for n in groups)]
    record[vehicle_counts] = record[vehicle_counts].fillna(0)
    if "grav" in tables["usagers"]:
        record = record.join(worst_severity(tables["usagers"]), how="left")
    return record.reset_index()


def users(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One record per road user with their vehicle's attributes, sorted by ``user_id``."""
    people = valid_codes(tables["usagers"])
    vehicles = valid_codes(tables["vehicules"])
    vehicle_columns = {name: f"veh_{name}" for name in VEHICLE_ATTRIBUTES}
    # Match on id_vehicule where published (2019+), else on (num_acc, num_veh).
    by_id = vehicles.dropna(subset=["id_vehicule"]).drop_duplicates("id_vehicule")
    by_num = vehicles.drop_duplicates([KEY, "num_veh"])
    joined_id = people[["id_vehicule"]].merge(
        by_id[["id_vehicule", *VEHICLE_ATTRIBUTES]], on="id_vehicule", how="left"
    )
    joined_num = people[[KEY, "num_veh"]].merge(
        by_num[[KEY, "num_veh", *VEHICLE_ATTRIBUTES]], on=[KEY, "num_veh"], how="left"
    )
    vehicle = joined_id[VEHICLE_ATTRIBUTES].fillna(joined_num[VEHICLE_ATTRIBUTES])
    record = people[[KEY, schema.USER_KEY, *USER_ATTRIBUTES, "grav"]].reset_index(drop=True)
    record = pd.concat([record, vehicle.rename(columns=vehicle_columns)], axis=1)
    return record.sort_values(schema.USER_KEY, kind="stable").reset_index(drop=True)
