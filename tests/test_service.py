"""The prediction service end to end: a real ``bentoml serve`` over loopback HTTP.

The server (``tests/conftest.py``) is started once per session with its own BentoML home, into
which the promoted model is imported (``baac_severity/testing/local_service.py``). A fresh clone
has no promoted model: the small real pipeline is run first. In-process tests (``TestClient``) cover
a user-level model served through ``BAAC_MODEL_TAG`` and the ``.env`` key set-up.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from baac_severity import features
from baac_severity.config import (
    DATASET,
    DATASET_USERS,
    METADATA_FILENAME,
    MODEL_FILENAME,
    PROMOTED_METADATA,
    PROMOTED_MODEL,
    ROOT,
)
from baac_severity.data import schema
from baac_severity.modeling.model_store import load_model
from baac_severity.serving import inference
from baac_severity.serving import settings as app_settings
from baac_severity.serving.examples import EXAMPLE, load_tables, request_records, sample_test_split
from baac_severity.serving.settings import PLACEHOLDER_KEY
from baac_severity.testing.local_service import SERVICE, environment, free_port, start
from tests.helpers import TEST_MAX_BODY

pytestmark = pytest.mark.slow
MINIMAL = {"an": 2024, "mois": 6, "vehicles": [{"catv": 7}], "users": [{"catu": 1}]}


# --- fixtures (workspace, home, keys, server, client: tests/conftest.py) ------------------


@pytest.fixture(scope="module")
def metadata(workspace) -> dict:
    return json.loads((workspace / PROMOTED_METADATA).read_text())


@pytest.fixture(scope="module")
def example() -> dict:
    return json.loads(EXAMPLE.read_text())


@pytest.fixture(scope="module")
def tables(workspace) -> dict[str, pd.DataFrame]:
    return load_tables(workspace / "data" / "chunks")


def record(**changes) -> dict:
    changed = copy.deepcopy(MINIMAL)
    changed.update(changes)
    return changed


def probabilities(response: httpx.Response, labels: list[str]) -> np.ndarray:
    rows = response.json()["predictions"]
    return np.array([[row["probabilities"][label] for label in labels] for row in rows])


# --- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/predict", "/model", "/data/progress", "/x"])
def test_routes_need_the_key(server, keys, path):
    method = "POST" if path == "/predict" else "GET"
    wrong = (
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": keys[0] + "x"},
        {"Authorization": f"Bearer {keys[0]}x"},
        {"Authorization": f"Basic {keys[0]}"},  # the key, but not as a Bearer token
        {"Authorization": "Bearer"},  # no token
    )
    for headers in wrong:
        response = httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30)
        assert response.status_code == 401
        assert response.json() == {"error": "missing or invalid API key"}
        assert "Bearer" in response.headers["www-authenticate"]


def test_every_configured_key_is_accepted_in_either_header(server, keys):
    for key in keys:
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
            response = httpx.get(f"{server.url}/model", headers=headers, timeout=30)
            assert response.status_code == 200
    lower_case = {"Authorization": f"bearer {keys[1]}"}  # RFC 9110: schemes ignore case
    assert httpx.get(f"{server.url}/model", headers=lower_case, timeout=30).status_code == 200


@pytest.mark.parametrize(
    "path", ["/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json", "/schema.json"]
)
def test_probes_metrics_and_docs_are_open(server, path):
    assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200


def _facts(value: object, found: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Every key and every scalar value of a JSON document."""
    if isinstance(value, dict):
        for key, child in value.items():
            found.add(("key", key))
            _facts(child, found)
    elif isinstance(value, list):
        for child in value:
            _facts(child, found)
    else:
        found.add(("value", json.dumps(value)))
    return found


def test_schema_json_reveals_no_more_than_the_open_openapi_document(server):
    """/schema.json (what BentoML's clients fetch first) is open because everything in it is
    already in the open /docs.json: its own layout aside, only the route names, the service's
    one-line description and the fact that /predict batches."""
    schema = httpx.get(f"{server.url}/schema.json", timeout=30).json()
    document = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    layout = {("key", k) for k in ("routes", "route", "input", "output", "batchable", "is_task")}
    layout |= {("key", "mounted"), ("value", '"service"')}
    routes = {("value", json.dumps(route["route"])) for route in schema["routes"]}
    assert routes <= {("value", json.dumps(path)) for path in document["paths"]}
    described = {("value", json.dumps(schema["description"]))}
    assert _facts(schema, set()) - _facts(document, set()) <= layout | routes | described


def test_openapi_declares_both_key_schemes_and_a_real_example(server, example):
    document = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["BearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert document["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]  # either
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert {"/predict", "/model", "/data/progress"} <= set(document["paths"])
    predict = document["paths"]["/predict"]["post"]
    assert {"422", "429", "503"} <= set(predict["responses"])
    assert predict["requestBody"]["content"]["application/json"]["example"] == example


def test_docs_page_makes_no_third_party_request(server):
    page = httpx.get(f"{server.url}/", timeout=30)
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "googletagmanager" not in html.lower()
    loads = re.findall(r"<(?!a\b)\w+[^>]*?\s(?:src|href)\s*=\s*[\"']?([^\"' >]+)", html, re.I)
    assert loads and all(url.startswith("./static_content/") for url in loads), loads
    scripts = " ".join(re.findall(r"<script>(.*?)</script>", html, re.S))
    assert "validatorUrl: null" in scripts  # else Swagger UI fetches a badge from swagger.io
    assert not re.search(r"https?://", scripts)
    for url in loads:  # the assets are served by the service itself
        assert httpx.get(f"{server.url}/{url.removeprefix('./')}", timeout=30).status_code == 200


@pytest.fixture
def no_cloud_token(monkeypatch):
    # BentoML's clients send $BENTO_CLOUD_API_KEY when given no token.
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)


def test_bentoml_sync_client_authenticates_with_its_token(server, keys, example, no_cloud_token):
    import bentoml
    from bentoml.exceptions import BentoMLException

    with bentoml.SyncHTTPClient(server.url, token=keys[1], timeout=60) as client:
        body = client.predict(example)
    assert len(body["predictions"]) == len(example["accidents"])
    for token in (None, keys[1] + "x"):
        client = bentoml.SyncHTTPClient(server.url, token=token, timeout=60)
        with client, pytest.raises(BentoMLException) as refused:
            client.predict(example)
        assert refused.value.error_code == 401


def test_bentoml_async_client_authenticates_with_its_token(server, keys, example, no_cloud_token):
    import asyncio

    import bentoml
    from bentoml.exceptions import BentoMLException

    async def predict(token: str | None) -> int:
        async with bentoml.AsyncHTTPClient(server.url, token=token, timeout=60) as client:
            try:
                body = await client.predict(example)
            except BentoMLException as error:
                return int(error.error_code)
        assert len(body["predictions"]) == len(example["accidents"])
        return 200

    assert [asyncio.run(predict(token)) for token in (keys[0], None, "wrong")] == [200, 401, 401]


# --- predictions ------------------------------------------------------------------------


def test_example_request_gets_one_prediction_per_record(client, example, metadata):
    response = client.post("/predict", json=example)
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == metadata["version"]
    assert body["unit"] == metadata["unit"]
    if metadata["unit"] == "accident":
        assert len(body["predictions"]) == len(example["accidents"]) >= 3
        assert [p["num_acc"] for p in body["predictions"]] == [
            a["num_acc"] for a in example["accidents"]
        ]
    for prediction in body["predictions"]:
        assert prediction["model_version"] == metadata["version"]
        assert (
            prediction["label"]
            == metadata["labels"][metadata["classes"].index(prediction["predicted_class"])]
        )
        assert list(prediction["probabilities"]) == metadata["labels"]
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
        assert prediction["probabilities"][prediction["label"]] == max(
            prediction["probabilities"].values()
        )


def test_http_probabilities_equal_the_model_on_500_test_rows(client, workspace, tables, metadata):
    keys = sample_test_split(500, seed=7, dataset=workspace / DATASET)
    response = client.post("/predict", json={"accidents": request_records(tables, keys)})
    assert response.status_code == 200
    bundle = load_model(workspace / PROMOTED_MODEL, workspace / PROMOTED_METADATA)
    dataset = pd.read_parquet(workspace / DATASET).set_index(schema.KEY)
    accidents = dataset.loc[keys].reset_index()
    if metadata["unit"] == "accident":
        matrix = features.build_features(accidents, bundle.feature_groups)
    else:
        users = pd.read_parquet(workspace / DATASET_USERS).set_index(schema.USER_KEY)
        ids = [p["user_id"] for p in response.json()["predictions"]]
        users = users.loc[ids].reset_index()
        matrix = features.build_features(accidents, bundle.feature_groups, "user", users)
    expected = bundle.predict_proba(matrix)
    assert len(expected) >= 500
    np.testing.assert_allclose(probabilities(response, bundle.labels), expected, rtol=0, atol=1e-9)


def test_fast_path_encodes_keys_and_walks_trees_as_sklearn_does(workspace):
    """The service's NumPy lookups of the location encodings and its tree walk give exactly
    the promoted pipeline's probabilities, on test rows whose keys were seen in training,
    are missing, or were never seen (the prior)."""
    predictor = inference.Predictor.from_directory(workspace / "models")
    assert predictor.trees is not None and predictor.encodings is not None
    keys = sample_test_split(300, seed=11, dataset=workspace / DATASET)
    accidents = pd.read_parquet(workspace / DATASET).set_index(schema.KEY).loc[keys]
    matrix = features.build_features(accidents.reset_index(), predictor.bundle.feature_groups)
    matrix = matrix[predictor.bundle.features]
    keys_in_model = [name for name in features.TARGET_ENCODED if name in matrix]
    assert keys_in_model
    matrix.loc[matrix.index[:100], keys_in_model] = -1.0  # never a commune or a cell
    matrix.loc[matrix.index[100:150], keys_in_model] = np.nan
    encode = predictor.bundle.model["encode"]
    x = matrix.to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(predictor.encodings.transform(x), encode.transform(matrix))
    expected = predictor.bundle.predict_proba(matrix)
    np.testing.assert_allclose(predictor.predict_proba(x), expected, rtol=0, atol=1e-12)
    unseen = encode.transform(matrix.iloc[:100])[:, : len(keys_in_model)]
    prior = encode.named_transformers_[features.TARGET].target_mean_
    assert (unseen == prior).all()


def test_unknown_open_code_reads_as_missing(client, metadata):
    """A catv code ONISR might add later is not an error: it is 'not filled in'."""
    unknown = client.post("/predict", json={"accidents": [record(vehicles=[{"catv": 44}])]})
    missing = client.post("/predict", json={"accidents": [record(vehicles=[{"catv": None}])]})
    assert unknown.status_code == missing.status_code == 200
    labels = metadata["labels"]
    np.testing.assert_array_equal(probabilities(unknown, labels), probabilities(missing, labels))


def _batch_sizes(server) -> tuple[float, float]:
    """(batches, batches of one request) scored so far, from BentoML's /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    count = re.search(
        r'^\S*adaptive_batch_size_count\{[^}]*method_name="predict"[^}]*\} (\S+)', text, re.M
    )
    ones = re.search(
        r'^\S*adaptive_batch_size_bucket\{le="1.0",[^}]*method_name="predict"[^}]*\} (\S+)',
        text,
        re.M,
    )
    assert count and ones, "no adaptive batching metrics"
    return float(count.group(1)), float(ones.group(1))


def test_concurrent_requests_are_batched_and_get_what_they_get_alone(
    server, keys, workspace, tables, metadata
):
    """Requests scored in one adaptive batch get bit-for-bit the answer their records get in a
    request of their own; an invalid request in the batch gets its own 422."""
    from concurrent.futures import ThreadPoolExecutor

    keys_ = sample_test_split(24, seed=5, dataset=workspace / DATASET)
    records = request_records(tables, keys_)
    labels = metadata["labels"]
    headers = {"X-API-Key": keys[0]}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as alone:
        whole = probabilities(alone.post("/predict", json={"accidents": records}), labels)
    bodies = [{"accidents": [record], "explain": i % 2 == 0} for i, record in enumerate(records)]
    bodies += [{"accidents": records[:12]}, {"accidents": records[12:]}]
    bodies.append({"accidents": [records[0], record(atm=12)]})  # invalid: record 1, atm
    before = _batch_sizes(server)

    def send(body: dict) -> httpx.Response:
        return httpx.post(f"{server.url}/predict", json=body, headers=headers, timeout=120)

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(send, bodies))
    after = _batch_sizes(server)
    for i, answer in enumerate(answers[:24]):
        assert answer.status_code == 200
        np.testing.assert_array_equal(probabilities(answer, labels), whole[i : i + 1])
        explained = answer.json()["predictions"][0]["explanation"]
        assert (explained is not None) == (i % 2 == 0)
    np.testing.assert_array_equal(probabilities(answers[24], labels), whole[:12])
    np.testing.assert_array_equal(probabilities(answers[25], labels), whole[12:])
    assert answers[26].status_code == 422
    assert answers[26].json()["detail"][0]["record"] == 1
    assert answers[26].json()["detail"][0]["field"] == "atm"
    batches, single_batches = after[0] - before[0], after[1] - before[1]
    assert batches < len(bodies)  # some requests shared a batch
    assert single_batches < batches


def test_overload_is_refused_at_once_instead_of_queued(server, keys, example):
    """More requests in flight than ``BAAC_MAX_CONCURRENCY`` (64): the excess is refused at
    once with 429 (BentoML's concurrency limit), or with 503 by the batch queue, rather than
    waiting; the service then answers normally. How many of the flood are served depends on
    the machine's speed (the batch queue refuses what it cannot start within max_latency), so
    the test asserts only that some are, and that refusals come before them."""
    import asyncio

    body = json.dumps({"accidents": example["accidents"]})
    headers = {"X-API-Key": keys[0], "Content-Type": "application/json"}

    async def one(client: httpx.AsyncClient) -> tuple[int, float]:
        started = time.perf_counter()
        response = await client.post("/predict", content=body)
        return response.status_code, time.perf_counter() - started

    async def flood(count: int) -> list[tuple[int, float]]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, limits=limits, timeout=120
        ) as client:
            return await asyncio.gather(*[one(client) for _ in range(count)])

    answers = asyncio.run(flood(160))
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 429, 503}
    refused = sorted(t for status, t in answers if status != 200)
    served = sorted(t for status, t in answers if status == 200)
    assert refused and served, statuses
    assert refused[len(refused) // 2] < served[len(served) // 2]  # not queued behind them
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/predict", content=body).status_code == 200


def test_explanations_add_up_to_the_probability_in_baac_terms(client, example, metadata):
    response = client.post("/predict", json={**example, "explain": True})
    assert response.status_code == 200
    # In plain text: the documentation's Markdown emphasis is not the answer's.
    sources = {feature.name: feature.source.replace("**", "") for feature in features.FEATURES}
    for prediction in response.json()["predictions"]:
        explanation = prediction["explanation"]
        assert explanation["label"] == prediction["label"]
        listed = explanation["contributions"]
        assert len(listed) == 5
        sizes = [abs(c["contribution"]) for c in listed]
        assert sizes == sorted(sizes, reverse=True)
        for contribution in listed:
            name, value = contribution["feature"], contribution["value"]
            assert contribution["baac"] == sources[name]
            described = contribution["description"]
            # In the user's words: a code by its BAAC label, a location by its risk and prior.
            if name in features.TARGET_ENCODED:
                assert re.fullmatch(r".+ risk (\d\.\d\d|unknown) \(prior \d\.\d\d\)", described)
                assert value is None or f"risk {value:.2f}" in described
            elif name in schema.CODES and value is not None:
                assert described.endswith(schema.CODES[name][int(value)]), described
        total = explanation["bias"] + sum(c["contribution"] for c in listed) + explanation["rest"]
        assert total == pytest.approx(prediction["probabilities"][prediction["label"]], abs=1e-12)
    plain = client.post("/predict", json=example).json()["predictions"]
    assert all(p["explanation"] is None for p in plain)
    assert [p["probabilities"] for p in plain] == [
        p["probabilities"] for p in response.json()["predictions"]
    ]


def test_tree_contributions_are_exact_for_every_class(workspace, tables, metadata):
    """bias + contributions = the forest's probability of every class, on 300 test rows."""
    from baac_severity.serving.explain import TreeContributions
    from baac_severity.serving.inference import Predictor, TreeEnsemble, to_tables
    from baac_severity.serving.schemas import PredictRequest

    predictor = Predictor.from_directory(workspace / "models")
    forest = predictor.bundle.model["model"]  # the Pipeline's estimator, after the encoders
    assert TreeEnsemble.supports(forest), "the promoted model is a forest"
    keys_ = sample_test_split(300, seed=9, dataset=workspace / DATASET)
    request = PredictRequest.model_validate({"accidents": request_records(tables, keys_)})
    matrix = predictor.features(to_tables(request.accidents))
    encoded = predictor.bundle.model["encode"].transform(matrix[predictor.bundle.features])
    x = np.asarray(encoded, dtype=np.float32)
    found = TreeContributions(forest)(x)
    expected = predictor.bundle.predict_proba(matrix)
    assert found.values.shape == (len(x), len(predictor.estimator_inputs), len(expected[0]))
    np.testing.assert_allclose(found.bias + found.values.sum(axis=1), expected, rtol=0, atol=1e-12)
    assert np.abs(found.values).max() > 0.01  # the features do move the probabilities


# --- invalid input ----------------------------------------------------------------------

INVALID = {
    "unknown field": ({"accidents": [record(speed=50)]}, 0, "speed"),
    "the outcome as input": (
        {"accidents": [MINIMAL, record(users=[{"catu": 1, "grav": 2}])]},
        1,
        "users[0].grav",
    ),
    "text for a code": ({"accidents": [record(lum="1")]}, 0, "lum"),
    "float for a code": ({"accidents": [record(lum=1.0)]}, 0, "lum"),
    "code outside its table": ({"accidents": [MINIMAL, MINIMAL, record(atm=12)]}, 2, "atm"),
    "open code out of range": (
        {"accidents": [record(vehicles=[{"catv": 7}, {"catv": 100}])]},
        0,
        "vehicles[1].catv",
    ),
    "missing required field": (
        {"accidents": [{k: v for k, v in MINIMAL.items() if k != "an"}]},
        0,
        "an",
    ),
    "bad time": ({"accidents": [record(hrmn="25:00")]}, 0, "hrmn"),
    "accident without vehicle": ({"accidents": [record(vehicles=[])]}, 0, "vehicles"),
    "empty list": ({"accidents": []}, None, "accidents"),
    "no accidents": ({}, None, "accidents"),
    "batch over 10,000": ({"accidents": [MINIMAL] * 10_001}, None, "accidents"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_input_is_a_422_naming_record_and_field(client, case):
    body, index, field = INVALID[case]
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()["detail"][0]
    assert (problem["record"], problem["field"]) == (index, field)


def test_malformed_json_is_a_422(client):
    response = client.post("/predict", content=b'{"accidents": [')
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_oversized_body_is_a_413_with_or_without_content_length(client):
    too_big = b" " * (TEST_MAX_BODY + 1)
    assert client.post("/predict", content=too_big).status_code == 413

    def streamed():  # no Content-Length: chunked transfer encoding
        for _ in range(4):
            yield b" " * (TEST_MAX_BODY // 3)

    assert client.post("/predict", content=streamed()).status_code == 413
    assert client.get("/readyz").status_code == 200


# --- metadata, progress, prediction log ---------------------------------------------------


def test_model_route_serves_the_promoted_metadata(client, metadata, keys):
    response = client.get("/model")
    assert response.status_code == 200
    body = response.json()
    for key in ("version", "git_sha", "experiment", "metrics", "data_snapshot", "features"):
        assert body[key] == metadata[key]
    assert {f["name"] for f in body["request_fields"]["vehicle"]} >= {"catv", "obs"}
    assert not any(key in response.text for key in keys)


def test_progress_route_serves_the_ingestion_progress(client, workspace):
    response = client.get("/data/progress")
    assert response.status_code == 200
    assert response.json() == json.loads((workspace / "metrics" / "progress.json").read_text())


def _log_lines(server) -> list[dict]:
    return [json.loads(line) for line in server.prediction_log_text().splitlines()]


def test_prediction_log_has_one_line_per_request_with_features_and_no_input(
    client, server, example
):
    """The log is BentoML's monitoring log (baac_severity/serving/prediction_logger.py): one JSON
    line per request, one list per model feature and per prediction column; no raw input, only its
    hash."""
    bodies, responses = [], []
    for accidents in (example["accidents"][:1], example["accidents"][1:], example["accidents"]):
        bodies.append(json.dumps({"accidents": accidents}).encode())
        response = client.post("/predict", content=bodies[-1])
        assert response.status_code == 200
        responses.append(response.json())
    ids = [answer["request_id"] for answer in responses]

    def ours() -> list[dict]:  # the log is written asynchronously, other tests' lines too
        return [line for line in _log_lines(server) if line["response_id"] in ids]

    deadline = time.monotonic() + 10
    while len(ours()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = ours()
    assert [line["response_id"] for line in lines] == ids  # one line each, in order
    assert [line["input_sha256"] for line in lines] == [
        hashlib.sha256(body).hexdigest() for body in bodies
    ]
    model = client.get("/model").json()
    for line, answer in zip(lines, responses, strict=True):
        assert line["model_version"] == answer["model_version"]
        assert line["latency_ms"] > 0
        assert {"timestamp", "request_id", "trace_id"} <= set(line)  # added by BentoML
        rows = len(answer["predictions"])
        assert line["predicted_class"] == [p["predicted_class"] for p in answer["predictions"]]
        for name in model["features"]:
            assert len(line[name]) == rows
        assert not {"accidents", "vehicles", "users", "num_acc"} & set(line)  # no raw input
    text = server.prediction_log_text()
    assert not any(a["num_acc"] in text for a in example["accidents"])


# --- start-up ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "refusing to start: no API key configured"),
        (
            {"API_KEY": f"real-key, {PLACEHOLDER_KEY}"},
            "API_KEY: Value error, holds the placeholder",
        ),
    ],
    ids=["no key", "the placeholder of .env.example"],
)
def test_refuses_to_start_without_a_real_key(home, settings, message):
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(free_port())]
    result = subprocess.run(
        [*command, "--host", "127.0.0.1"],
        cwd=ROOT,
        env=environment(home, **settings),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "real-key" not in result.stderr + result.stdout  # keys are never echoed
    if not settings:
        assert "ALLOW_NO_AUTH" in result.stderr


def test_env_example_holds_the_refused_placeholder():
    example = (ROOT / ".env.example").read_text()
    assert f"\nAPI_KEY={PLACEHOLDER_KEY}\n" in example


def test_settings_name_the_bad_variable(monkeypatch, tmp_path):
    """Typed settings: environment over .env, and a clear error naming each bad value."""
    env_file = tmp_path / ".env"
    env_file.write_text("BAAC_WORKERS=3\nMAX_BODY_BYTES=1000\nAPI_KEY=from-file\n")
    for name in ("BAAC_WORKERS", "MAX_BODY_BYTES", "API_KEY", "BAAC_MAX_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAX_BODY_BYTES", "2000")
    loaded = app_settings.load(env_file)
    assert (loaded.baac_workers, loaded.max_body_bytes) == (3, 2000)  # the environment wins
    assert loaded.keys() == (b"from-file",)
    monkeypatch.setenv("BAAC_WORKERS", "two")
    monkeypatch.setenv("BAAC_MAX_BATCH_SIZE", "1")
    with pytest.raises(app_settings.SettingsError) as bad:
        app_settings.load(env_file)
    assert "BAAC_WORKERS: Input should be a valid integer" in str(bad.value)
    assert "BAAC_MAX_BATCH_SIZE: Input should be greater than or equal to 2" in str(bad.value)


def test_allow_no_auth_starts_and_warns(home, tmp_path):
    server = start(environment(home, ALLOW_NO_AUTH="1"), tmp_path)
    try:
        assert httpx.get(f"{server.url}/model", timeout=30).status_code == 200
    finally:
        server.stop()
    assert "WITHOUT authentication" in server.stderr.read_text()


@pytest.fixture(scope="module")
def bento(home) -> Path:
    """``bentoml build`` of the project, into the test's BentoML home."""
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(ROOT), "--output", "tag"],
        cwd=ROOT,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    return home / "bentos" / name / version


def pinned(requirements: str) -> set[str]:
    """The package names pinned (``name==version``) in a requirements file."""
    return {
        line.split("==")[0].strip().lower() for line in requirements.splitlines() if "==" in line
    }


def test_bento_packages_code_model_and_at_most_40_pinned_packages(bento):
    for file in (
        "src/baac_severity/serving/service.py",
        "src/baac_severity/features.py",
        "env/python/requirements.txt",
    ):
        assert (bento / file).is_file(), file
    # Only the service and the layers below it: no dashboard, decisions, stages or test rigs.
    stages = ("data/stages", "modeling/stages", "monitoring/stages")
    for folder in ("dashboard", "decisions", "testing", *stages):
        assert not (bento / "src/baac_severity" / folder).exists(), folder
    assert "baac-severity:" in (bento / "bento.yaml").read_text()
    pins = pinned((bento / "env/python/requirements.txt").read_text())
    assert {"bentoml", "scikit-learn", "pandas", "pydantic-settings"} <= pins
    assert not pins & {"dvc", "mlflow", "streamlit", "hydra-core", "matplotlib", "pytest"}
    assert len(pins) <= 40, sorted(pins)


def uv_command() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run(["python3", "-m", "uv", "--version"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("uv is not installed")
    return ["python3", "-m", "uv"]


def test_the_bento_serves_from_its_own_requirements_alone(
    bento, home, client, keys, example, tmp_path
):
    """A fresh environment with only the bento's requirements (the serve group and BentoML)
    serves the bento, outside the repository, with the same answers as the full environment."""
    uv = uv_command()
    venv = tmp_path / "venv"
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    requirements = bento / "env" / "python" / "requirements.txt"
    install = [*uv, "pip", "install", "-q", "--python", str(python), "-r", str(requirements)]
    subprocess.run(install, check=True, timeout=300)
    listed = subprocess.run(
        [*uv, "pip", "freeze", "--python", str(python)], capture_output=True, text=True, check=True
    ).stdout
    assert not pinned(listed) & {"dvc", "mlflow", "streamlit", "hydra-core", "pytest"}
    served = start(
        environment(home, API_KEY=keys[0]),
        tmp_path / "logs",
        serve=(str(python), "-m", "bentoml", "serve", f"{bento.parent.name}:{bento.name}"),
        cwd=tmp_path,
    )
    try:
        answer = httpx.post(
            f"{served.url}/predict", json=example, headers={"X-API-Key": keys[0]}, timeout=60
        )
    finally:
        served.stop()
    assert answer.status_code == 200, answer.text
    expected = client.post("/predict", json=example).json()["predictions"]
    assert [p["probabilities"] for p in answer.json()["predictions"]] == [
        p["probabilities"] for p in expected
    ]


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv not installed")
def test_serving_requirements_are_the_serve_group_of_the_lock():
    export = ["uv", "export", "--frozen", "--no-hashes", "--no-emit-project"]
    exported = subprocess.run(
        [*export, "--only-group", "serve", "--prune", "bentoml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def pins(text: str) -> set[str]:
        return {line.strip() for line in text.splitlines() if "==" in line}

    assert pins((ROOT / "requirements-serve.txt").read_text()) == pins(exported), (
        "run `make serve_requirements`"
    )


# --- in process: a user-level model through BAAC_MODEL_TAG, the key from .env -------------


@pytest.fixture(scope="module")
def user_model_app(workspace, tmp_path_factory):
    """The service app, in this process, serving a small grav (user-level) model selected by
    BAAC_MODEL_TAG, with its key read from a .env file."""
    from omegaconf import OmegaConf

    from baac_severity.modeling import train
    from baac_severity.modeling.model_store import ModelBundle, save_model

    users = pd.read_parquet(workspace / DATASET_USERS)
    users = users[users["grav"].notna() & (users["dataset_split"] == "train")].head(4000)
    accidents = pd.read_parquet(workspace / DATASET)
    users = users.reset_index(drop=True)
    matrix = features.build_features(accidents, features.GROUPS, "user", users)
    target = users["grav"].map(schema.GRAV_TO_SEVERITY).to_numpy(dtype=int)
    # The training's own model: location encodings (4 classes: one column per key and class)
    # in front of the forest, and per-class decision weights.
    config = OmegaConf.create({"name": "random_forest", "n_estimators": 5, "random_state": 0})
    model = train.make_model(config).fit(matrix, target)
    classes = model.classes_
    labels = [schema.SEVERITY_LABELS[c] for c in classes]
    # Weights that favour the rarer classes, as decision.optimise may choose them.
    weights = np.array([1.0, 1.0, 2.0, 6.0])
    columns = matrix.dtypes.astype(str).to_dict()
    bundle = ModelBundle(
        model,
        list(matrix.columns),
        classes,
        labels,
        "grav",
        "user",
        features.GROUPS,
        features.feature_schema(columns, "user", features.GROUPS),
        decision_weights=weights,
    )
    files = tmp_path_factory.mktemp("user_model")
    save_model(model, files / MODEL_FILENAME)
    metadata = {"version": "user-test", **bundle.metadata()}
    (files / METADATA_FILENAME).write_text(json.dumps(metadata))
    key = secrets.token_urlsafe(16)
    env_file = files / ".env"
    env_file.write_text(f"API_KEY={key}\n")
    saved = dict(os.environ)
    os.environ.update(
        BENTOML_HOME=str(tmp_path_factory.mktemp("inprocess_home")),
        BENTOML_DO_NOT_TRACK="True",
        BAAC_MODEL_TAG="baac-severity-user-test:latest",
        BAAC_ENV_FILE=str(env_file),
        PREDICTION_LOG_DIR=str(files / "monitoring"),
    )
    os.environ.pop("API_KEY", None)
    try:
        import bentoml

        with bentoml.models.create("baac-severity-user-test") as stored:
            for name in (MODEL_FILENAME, METADATA_FILENAME):
                shutil.copyfile(files / name, Path(stored.path) / name)
        from starlette.testclient import TestClient

        from baac_severity.serving.service import BAACSeverity

        with TestClient(BAACSeverity.to_asgi()) as client:
            yield client, key, bundle
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_user_level_model_serves_one_prediction_per_road_user(user_model_app, tables, workspace):
    client, key, bundle = user_model_app
    keys = sample_test_split(40, seed=3, dataset=workspace / DATASET)
    records = request_records(tables, keys)
    response = client.post("/predict", json={"accidents": records}, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [(p["record"], p["user"]) for p in predictions] == [
        (i, j) for i, r in enumerate(records) for j in range(len(r["users"]))
    ]
    users = pd.read_parquet(workspace / DATASET_USERS).set_index(schema.USER_KEY)
    users = users.loc[[p["user_id"] for p in predictions]].reset_index()
    accidents = pd.read_parquet(workspace / DATASET).set_index(schema.KEY).loc[keys].reset_index()
    matrix = features.build_features(accidents, bundle.feature_groups, "user", users)
    expected = bundle.predict_proba(matrix)
    np.testing.assert_allclose(probabilities(response, bundle.labels), expected, atol=1e-9)
    # The label is the training's decision (weighted), not always the most probable class.
    decided = bundle.decide(expected)
    assert [p["label"] for p in predictions] == [bundle.labels[i] for i in decided]
    assert (decided != expected.argmax(axis=1)).any()


def test_key_from_env_file_is_required_in_process(user_model_app):
    client, key, _ = user_model_app
    assert client.get("/model").status_code == 401
    response = client.get("/model", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.json()["unit"] == "user"


def test_start_up_leaves_its_heap_out_of_garbage_collection(user_model_app):
    """A 1,000-accident request allocates enough objects to trigger full collections: they
    must not walk the model, modules and schemas again, nor run ten times as often (see
    ``baac_severity.serving.inference.settle_heap``)."""
    client, _, _ = user_model_app
    assert client.get("/readyz").status_code == 200  # the service (and its warm-up) has started
    assert gc.get_freeze_count() > 50_000
    assert gc.get_threshold()[2] == inference.FULL_COLLECTION_EVERY


# --- last: the server's own logs ----------------------------------------------------------


def test_keys_never_appear_in_the_server_logs(server, client, keys):
    client.post("/predict", json={"accidents": [MINIMAL]})
    httpx.get(f"{server.url}/model", headers={"X-API-Key": keys[1] + "typo"}, timeout=30)
    time.sleep(0.5)
    logs = server.logs()
    assert "401 GET /model: missing or invalid API key" in logs  # the log is captured
    assert "/predict" in logs
    assert not any(key in logs for key in keys)
    assert not any(key in server.prediction_log_text() for key in keys)
