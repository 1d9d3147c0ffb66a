"""Reliability evidence for the prediction API, against a real ``bentoml serve`` on loopback.

- **Fuzzing** (schemathesis, property-based, from the service's own OpenAPI document): every
  route, positive and negative inputs, with the key: no 5xx and every answer documented and
  conforming to the document; without the key: 401 on every protected route, 200 on the probes.
- **Hostile bodies**: 50 MB of JSON, 100,000 levels of nesting, NaN and Infinity, text for
  codes, 10,001 records, repeated keys, a wrong Content-Type, bytes that are not UTF-8: each
  gets a 4xx, the server stays up and keeps predicting, and its memory comes back.
- **Key handling**: the time to refuse a wrong key does not depend on how much of the real key
  it shares; the key never appears in logs, the prediction log, error bodies or ``/model``.

The long runs (``@pytest.mark.reliability``: ``make reliability``) use a server of their own
with the service's default body limit and a long key. The fast checks (``make test``) use the
session's server (``tests/conftest.py``) and keep, as regression tests, the inputs these checks
found wrong: an empty body the document allowed (schemathesis, ST202 "schema-valid request
rejected"), a 404 of /data/progress it did not declare, NaN and Infinity read as numbers,
repeated keys silently resolved to the last value, and any Content-Type read as JSON (a
text/plain body got a 200).
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import random
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from baac_severity.serving.auth import API_KEY_HEADER
from baac_severity.serving.examples import EXAMPLE
from baac_severity.serving.schemas import MAX_RECORDS
from baac_severity.testing.local_service import service_rss, start_service
from tests.helpers import TEST_MAX_BODY

pytestmark = pytest.mark.slow
DEFAULT_MAX_BODY = (
    32 * 1024 * 1024
)  # baac_severity.serving.settings' MAX_BODY_BYTES default, kept below
HOSTILE_BODY_BYTES = 50 * 1024 * 1024
RSS_TOLERANCE = 1.10  # memory after a hostile body: within 10 % of the warmed-up baseline
FUZZ_MIN_CASES = 1_000
PREDICT_EXAMPLES = 500  # per generation mode (valid, invalid data): 1,000 bodies in all
# Checks of an answer to a request without a key: whatever it is, it must be documented.
DOCUMENTED = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    """Four real accidents of the test split (baac_severity/serving/predict_request.json)."""
    return json.loads(EXAMPLE.read_text())


@pytest.fixture(scope="module")
def long_key() -> str:
    # 4,096 characters: the longer the real key, the longer a comparison that stops at the
    # first differing character takes on a near-miss, so the timing test below can resolve it.
    return secrets.token_hex(2048)


@pytest.fixture(scope="module")
def reliability_server(home, workspace, long_key, tmp_path_factory):
    """The service with its default body limit (no MAX_BODY_BYTES) and a 4,096-character key."""
    server = start_service(
        home, workspace, tmp_path_factory.mktemp("reliability"), API_KEY=long_key
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reliability_client(reliability_server, long_key):
    headers = {API_KEY_HEADER: long_key}
    with httpx.Client(base_url=reliability_server.url, headers=headers, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def fuzz_schema(reliability_server):
    return load_schema(reliability_server)


@pytest.fixture(scope="module")
def smoke_schema(server):
    return load_schema(server)


# --- helpers ----------------------------------------------------------------------------


def load_schema(server: Any) -> Any:
    """The service's OpenAPI document, as schemathesis sees it. The key is not generated from
    the security scheme (random keys would all be 401s): ``with_key`` sets the real one, or none.
    """
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    schema.config.generation.update(with_security_parameters=False)
    return schema


def with_key(case: Any, key: str | None) -> Any:
    """The case with ``key`` as its X-API-Key, or with no key at all."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
    if key is not None:
        headers[API_KEY_HEADER] = key
    case.headers = headers
    return case


def operation_labels(schema: Any) -> set[str]:
    return {result.ok().label for result in schema.get_all_operations()}


def is_protected(case: Any) -> bool:
    """Whether the document asks for the key on this operation (the probes declare none)."""
    return case.operation.definition.raw.get("security") != []


def fuzz_with_key(case: Any, key: str) -> None:
    """Send the case with the key; every built-in check of schemathesis applies (no 5xx,
    documented status, content type, headers and body; invalid data refused, valid data
    accepted; the key really enforced)."""
    response = with_key(case, key).call(timeout=120)
    assert response.status_code < 500, response.text
    case.validate_response(response)


def fuzz_without_key(case: Any) -> None:
    """Send the case without a key: 401 on a protected route, 200 on a probe, documented."""
    response = with_key(case, None).call(timeout=120)
    expected = 401 if is_protected(case) else 200
    assert response.status_code == expected, (case.operation.label, response.text)
    if expected == 401:
        assert response.json() == {"error": "missing or invalid API key"}
    case.validate_response(response, checks=DOCUMENTED)


def fuzz(schema: Any, key: str | None, examples: int, derandomize: bool) -> Counter[str]:
    """Property-based tests of every operation of ``schema``, from valid and from invalid data
    (schemathesis' generation modes), sent with ``key`` or without a key; the number of cases
    sent per operation. ``examples`` is per mode for POST /predict, the only route with a body.
    Hypothesis stops at the first failing case, shrinks it and reports it with a curl line."""
    cases: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        # Only invalid *inputs* make negative cases: a route without any (the GET routes; the
        # key is not generated, see with_key) has one case, the valid request.
        has_inputs = len(operation.body) > 0 or any(True for _ in operation.iter_parameters())
        for mode in GenerationMode if has_inputs else [GenerationMode.POSITIVE]:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,  # one function for every operation: no shared example store
                derandomize=derandomize,
                suppress_health_check=list(HealthCheck),
            )
            def send(case: Any) -> None:
                cases[case.operation.label] += 1
                if key is None:
                    fuzz_without_key(case)
                else:
                    fuzz_with_key(case, key)

            send()
    return cases


def record(example: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The first real accident of the example, with ``changes``."""
    changed = copy.deepcopy(example["accidents"][0])
    changed.update(changes)
    return changed


def body(*accidents: dict[str, Any]) -> bytes:
    return json.dumps({"accidents": list(accidents)}).encode()


def repeated(example: dict[str, Any], count: int) -> bytes:
    """A request of ``count`` real accidents (the example's, in turn), without parsing it."""
    parts = [json.dumps(accident).encode() for accident in example["accidents"]]
    items = b",".join(parts[i % len(parts)] for i in range(count))
    return b'{"accidents": [' + items + b"]}"


def at_least(example: dict[str, Any], size: int) -> bytes:
    """Syntactically valid JSON of real accidents, at least ``size`` bytes long."""
    one = len(repeated(example, len(example["accidents"]))) / len(example["accidents"])
    return repeated(example, math.ceil(size / one) + 1)


def streamed(data: bytes, piece: int = 1 << 20) -> Iterator[bytes]:
    """``data`` as a chunked body: no Content-Length, the server must count while reading."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


# A hostile body: what is sent, and the status and error type it must get.
Hostile = tuple[Any, dict[str, str], int, str | None]


def hostile_bodies(example: dict[str, Any], large: bool) -> dict[str, Hostile]:
    """Bodies an attacker or a broken client might send, built from real accidents. ``large``
    adds those that only the default body limit lets through or refuses (50 MB, 10,001
    records)."""
    json_type = {"content-type": "application/json"}
    valid = body(record(example))
    text_codes = record(example, lum="1", atm="2", catr="3")
    text_codes["users"] = [dict(text_codes["users"][0], catu="1")]
    bodies: dict[str, Hostile] = {
        "100,000 levels of [": (b"[" * 100_000, json_type, 422, "json_invalid"),
        "100,000 levels of objects": (
            b'{"accidents": ' + b'{"a": ' * 100_000,
            json_type,
            422,
            "json_invalid",
        ),
        "NaN for a coordinate": (
            json.dumps({"accidents": [record(example, lat=math.nan)]}).encode(),
            json_type,
            422,
            "finite_number",
        ),
        "Infinity": (
            json.dumps({"accidents": [record(example, long=math.inf)]}).encode(),
            json_type,
            422,
            "finite_number",
        ),
        "-Infinity": (
            json.dumps({"accidents": [record(example, lat=-math.inf)]}).encode(),
            json_type,
            422,
            "finite_number",
        ),
        "1e999 (overflows to infinity)": (
            body(record(example, lat=0.125)).replace(b"0.125", b"1e999"),
            json_type,
            422,
            "finite_number",
        ),
        "text for BAAC codes": (body(text_codes), json_type, 422, "int_type"),
        "repeated key in an accident": (
            valid.replace(b'{"num_acc": ', b'{"an": 1999, "num_acc": ', 1),
            json_type,
            422,
            "duplicate_key",
        ),
        "repeated key at the top": (
            b'{"accidents": [], ' + valid[1:],
            json_type,
            422,
            "duplicate_key",
        ),
        "Content-Type text/plain": (valid, {"content-type": "text/plain"}, 415, None),
        "Content-Type form": (
            valid,
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            None,
        ),
        "JSON in Latin-1": (
            valid,
            {"content-type": "application/json; charset=latin-1"},
            415,
            None,
        ),
        "bytes that are not UTF-8": (
            valid.replace(b'"num_acc": "', b'"num_acc": "\xff\xfe', 1),
            json_type,
            422,
            "json_invalid",
        ),
        "UTF-16": (valid.decode().encode("utf-16"), json_type, 422, "json_invalid"),
        "lone surrogate": (
            valid.replace(b'"num_acc": "', b'"num_acc": "\\ud800', 1),
            json_type,
            422,
            "json_invalid",
        ),
        "empty body": (b"", json_type, 422, "missing"),
    }
    if large:
        huge = at_least(example, HOSTILE_BODY_BYTES)
        bodies |= {
            "50 MB of JSON": (huge, json_type, 413, None),
            "50 MB of JSON, chunked": (streamed(huge), json_type, 413, None),
            "10,001 records": (repeated(example, MAX_RECORDS + 1), json_type, 422, "too_long"),
        }
    return bodies


def send_hostile(client: httpx.Client, hostile: Hostile) -> httpx.Response:
    content, headers, status, error_type = hostile
    response = client.post("/predict", content=content, headers=headers)
    assert response.status_code == status, response.text[:500]
    if error_type is not None:
        assert response.json()["detail"][0]["type"] == error_type, response.text[:500]
    return response


def still_serving(client: httpx.Client, example: dict[str, Any]) -> None:
    """The server is up and still predicts real accidents."""
    assert client.get("/readyz").status_code == 200
    response = client.post("/predict", json=example)
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["predictions"]) == len(example["accidents"])


# --- fast regression tests: what the fuzzing found (make test) ----------------------------


def test_openapi_documents_every_answer(client):
    """The fuzzing found that BentoML declares the body optional (an empty body is a 422);
    the 404 of /data/progress was not declared either, and the 415 is new."""
    document = client.get("/docs.json").json()
    predict = document["paths"]["/predict"]["post"]
    assert predict["requestBody"]["required"] is True
    assert {"401", "413", "415", "422"} <= set(predict["responses"])
    assert "404" in document["paths"]["/data/progress"]["get"]["responses"]


def test_empty_body_is_a_422_naming_the_missing_field(client):
    response = client.post("/predict", content=b"")
    assert response.status_code == 422
    assert response.json()["detail"][0] == {
        "record": None,
        "field": "accidents",
        "type": "missing",
        "message": "Field required",
    }


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_a_422_naming_the_field(client, example, value):
    """pydantic reads NaN and Infinity as numbers, which JSON has not; they were refused only
    by the range of the coordinates, with a misleading message."""
    content = json.dumps({"accidents": [example["accidents"][0], record(example, long=value)]})
    response = client.post("/predict", content=content)
    assert response.status_code == 422
    problem = response.json()["detail"][0]
    assert (problem["record"], problem["field"], problem["type"]) == (1, "long", "finite_number")


@pytest.mark.parametrize(
    ("raw", "index", "field"),
    [
        (
            b'[{"an": 2018, "an": 2024, "mois": 6, "vehicles": [{"catv": 7}], "users": [{}]}]',
            0,
            "an",
        ),
        (
            b'[{"an": 2024, "mois": 6, "vehicles": [{"catv": 7, "catv": 2}], "users": [{}]}]',
            0,
            "vehicles[0].catv",
        ),
        (
            b'[], "accidents": [{"an": 2024, "mois": 6, "vehicles": [{}], "users": [{}]}]',
            None,
            "accidents",
        ),
    ],
)
def test_repeated_keys_are_a_422_naming_record_and_field(client, raw, index, field):
    """JSON parsers disagree on a repeated key (pydantic silently kept the last value): the
    rule is I-JSON's (RFC 7493), a repeated key is refused."""
    response = client.post("/predict", content=b'{"accidents": ' + raw + b"}")
    assert response.status_code == 422, response.text
    problem = response.json()["detail"][0]
    assert (problem["record"], problem["field"], problem["type"]) == (index, field, "duplicate_key")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16", ""],
)
def test_a_body_declared_as_not_json_is_a_415(client, example, content_type):
    """The service read any body as JSON whatever its declared type (a form post got a
    confusing json_invalid, a valid body in text/plain a 200)."""
    content = json.dumps(example).encode()
    response = client.post("/predict", content=content, headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported media type"
    for accepted in ("application/json", "application/json; charset=UTF-8", None):
        headers = {} if accepted is None else {"content-type": accepted}
        assert client.post("/predict", content=content, headers=headers).status_code == 200


def test_the_key_is_checked_before_the_media_type(server):
    response = httpx.post(
        f"{server.url}/predict", content=b"x", headers={"content-type": "text/plain"}, timeout=30
    )
    assert response.status_code == 401


def test_small_hostile_bodies_are_4xx_and_the_server_keeps_predicting(client, example):
    for name, hostile in hostile_bodies(example, large=False).items():
        assert send_hostile(client, hostile).status_code < 500, name
    still_serving(client, example)


def test_fuzz_smoke(smoke_schema, keys):
    """A small, deterministic fuzz of every route in the document, with and without a key."""
    with_key_cases = fuzz(smoke_schema, keys[0], examples=10, derandomize=True)
    without_key_cases = fuzz(smoke_schema, None, examples=5, derandomize=True)
    routes = operation_labels(smoke_schema)
    assert set(with_key_cases) == set(without_key_cases) == routes
    assert with_key_cases["POST /predict"] >= 15  # both modes ran


def test_the_key_never_leaks(server, client, keys, example):
    """Not in an error body, not in /model, not in the server's stdout and stderr, not in the
    prediction log, whatever the request: valid, invalid, oversized, refused, near misses."""
    key = keys[0]
    near_misses = [key + "x", key[:-1], key.upper(), f"{key},{keys[1]}"]
    answers = [
        client.post("/predict", json=example),
        client.post("/predict", json={"accidents": [{"num_acc": key}]}),
        client.post("/predict", content=b"{" * 1000),
        client.post("/predict", content=b" " * (TEST_MAX_BODY + 1)),
        client.post("/predict", content=b"{}", headers={"content-type": "text/plain"}),
        client.get("/model"),
        client.get("/data/progress"),
        client.get("/no/such/route"),
        client.put("/predict", content=b"{}"),
    ]
    for wrong in near_misses:
        answers.append(httpx.get(f"{server.url}/model", headers={"X-API-Key": wrong}, timeout=30))
    assert answers[0].status_code == 200
    assert [a.status_code for a in answers[-len(near_misses) :]] == [401] * len(near_misses)
    for answer in answers:
        exposed = answer.text + json.dumps(dict(answer.headers))
        assert key not in exposed and key[:-1] not in exposed, answer.request.url
    time.sleep(0.5)  # the access log and the prediction log are written asynchronously
    logs = server.logs()
    assert "/predict" in logs  # the server's output really is captured
    assert key[:-1] not in logs and key.upper() not in logs
    assert server.prediction_log_text()
    assert key[:-1] not in server.prediction_log_text()


# --- fuzzing (make reliability) -----------------------------------------------------------


@pytest.mark.reliability
def test_fuzzing_every_route_with_and_without_the_key(fuzz_schema, long_key):
    """At least 1,000 generated cases over every route with the key: no 5xx, every answer as
    documented. Then without a key: 401 on every protected route, 200 on every probe."""
    started = time.monotonic()
    with_key_cases = fuzz(fuzz_schema, long_key, examples=PREDICT_EXAMPLES, derandomize=False)
    middle = time.monotonic()
    without_key_cases = fuzz(fuzz_schema, None, examples=25, derandomize=False)
    print(
        f"\nwith the key: {sum(with_key_cases.values())} cases in {middle - started:.0f} s "
        f"{dict(with_key_cases)}\nwithout: {sum(without_key_cases.values())} cases in "
        f"{time.monotonic() - middle:.0f} s {dict(without_key_cases)}"
    )
    routes = operation_labels(fuzz_schema)
    assert routes >= {"POST /predict", "GET /model", "GET /data/progress", "GET /readyz"}
    assert set(with_key_cases) == set(without_key_cases) == routes
    assert sum(with_key_cases.values()) >= FUZZ_MIN_CASES


# --- hostile bodies against the default body limit (make reliability) --------------------


def settled_rss(server, ceiling: float, timeout: float = 20.0) -> int:
    """The service's RSS once it is under ``ceiling``, or its last value after ``timeout`` s
    (freed memory may take a moment to be handed back)."""
    deadline = time.monotonic() + timeout
    rss = service_rss(server)
    while rss > ceiling and time.monotonic() < deadline:
        time.sleep(0.5)
        rss = service_rss(server)
    return rss


@pytest.mark.reliability
def test_hostile_bodies_get_4xx_and_memory_comes_back(
    reliability_server, reliability_client, example
):
    client = reliability_client
    # Warm-up: the largest legitimate requests first, so that the baseline is the memory of
    # a server in normal use (the allocator keeps what a 10,000-accident batch needed).
    for count in (1, 100, 1_000, MAX_RECORDS):
        response = client.post("/predict", content=repeated(example, count))
        assert response.status_code == 200, response.text[:300]
    still_serving(client, example)
    baseline = service_rss(reliability_server)
    figures = {}
    for name, hostile in hostile_bodies(example, large=True).items():
        started = time.perf_counter()
        status = send_hostile(client, hostile).status_code
        seconds = time.perf_counter() - started
        still_serving(client, example)
        rss = settled_rss(reliability_server, baseline * RSS_TOLERANCE)
        figures[name] = (status, round(seconds, 3), round(rss / baseline, 3))
        assert rss <= baseline * RSS_TOLERANCE, (name, rss, baseline)
    print(f"\nbaseline RSS {baseline / 2**20:.0f} MiB; (status, s, RSS/baseline) per body:")
    for name, figure in figures.items():
        print(f"  {name:34} {figure}")


# --- timing of the key comparison (make reliability) -------------------------------------


def naive_equal(a: bytes, b: bytes) -> bool:
    """What the service must NOT do: stop at the first differing byte."""
    return len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True))


def naive_leak(key: bytes, prefix: bytes, none: bytes, repeat: int = 300) -> float:
    """Seconds by which ``naive_equal`` refuses the near miss later than the far miss, on
    this machine now: the leak a non-constant-time comparison would show."""

    def median_seconds(candidate: bytes) -> float:
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            naive_equal(candidate, key)
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)

    return median_seconds(prefix) - median_seconds(none)


def refusal_seconds(connection: http.client.HTTPConnection, key: str) -> float:
    started = time.perf_counter()
    connection.request("GET", "/model", headers={API_KEY_HEADER: key})
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 401
    return elapsed


def bootstrap_half_width(differences: np.ndarray, rng: np.random.Generator) -> float:
    """Half the width of the 95 % bootstrap interval of the median of ``differences``."""
    draws = rng.choice(differences, size=(1000, len(differences)), replace=True)
    low, high = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return float(high - low) / 2


@pytest.mark.reliability
def test_refusing_a_key_takes_as_long_whatever_prefix_it_shares(reliability_server, long_key):
    """A near miss (all 4,096 characters but the last right) and a far miss (no character
    right, same length) must take the same time to refuse.

    Why this is a fair test on a loaded 2-core machine:
    - the leak to detect is measured, not assumed: ``naive_leak`` times, in this process, a
      comparison that stops at the first differing byte; on 4,096 characters it refuses the
      near miss some 100-300 µs later than the far miss. The service compares in constant time
      (``secrets.compare_digest``), so the true difference is ~0 (a C ``memcmp`` of 4 KB differs
      by nanoseconds, which no HTTP measurement can see, nor any attacker over a network);
    - requests alternate in pairs (order drawn at random per pair) on one keep-alive connection,
      so a change in the machine's load hits both kinds alike and cancels in the paired
      differences; the median of the differences ignores the scheduler's outliers;
    - the bound scales with the leak, and the noise is measured: sampling goes on until the 95 %
      bootstrap interval of the median is under a quarter of the leak (or a cap). A leak would
      put the median near ``leak`` > ``leak / 2`` and fail; with no leak, exceeding ``leak / 2``
      needs a deviation of twice the 95 % interval (about 4 standard errors: p < 1e-4).
    """
    key = long_key.encode()
    prefix = long_key[:-1] + ("0" if long_key[-1] != "0" else "1")
    none = long_key.translate(str.maketrans("0123456789abcdef", "123456789abcdef0"))
    assert len(prefix) == len(none) == len(long_key) and prefix != long_key
    assert not any(a == b for a, b in zip(none, long_key, strict=True))
    leak = naive_leak(key, prefix.encode(), none.encode())
    assert leak > 20e-6, f"a naive comparison leaks {leak * 1e6:.1f} µs only: key too short"

    rng = np.random.default_rng(20240601)
    order = random.Random(7)
    host, port = reliability_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(200):  # warm-up: caches, the connection, the server's code paths
        refusal_seconds(connection, none)
    prefix_times: list[float] = []
    none_times: list[float] = []
    half_width = math.inf
    while len(prefix_times) < 6_000 and (len(prefix_times) < 1_000 or half_width > leak / 4):
        for _ in range(500):
            if order.random() < 0.5:
                prefix_times.append(refusal_seconds(connection, prefix))
                none_times.append(refusal_seconds(connection, none))
            else:
                none_times.append(refusal_seconds(connection, none))
                prefix_times.append(refusal_seconds(connection, prefix))
        differences = np.array(prefix_times) - np.array(none_times)
        half_width = bootstrap_half_width(differences, rng)
    connection.close()
    median = float(np.median(differences))
    print(
        f"\n{len(prefix_times)} pairs: median near miss {statistics.median(prefix_times) * 1e6:.0f}"
        f" µs, far miss {statistics.median(none_times) * 1e6:.0f} µs; median difference "
        f"{median * 1e6:+.1f} µs ± {half_width * 1e6:.1f} (95 %); naive comparison leak "
        f"{leak * 1e6:.0f} µs"
    )
    assert half_width <= leak / 4, "too noisy to resolve the leak: rerun on a quieter machine"
    assert abs(median) < leak / 2


@pytest.mark.reliability
def test_the_long_key_never_leaked_either(reliability_server, long_key):
    """After everything above: the reliability server's logs hold no trace of its key."""
    logs = reliability_server.logs()
    assert "/predict" in logs
    assert long_key[:64] not in logs and long_key[-64:] not in logs
    assert long_key[:64] not in reliability_server.prediction_log_text()
