"""The dashboard's client of the prediction service (``baac_severity/serving/service.py``, BentoML).

``POST $BAAC_API_URL/predict`` (default http://127.0.0.1:3000) with
``{"accidents": [record], "explain": true}`` and the ``X-API-Key: $API_KEY`` header. The
Predict page's form starts from the most complete accident of
``baac_severity/serving/predict_request.json`` (real accidents) when that file exists, else from
``default_record``, built from the request schema so that the service accepts it.
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


def _filled(record: dict[str, Any]) -> int:
    """How many fields of an accident, its vehicles' and its users' are filled in."""
    parts = [record, *(record.get("vehicles") or []), *(record.get("users") or [])]
    return sum(
        value is not None for part in parts if isinstance(part, dict) for value in part.values()
    )


def example_record() -> dict[str, Any]:
    """The most completely filled-in accident of ``baac_severity/serving/predict_request.json``
    (a real one: a 2019+ accident, with its users' attributes), else ``default_record()``."""
    try:
        accidents = json.loads(EXAMPLE_REQUEST.read_text()).get("accidents") or []
        records = [a for a in accidents if isinstance(a, dict)]
        if records:
            return max(records, key=_filled)  # the first of the most complete
    except (OSError, ValueError, AttributeError):
        pass
    return default_record()


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
