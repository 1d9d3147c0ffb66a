"""The prediction service end to end: a real ``bentoml serve`` over loopback HTTP.

The server (``tests/conftest.py``) is started once per session with its own BentoML home, into
which the promoted model is imported (``tests/service_helpers.py``). A fresh clone has no
promoted model: the small real pipeline is run first. In-process tests (``TestClient``) cover
a user-level model served through ``BAAC_MODEL_TAG`` and the ``.env`` key set-up.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import os
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

from app import inference
from app.examples.make_example import EXAMPLE, load_tables, request_records, sample_test_split
from pipeline import features, schema
from pipeline.model_store import load_model
from pipeline.paths import DATASET, DATASET_USERS
from tests.service_helpers import ROOT, SERVICE, TEST_MAX_BODY, environment, free_port, start

pytestmark = pytest.mark.slow
MINIMAL = {"an": 2024, "mois": 6, "vehicles": [{"catv": 7}], "users": [{"catu": 1}]}


# --- fixtures (workspace, home, keys, server, client: tests/conftest.py) ------------------


@pytest.fixture(scope="module")
def metadata(workspace) -> dict:
    return json.loads((workspace / "models" / "metadata.json").read_text())


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


@pytest.mark.parametrize("path", ["/predict", "/model", "/data/progress", "/schema.json", "/x"])
def test_routes_need_the_key(server, keys, path):
    method = "POST" if path == "/predict" else "GET"
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": keys[0] + "x"}):
        response = httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30)
        assert response.status_code == 401
        assert response.json() == {"error": "missing or invalid API key"}


def test_every_configured_key_is_accepted(server, keys):
    for key in keys:
        response = httpx.get(f"{server.url}/model", headers={"X-API-Key": key}, timeout=30)
        assert response.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json"])
def test_probes_metrics_and_docs_are_open(server, path):
    assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200


def test_openapi_declares_the_api_key_scheme(server):
    document = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    scheme = document["components"]["securitySchemes"]["ApiKeyAuth"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert document["security"] == [{"ApiKeyAuth": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert {"/predict", "/model", "/data/progress"} <= set(document["paths"])
    assert "422" in document["paths"]["/predict"]["post"]["responses"]


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
    bundle = load_model(workspace / "models" / "model.joblib")
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
    np.testing.assert_allclose(predictor.predict_proba(matrix), expected, rtol=0, atol=1e-12)
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


def _log_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prediction_log_has_one_line_per_request_and_no_input(client, server, example):
    before = len(_log_lines(server.prediction_log))
    bodies = []
    for accidents in (example["accidents"][:1], example["accidents"][1:], example["accidents"]):
        bodies.append(json.dumps({"accidents": accidents}).encode())
        response = client.post("/predict", content=bodies[-1])
        assert response.status_code == 200
    deadline = time.monotonic() + 10
    while len(_log_lines(server.prediction_log)) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = _log_lines(server.prediction_log)[before:]
    assert len(lines) == 3
    assert [line["input_sha256"] for line in lines] == [
        hashlib.sha256(body).hexdigest() for body in bodies
    ]
    expected = {
        "request_id",
        "timestamp",
        "model_version",
        "records",
        "predictions",
        "latency_ms",
        "predicted_classes",
        "input_sha256",
    }
    for line, accidents in zip(lines, (1, 3, 4), strict=True):
        assert set(line) == expected
        assert line["records"] == accidents == len(line["predicted_classes"])
        assert line["latency_ms"] > 0
    text = server.prediction_log.read_text()
    assert not any(a["num_acc"] in text for a in example["accidents"])
    assert "vehicles" not in text


# --- start-up ---------------------------------------------------------------------------


def test_refuses_to_start_without_a_key(home):
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(free_port())]
    result = subprocess.run(
        [*command, "--host", "127.0.0.1"],
        cwd=ROOT,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != 0
    assert "refusing to start: no API key configured" in result.stderr
    assert "ALLOW_NO_AUTH" in result.stderr


def test_allow_no_auth_starts_and_warns(home, tmp_path):
    server = start(environment(home, ALLOW_NO_AUTH="1"), tmp_path)
    try:
        assert httpx.get(f"{server.url}/model", timeout=30).status_code == 200
    finally:
        server.stop()
    assert "WITHOUT authentication" in server.stderr.read_text()


def test_bentoml_build_packages_code_requirements_and_model(home, workspace):
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
    bento = home / "bentos" / name / version
    for file in ("src/app/service.py", "src/pipeline/features.py", "env/python/requirements.txt"):
        assert (bento / file).is_file(), file
    assert "scikit-learn==" in (bento / "env/python/requirements.txt").read_text()
    manifest = (bento / "bento.yaml").read_text()
    assert "baac-severity:" in manifest


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv not installed")
def test_serving_requirements_match_the_lock():
    exported = subprocess.run(
        ["uv", "export", "--frozen", "--no-hashes", "--no-dev", "--no-emit-project"],
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

    from pipeline import train
    from pipeline.model_store import ModelBundle, save_model

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
    bundle = ModelBundle(
        model,
        list(matrix.columns),
        classes,
        labels,
        "grav",
        "user",
        features.GROUPS,
        decision_weights=weights,
    )
    files = tmp_path_factory.mktemp("user_model")
    save_model(bundle, files / "model.joblib")
    metadata = {
        "version": "user-test",
        "target": "grav",
        "unit": "user",
        "features": bundle.features,
        "classes": [int(c) for c in classes],
        "labels": bundle.labels,
    }
    (files / "metadata.json").write_text(json.dumps(metadata))
    key = secrets.token_urlsafe(16)
    env_file = files / ".env"
    env_file.write_text(f"API_KEY={key}\n")
    saved = dict(os.environ)
    os.environ.update(
        BENTOML_HOME=str(tmp_path_factory.mktemp("inprocess_home")),
        BENTOML_DO_NOT_TRACK="True",
        BAAC_MODEL_TAG="baac-severity-user-test:latest",
        BAAC_ENV_FILE=str(env_file),
        PREDICTION_LOG_PATH=str(files / "predictions.jsonl"),
    )
    os.environ.pop("API_KEY", None)
    try:
        import bentoml

        with bentoml.models.create("baac-severity-user-test") as stored:
            for name in ("model.joblib", "metadata.json"):
                shutil.copyfile(files / name, Path(stored.path) / name)
        from starlette.testclient import TestClient

        from app.service import BAACSeverity

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
    ``app.inference.settle_heap``)."""
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
    assert not any(key in server.prediction_log.read_text() for key in keys)
