"""Request and response models of the prediction API, generated from the BAAC schema.

The field names, types and allowed codes come from ``baac_severity.data.schema`` (``TABLES``,
``CODES``, ``ACTP_CODES``, ``MEASURE_RANGES``) and each field's description lists the model
features that read it (``baac_severity.features.FEATURES``): nothing here is a hand-copied code
list, so a code added to ``baac_severity.data.schema`` is accepted by the API at the next start.

A request holds accidents in BAAC terms: the characteristics (``caracteristiques``) and place
(``lieux``) fields at the top level, plus ``vehicles`` (``vehicules``) and ``users``
(``usagers``, without the outcome ``grav``). Which fields are checked how:

- **closed code tables** (lighting, weather, road category, user category, safety
  equipment...): the value must be a code of its table, or one of BAAC's "not filled in" markers
  -1 and 0 (read as missing). Anything else is a 422.
- **open nomenclatures** (``LENIENT_CODES``: the vehicle category ``catv``, obstacles, impact,
  manoeuvre, motor, and the pedestrian action ``actp``): ONISR extends these tables (e.g. new
  ``catv`` codes for e-scooters in 2019), so any code of the right shape is accepted and a code
  missing from the table follows the documented unknown-code rule (``entities.valid_codes``):
  it is read as "not filled in", never an error.
- **measures** (``nbv``, ``vma``, ``occutc``, ``an_nais``): integers within hard limits
  (422 outside); values outside the plausible range of ``MEASURE_RANGES`` are read as missing.

Every field except ``an``, ``mois``, ``vehicles`` and ``users`` is optional: a missing value is
left to the model, which was trained with missing values (the 2018 subset has no day, no
department and no user attributes). Types are strict: ``"2"`` or ``2.0`` for a code is a 422.

The body must be I-JSON (RFC 7493), the interoperable subset of JSON: ``NaN`` and infinite
numbers are a 422 (``finite_number``), and so is an object that repeats a key
(``duplicate_key``, ``duplicate_keys``): JSON parsers disagree on which of the values counts
(the first, the last, an error), so the request's meaning would depend on the parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, TypeVar

import jiter
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic_core import core_schema
from typing_extensions import TypedDict

from baac_severity import features
from baac_severity.data import schema

MAX_RECORDS = 10_000  # accidents per request (road users per request for user-level models)
MAX_VEHICLES = 100  # per accident; the BAAC maximum is 13
MAX_USERS = 250  # per accident; the BAAC maximum is 56
MAX_ERRORS = 50  # validation errors listed in a 422 answer
TOP_CONTRIBUTIONS = 5  # features listed per prediction when a request asks for explanations

NOT_FILLED = (-1, 0)  # BAAC "not filled in" markers (-1 since 2019, 0 before): read as missing
# Nomenclatures that ONISR extends over the years: unknown codes become missing (see above).
LENIENT_CODES = frozenset({"catv", "obs", "obsm", "choc", "manv", "motor"})
LENIENT_RANGE = (-1, 99)  # BAAC codes have at most two digits
# Hard limits of the measures; MEASURE_RANGES (baac_severity.data.schema) is the plausible
# sub-range.
MEASURE_LIMITS = {"nbv": (-1, 99), "vma": (-1, 999), "occutc": (-1, 999), "an_nais": (1880, 2100)}
# Identifiers are the client's: echoed back, used only to link users to their vehicle.
IDENTIFIERS = {schema.KEY, "id_vehicule", "num_veh", schema.USER_KEY}
OTHER_FIELDS: dict[str, tuple[Any, str]] = {
    "an": (Annotated[int, Field(strict=True, ge=2005, le=2100)], "year of the accident"),
    "mois": (Annotated[int, Field(strict=True, ge=1, le=12)], "month (1-12)"),
    "jour": (Annotated[int, Field(strict=True, ge=1, le=31)], "day of the month"),
    "hrmn": (
        Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")],
        'time of the accident, "HH:MM"',
    ),
    "dep": (
        Annotated[str, Field(pattern=r"^([0-9]{2,3}|2[ABab])$")],
        'INSEE department code ("75", "2A", "971")',
    ),
    "com": (Annotated[str, Field(pattern=r"^[0-9][0-9ABab][0-9]{3}$")], "INSEE commune code"),
    "lat": (Annotated[float, Field(ge=-90, le=90)], "latitude (degrees)"),
    "long": (Annotated[float, Field(ge=-180, le=180)], "longitude (degrees)"),
    "actp": (
        Annotated[str, Field(pattern=r"^(-1|[0-9A-Za-z])$")],
        "pedestrian action: "
        + ", ".join(f"{code} {label}" for code, label in schema.ACTP_CODES.items())
        + "; other codes are read as not filled in",
    ),
}
# What each request field is, in a user's words: the start of its description, the label of
# the prediction form and of an explanation (the codes' own labels are schema.CODES).
FIELD_LABELS = {
    schema.KEY: "accident identifier",
    "an": "year",
    "mois": "month",
    "jour": "day of the month",
    "hrmn": "time",
    "lum": "lighting",
    "agg": "built-up area",
    "int": "intersection",
    "atm": "weather",
    "col": "collision type",
    "dep": "department",
    "com": "commune",
    "lat": "latitude",
    "long": "longitude",
    "catr": "road category",
    "circ": "traffic flow",
    "nbv": "number of lanes",
    "vosp": "reserved lane",
    "prof": "road profile",
    "plan": "road layout",
    "surf": "surface",
    "infra": "infrastructure",
    "situ": "position",
    "vma": "speed limit (km/h)",
    "id_vehicule": "vehicle identifier",
    "num_veh": "vehicle",
    "senc": "direction",
    "catv": "vehicle category",
    "obs": "fixed obstacle hit",
    "obsm": "moving obstacle hit",
    "choc": "initial impact",
    "manv": "main manoeuvre",
    "motor": "motor",
    "occutc": "public-transport occupants",
    schema.USER_KEY: "road-user identifier",
    "place": "seat",
    "catu": "user category",
    "sexe": "sex",
    "an_nais": "year of birth",
    "trajet": "journey purpose",
    "secu1": "safety equipment 1",
    "secu2": "safety equipment 2",
    "secu3": "safety equipment 3",
    "locp": "pedestrian location",
    "actp": "pedestrian action",
    "etatp": "pedestrian alone or not",
}
IDENTIFIER = Annotated[str, Field(min_length=1, max_length=32)]
REQUIRED = {"an", "mois"}
# allow_inf_nan: NaN and +-Infinity are not JSON numbers; pydantic would accept them.
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Code:
    """Annotation: an integer that must be one of ``codes``, checked in pydantic-core.

    A chain of a strict int and a literal keeps the check out of Python (a Python validator
    per field would cost milliseconds on a 1,000-record batch) and rejects ``true`` and
    ``2.0``, which a bare ``Literal`` accepts.
    """

    def __init__(self, codes: list[int]) -> None:
        self.codes = sorted(set(codes))

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.chain_schema(
            [core_schema.int_schema(strict=True), core_schema.literal_schema(self.codes)]
        )

    def __get_pydantic_json_schema__(self, schema_: Any, handler: Any) -> dict[str, Any]:
        return {"type": "integer", "enum": self.codes}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    annotation: Any
    required: bool
    description: str


def _code_labels(name: str) -> str:
    labels = ", ".join(f"{code} {label}" for code, label in schema.CODES[name].items())
    return f"BAAC code: {labels}"


def _code_field(name: str) -> tuple[Any, str]:
    if name in LENIENT_CODES:
        low, high = LENIENT_RANGE
        annotation = Annotated[int, Field(strict=True, ge=low, le=high)]
        rule = f"any code {low}..{high} is accepted; codes not listed are read as not filled in"
    else:
        annotation = Annotated[int, Code([*NOT_FILLED, *schema.CODES[name]])]
        rule = "-1 and 0 mean not filled in; other codes are rejected"
    return annotation, f"{_code_labels(name)} ({rule})"


def _measure_field(name: str) -> tuple[Any, str]:
    low, high = MEASURE_LIMITS[name]
    plausible_low, plausible_high = schema.MEASURE_RANGES[name]
    annotation = Annotated[int, Field(strict=True, ge=low, le=high)]
    return annotation, f"measure; values outside {plausible_low}..{plausible_high} are missing"


def _reads(source: str, table: str, name: str) -> bool:
    """Whether a feature's documented source mentions the field ``table.name``."""
    if re.search(rf"\b{table}\.{name}\b", source):
        return True
    if name.startswith("secu") and "secu1..3" in source:
        return True
    # Unprefixed names ("an, mois, jour") mean the accident's own fields.
    return table == "caracteristiques" and bool(re.search(rf"(?<![\w.]){name}\b", source))


def _used_by(table: str, name: str) -> str:
    """The features that read this field, from ``features.FEATURES``."""
    names = [f.name for f in features.FEATURES if _reads(f.source, table, name)]
    return f". Feeds: {', '.join(names)}." if names else ". Not used by the features."


def field_spec(table: str, name: str) -> FieldSpec:
    if name in IDENTIFIERS:
        annotation, description = IDENTIFIER, "identifier (echoed back, links users to vehicles)"
    elif name in schema.CODES:
        annotation, description = _code_field(name)
    elif name in schema.MEASURE_RANGES:
        annotation, description = _measure_field(name)
    else:
        annotation, description = OTHER_FIELDS[name]
    description = f"{FIELD_LABELS[name]}: {description}{_used_by(table, name)}"
    return FieldSpec(name, annotation, name in REQUIRED, description)


def table_specs(table: str, exclude: set[str]) -> list[FieldSpec]:
    return [field_spec(table, c) for c in schema.columns(table) if c not in exclude]


def _record_type(name: str, doc: str, specs: list[FieldSpec], **extra: Any) -> type:
    """A TypedDict of the fields: pydantic validates JSON into plain dicts twice as fast as
    into model instances, which matters for 10,000-record requests. Absent optional fields
    are filled with None."""
    fields: dict[str, Any] = {}
    for spec in specs:
        if spec.required:
            fields[spec.name] = Annotated[spec.annotation, Field(description=spec.description)]
        else:
            # The default fills absent keys: every validated record has every field.
            optional = Field(default=None, description=spec.description)
            fields[spec.name] = NotRequired[Annotated[spec.annotation | None, optional]]
    record = TypedDict(name, {**fields, **extra})  # type: ignore[misc]
    record.__doc__ = doc
    record.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
    return record


VEHICLE_SPECS = table_specs("vehicules", {schema.KEY})
USER_SPECS = table_specs("usagers", {schema.KEY, "grav"})
ACCIDENT_SPECS = table_specs("caracteristiques", set()) + table_specs("lieux", {schema.KEY})

VehicleRecord = _record_type(
    "VehicleRecord", "A vehicle of the accident (BAAC table vehicules).", VEHICLE_SPECS
)
UserRecord = _record_type(
    "UserRecord",
    "A road user of the accident (BAAC table usagers, without the outcome grav). num_veh or "
    "id_vehicule names the user's vehicle (for a pedestrian: the vehicle that hit them).",
    USER_SPECS,
)
AccidentRecord = _record_type(
    "AccidentRecord",
    "An accident: its characteristics (caracteristiques) and place (lieux), its vehicles and "
    "its road users.",
    ACCIDENT_SPECS,
    vehicles=Annotated[
        list[VehicleRecord],
        Field(min_length=1, max_length=MAX_VEHICLES, description="its vehicles (at least one)"),
    ],
    users=Annotated[
        list[UserRecord],
        Field(min_length=1, max_length=MAX_USERS, description="its road users (at least one)"),
    ],
)


class PredictRequest(BaseModel):
    """A batch of 1 to 10,000 accidents to score."""

    model_config = STRICT

    accidents: Annotated[list[AccidentRecord], Field(min_length=1, max_length=MAX_RECORDS)]
    explain: bool = Field(
        default=False,
        description=f"add the {TOP_CONTRIBUTIONS} features that moved each probability most",
    )

    # Set by the service when parsing the HTTP request: the validation problems of an invalid
    # body (answered with 422), the SHA-256 of the raw body and its arrival time (perf_counter)
    # for the prediction log.
    _problems: list[dict[str, Any]] | None = PrivateAttr(default=None)
    _body_sha256: str = PrivateAttr(default="")
    _received: float = PrivateAttr(default=0.0)


class Contribution(BaseModel):
    feature: str = Field(description="model feature (docs/FEATURES.md)")
    description: str = Field(
        description='its value in words: "road category: departmental road", "commune risk '
        "0.41 (prior 0.37)\" (a location's severity rate in training, and the rate of an "
        "unseen one)"
    )
    baac: str = Field(description="the BAAC fields it is computed from")
    value: float | None = Field(description="its value for this record (null: missing)")
    contribution: float = Field(
        description="how much it moved the probability of the predicted class, from the bias"
    )


class Explanation(BaseModel):
    """Tree-path contributions (baac_severity/serving/explain.py): bias + the contributions of
    every feature = the probability of ``label``; ``rest`` sums the features not listed."""

    label: str = Field(description="the class explained: the predicted one")
    bias: float = Field(description="the forest's average probability of the class")
    contributions: list[Contribution] = Field(description="largest first (absolute value)")
    rest: float = Field(description="sum of the contributions of the other features")


class Prediction(BaseModel):
    record: int = Field(description="index of the accident in the request")
    num_acc: str | None = Field(description="the accident's num_acc, if given")
    user: int | None = Field(
        default=None, description="user-level models: index of the user in the accident"
    )
    user_id: str | None = Field(default=None, description="user-level models: user_id, if given")
    predicted_class: int = Field(description="the most probable class")
    label: str = Field(description="name of the predicted class")
    probabilities: dict[str, float] = Field(description="probability of each class, by name")
    model_version: str
    explanation: Explanation | None = Field(
        default=None, description='with "explain": true: why this probability'
    )


class PredictResponse(BaseModel):
    request_id: str
    model_version: str
    target: str = Field(description="what the model predicts (severe, severity or grav)")
    unit: str = Field(description="accident: one prediction per accident; user: per road user")
    predictions: list[Prediction]


def _split_location(loc: tuple[Any, ...]) -> tuple[int | None, str]:
    """("accidents", 3, "vehicles", 0, "catv") -> (3, "vehicles[0].catv")."""
    record = loc[1] if len(loc) > 1 and loc[0] == "accidents" else None
    rest = loc[2:] if record is not None else loc
    path = ""
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return record, path


def describe_errors(error: ValidationError) -> list[dict[str, Any]]:
    """Validation errors naming the record index and field, without echoing the input."""
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:MAX_ERRORS]:
        record, field = _split_location(tuple(item["loc"]))
        problems.append(
            {"record": record, "field": field, "type": item["type"], "message": item["msg"]}
        )
    return problems


class _RepeatedKeys(dict):
    """A parsed JSON object that repeated a key (``names``, in order of first repetition)."""

    names: list[str]


def _repeated(pairs: list[tuple[str, Any]], obj: dict[str, Any]) -> _RepeatedKeys:
    marked, seen, names = _RepeatedKeys(obj), set(), []
    for key, _ in pairs:
        if key in seen and key not in names:
            names.append(key)
        seen.add(key)
    marked.names = names
    return marked


def _problems_at(parsed: Any) -> list[dict[str, Any]]:
    """422 problems for the objects marked ``_RepeatedKeys``, in document order. Iterative:
    a body may nest deeply."""
    problems: list[dict[str, Any]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), parsed)]
    while stack and len(problems) < MAX_ERRORS:
        location, value = stack.pop()
        if isinstance(value, _RepeatedKeys):
            for name in value.names:
                record, field = _split_location((*location, name))
                message = f"key {name!r} appears more than once in the same object"
                problems.append(
                    {"record": record, "field": field, "type": "duplicate_key", "message": message}
                )
        if isinstance(value, dict):
            children = [((*location, key), child) for key, child in value.items()]
        elif isinstance(value, list):
            children = [((*location, index), child) for index, child in enumerate(value)]
        else:
            continue
        stack.extend(reversed(children))
    return problems[:MAX_ERRORS]


def duplicate_keys(body: bytes) -> list[dict[str, Any]]:
    """The keys repeated within a JSON object of ``body``, as 422 problems naming the record
    and the field (``[]`` if none). Meant for a body pydantic has already accepted: pydantic's
    parser silently keeps the last value and has no option to refuse a repeated key, so the
    body is parsed a second time (about 15 ms per 1,000 accidents)."""
    found: list[_RepeatedKeys] = []

    def unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj  # the fast path: one dict and one len() per object
        found.append(_repeated(pairs, obj))
        return found[-1]

    try:
        parsed = json.loads(body, object_pairs_hook=unique_object)
    except (ValueError, RecursionError) as error:
        return [{"record": None, "field": "", "type": "json_invalid", "message": str(error)}]
    return _problems_at(parsed) if found else []


Model = TypeVar("Model", bound=BaseModel)


def parse_request(model: type[Model], body: bytes) -> tuple[Model | None, list[dict[str, Any]]]:
    """A JSON body validated as ``model``, or ``(None, problems)`` for a 422.

    The body is parsed once, by jiter (pydantic's JSON parser) refusing repeated keys, and the
    result validated as Python data: the same answers as pydantic's JSON validation followed
    by a second parse to find repeated keys, for 27 instead of 39 ms per 1,000 accidents. Only
    a body that does repeat a key is parsed again, to name its records and fields.
    """
    try:
        document = jiter.from_json(body or b"{}", catch_duplicate_keys=True)
    except ValueError as error:
        if str(error).startswith("Detected duplicate key"):
            return None, duplicate_keys(body)
        return None, [{"record": None, "field": "", "type": "json_invalid", "message": str(error)}]
    try:
        return model.model_validate(document), []
    except ValidationError as error:
        return None, describe_errors(error)


def fields_reference() -> dict[str, list[dict[str, Any]]]:
    """The request fields per part (accident, vehicle, user), for ``GET /model``."""
    parts = {"accident": ACCIDENT_SPECS, "vehicle": VEHICLE_SPECS, "user": USER_SPECS}
    return {
        part: [
            {"name": s.name, "required": s.required, "description": s.description} for s in specs
        ]
        for part, specs in parts.items()
    }
