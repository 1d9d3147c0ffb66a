"""The dashboard's client of the prediction service (``baac_severity/serving/service.py``, BentoML).

``POST $BAAC_API_URL/predict`` (default http://127.0.0.1:3000) with
``{"accidents": [record], "explain": true}`` and the ``X-API-Key: $API_KEY`` header. The
record starts from the first accident of ``baac_severity/serving/predict_request.json`` when that
file exists, so the form sends whatever shape the service documents, else from ``default_record``,
built from the request schema so that the service accepts it; the form's fields (lum, agg, int,
atm, catr, vma, hour, vehicle catv codes) are written into it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import requests

from baac_severity.serving.schemas import AccidentRecord

API_URL_ENV, API_KEY_ENV = "BAAC_API_URL", "API_KEY"
DEFAULT_API_URL = "http://127.0.0.1:3000"
EXAMPLE_REQUEST = Path(__file__).with_name("predict_request.json")
TIMEOUT = 15
FORM_FIELDS = ["lum", "agg", "int", "atm", "catr"]
FORM_DEFAULTS: dict[str, Any] = {
    "an": 2024,
    "mois": 6,
    "lum": 1,
    "agg": 2,
    "int": 1,
    "atm": 1,
    "catr": 4,
    "vma": 50,
    "hrmn": "08:30",
    "vehicles": [{"catv": 7}],
}


def api_url() -> str:
    return os.environ.get(API_URL_ENV, DEFAULT_API_URL)


def default_record() -> dict[str, Any]:
    """``FORM_DEFAULTS`` completed with every key the request schema requires
    (``AccidentRecord``: today the ``users`` list, which gets one road user whose fields are all
    optional). tests/test_dashboard.py sends it to the running service: a new required field
    without a default here fails that test instead of the form."""
    record = dict(FORM_DEFAULTS)
    for key in sorted(AccidentRecord.__required_keys__ - record.keys()):
        record[key] = [{}]
    return record


def example_record() -> dict[str, Any]:
    """The first accident of ``baac_severity/serving/predict_request.json``, else
    ``default_record()``."""
    try:
        accidents = json.loads(EXAMPLE_REQUEST.read_text()).get("accidents") or []
        if accidents and isinstance(accidents[0], dict):
            return accidents[0]
    except (OSError, ValueError, AttributeError):
        pass
    return default_record()


def _vehicle_key(record: dict[str, Any]) -> str:
    for key in ("vehicles", "vehicules"):
        if isinstance(record.get(key), list):
            return key
    return "vehicles"


def record_catv(record: dict[str, Any]) -> list[int]:
    vehicles = record.get(_vehicle_key(record)) or []
    found = [v.get("catv") for v in vehicles if isinstance(v, dict)]
    return [int(c) for c in found if isinstance(c, int | float)] or [7]


def record_hour(record: dict[str, Any]) -> int:
    try:
        value = record.get("hour", str(record.get("hrmn", "8")).split(":")[0])
        return min(max(int(value), 0), 23)
    except (TypeError, ValueError):
        return 8


def _vehicle(template: dict[str, Any], catv: int, index: int) -> dict[str, Any]:
    """A copy of the example's vehicle with another catv; vehicle letters A01, B01, ... kept
    distinct because a record's vehicles are told apart by ``num_veh``."""
    vehicle = {**template, "catv": catv}
    if "num_veh" in template:
        vehicle["num_veh"] = f"{chr(ord('A') + index % 26)}01"
    return vehicle


def build_record(example: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The example record with the form's values written in, in the example's own shape."""
    record = {**example, **{k: values[k] for k in [*FORM_FIELDS, "vma"]}}
    if "hour" in example or "hrmn" not in example:
        record["hour"] = values["hour"]
    if "hrmn" in example:
        minutes = str(example["hrmn"]).split(":")[-1] if ":" in str(example["hrmn"]) else "00"
        record["hrmn"] = f"{values['hour']:02d}:{minutes}"
    key = _vehicle_key(example)
    template = next((v for v in example.get(key) or [] if isinstance(v, dict)), {})
    record[key] = [_vehicle(template, code, i) for i, code in enumerate(values["catv"])]
    return record


def call_service(record: dict[str, Any]) -> tuple[str, Any]:
    """(kind, payload): kind is ok, down, unauthorized, rejected or failed."""
    url = api_url().rstrip("/") + "/predict"
    # The service accepts a comma-separated list of keys (rotation); send the first one.
    key = os.environ.get(API_KEY_ENV, "").split(",")[0].strip()
    try:
        response = requests.post(
            url,
            json={"accidents": [record], "explain": True},  # the page shows the reasons
            headers={"X-API-Key": key},
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        return "down", f"{url}: {type(exc).__name__}"
    try:
        body = response.json()
    except ValueError:
        body = response.text[:1000]
    if response.status_code in (401, 403):
        return "unauthorized", body
    if response.status_code in (400, 422):
        return "rejected", body
    return ("ok", body) if response.ok else ("failed", f"HTTP {response.status_code}: {body}")
