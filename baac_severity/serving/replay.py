"""Replay real held-out accidents as prediction requests, to show monitoring on real traffic.

    baac replay --split test --n 500
    baac replay --split test --n 500 --shift night,rain,rural

Draws ``--n`` accidents of the split (reproducibly, ``--seed``), rebuilds them as request
records from the chunk tables (``baac_severity/serving/examples.py``) and posts them to the service
(``BAAC_API_URL``, default http://127.0.0.1:3000, with ``X-API-Key: $API_KEY``) in requests of
``--batch`` accidents. ``--shift`` rewrites every accident before sending it: ``night`` (no
street lighting, 23:30), ``rain`` (heavy rain, wet surface), ``rural`` (outside built-up
areas, on a departmental road at 80 km/h); the service's log then drifts and ``make monitor``
says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import requests

from baac_severity.serving import settings
from baac_severity.serving.client import API_KEY_ENV, API_URL_ENV, DEFAULT_API_URL
from baac_severity.serving.examples import load_tables, request_records, sample_test_split

Record = dict[str, Any]
SHIFTS: dict[str, Callable[[Record], None]] = {
    "night": lambda record: record.update(lum=3, hrmn="23:30"),
    "rain": lambda record: record.update(atm=3, surf=2),
    "rural": lambda record: record.update(agg=1, catr=3, vma=80),
}
TIMEOUT = 120


def shift_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SHIFTS))
    if unknown:
        raise ValueError(f"unknown shift {', '.join(unknown)}; choose from {', '.join(SHIFTS)}")
    return names


def shifted(records: list[Record], shifts: list[str]) -> list[Record]:
    for record in records:
        for name in shifts:
            SHIFTS[name](record)
    return records


def replay(records: list[Record], url: str, key: str, batch: int) -> int:
    """Post ``records`` in batches; returns the number of accidents scored."""
    scored = 0
    with requests.Session() as session:
        session.headers["X-API-Key"] = key
        for start in range(0, len(records), batch):
            body = {"accidents": records[start : start + batch]}
            response = session.post(f"{url}/predict", json=body, timeout=TIMEOUT)
            if response.status_code != 200:
                raise SystemExit(f"replay: {url}/predict answered {response.status_code}: "
                                 f"{response.text[:500]}")  # fmt: skip
            scored += len(body["accidents"])
    return scored


def service_key() -> str | None:
    """The first key of ``API_KEY``, read as the service reads it: environment, then .env."""
    try:
        keys = settings.load().keys()
    except settings.SettingsError as error:
        raise SystemExit(f"replay: {error}") from None
    return keys[0].decode() if keys else None


def send(
    split: str, n: int, seed: int, batch: int, shifts: list[str], url: str | None = None
) -> int:
    """``baac replay``: ``n`` accidents of ``split``, shifted, posted to the service at ``url``
    (default: ``BAAC_API_URL``) with the key of ``API_KEY``."""
    url = url or os.environ.get(API_URL_ENV, DEFAULT_API_URL)
    key = service_key()
    if not key:
        raise SystemExit(f"replay: set {API_KEY_ENV} (environment or .env) to the service's key")
    keys = sample_test_split(n, seed, split=split)
    records = shifted(request_records(load_tables(), keys), shifts)
    scored = replay(records, url, key, batch)
    shift = f", shifted: {','.join(shifts)}" if shifts else ""
    print(f"replay: {scored} {split} accidents sent to {url}{shift}")
    return 0
