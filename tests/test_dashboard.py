"""The Streamlit dashboard on recorded ``dvc exp show`` answers (no dvc run) and its
prediction form against a stand-in service on loopback (down, 401, success)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from streamlit.testing.v1 import AppTest

from baac_severity.config import ROOT
from baac_severity.serving import client as support
from baac_severity.serving.schemas import ACCIDENT_SPECS, PredictRequest
from baac_severity.testing.local_service import free_port

FIXTURES = ROOT / "tests" / "fixtures" / "exp_show"
DASHBOARD = str(ROOT / "baac_severity" / "dashboard" / "app.py")
API_KEY = "test-key"


def render(monkeypatch: pytest.MonkeyPatch, recorded: Path | None) -> AppTest:
    monkeypatch.setenv("BAAC_DASHBOARD_REPO", str(ROOT))
    if recorded is not None:
        monkeypatch.setenv("BAAC_DASHBOARD_EXP_SHOW", str(recorded))
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.run()
    return at


def problems(at: AppTest) -> list[str]:
    """Exceptions, and warnings of sections that could not render."""
    return [str(e.value) for e in at.exception] + [
        str(w.value) for w in at.warning if "Could not render" in str(w.value)
    ]


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_page_renders_every_recorded_answer(monkeypatch, fixture: Path) -> None:
    at = render(monkeypatch, fixture)
    assert problems(at) == []
    table = at.dataframe[0].value
    expected = json.loads(fixture.read_text())
    names = {e["name"] for b in expected for e in b.get("experiments") or []}
    assert names <= set(table["experiment"])


def test_page_survives_garbage(monkeypatch, tmp_path: Path) -> None:
    recorded = tmp_path / "odd.json"
    recorded.write_text(
        json.dumps(
            [
                {"rev": "workspace", "data": {"metrics": {"metrics/train.json": {"data": []}}}},
                {"rev": "0" * 40, "name": "main", "data": None, "experiments": [{"revs": [{}]}]},
            ]
        )
    )
    at = render(monkeypatch, recorded)
    assert problems(at) == []


def test_not_a_repository_is_an_error_message(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BAAC_DASHBOARD_REPO", str(tmp_path))
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.run()
    assert not at.exception
    assert "no DVC repository" in at.error[0].value


def test_dot_plot_zoomed_to_the_data(monkeypatch) -> None:
    """Close values must look apart: the metric's dot plot does not start at 0."""
    at = render(monkeypatch, FIXTURES / "success_failed.json")
    specs = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    dots = [spec for spec in specs if spec.get("mark", {}).get("type") == "point"]
    assert dots, f"no dot plot: {[i.value for i in at.info]} {[w.value for w in at.warning]}"
    assert dots[0]["encoding"]["x"]["scale"]["zero"] is False


def test_one_format_per_metric_and_signed_deltas(monkeypatch) -> None:
    at = render(monkeypatch, FIXTURES / "success_failed.json")
    assert problems(at) == []
    deltas = next(t.value for t in at.table if "test F1 weighted" in t.value.columns)
    cells = deltas["test ROC-AUC"].tolist()
    assert all(re.fullmatch(r"0\.\d{4}( \([+-]0\.\d{4}\))?", c) for c in cells), cells
    assert sum("(" in c for c in cells) == len(cells) - 1  # the reference has no delta
    ranking = next(t.value for t in at.table if "Δ vs main" in t.value.columns)
    assert all(re.fullmatch(r"[+-]0\.\d{4}", c) for c in ranking["Δ vs main"]), ranking


def test_no_experiment_beats_main_and_no_promote_command(monkeypatch) -> None:
    at = render(monkeypatch, FIXTURES / "success_failed.json")  # main beats both experiments
    assert problems(at) == []
    assert any("No experiment beats main on validation.roc_auc" in i.value for i in at.info), [
        i.value for i in at.info
    ]
    assert not any("promote" in c.value or "dvc exp apply" in c.value for c in at.code)
    ranking = next(t.value for t in at.table if "Δ vs main" in t.value.columns)
    assert ranking.index[0] == "main"


def test_an_experiment_that_beats_main_gets_the_promote_command(
    monkeypatch, tmp_path: Path
) -> None:
    records = json.loads((FIXTURES / "success_failed.json").read_text())
    for baseline in records:
        for experiment in baseline.get("experiments") or []:
            if experiment["name"] == "exp-depth8":  # recorded 0.7267, main 0.7297: now ahead
                data = experiment["revs"][0]["data"]["metrics"]["metrics/train.json"]["data"]
                data["validation"]["roc_auc"] = 0.75
    edited = tmp_path / "depth8_ahead.json"
    edited.write_text(json.dumps(records))
    at = render(monkeypatch, edited)
    assert problems(at) == []
    assert any("**exp-depth8** beats main on validation.roc_auc" in s.value for s in at.success)
    assert [c.value for c in at.code] == ["make promote EXP=exp-depth8"]


# --- prediction form ------------------------------------------------------------------


class FakeService(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeService.received.append({"path": self.path, "body": body})
        if self.headers.get("X-API-Key") != API_KEY:
            self._reply(401, {"detail": "invalid API key"})
        else:
            probabilities = {"not_severe": 0.39, "severe": 0.61}  # the service's answer shape
            prediction = {"record": 0, "label": "severe", "probabilities": probabilities}
            if body.get("explain"):
                contribution = {
                    "feature": "vma",
                    "description": "speed limit (km/h): 90",
                    "baac": "lieux.vma",
                    "value": 90.0,
                }
                prediction["explanation"] = {
                    "label": "severe",
                    "bias": 0.37,
                    "contributions": [contribution | {"contribution": 0.2}],
                    "rest": 0.04,
                }
            self._reply(200, {"predictions": [prediction]})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeService.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def predict(monkeypatch, url: str, key: str | None) -> AppTest:
    monkeypatch.setenv("BAAC_API_URL", url)
    if key is None:
        monkeypatch.delenv("API_KEY", raising=False)
    else:
        monkeypatch.setenv("API_KEY", key)
    at = render(monkeypatch, FIXTURES / "no_experiments.json")
    at.switch_page("views/predict.py").run()
    next(b for b in at.button if b.label == "Predict").click().run()
    assert problems(at) == []
    return at


def test_prediction_success(monkeypatch, service: str) -> None:
    at = predict(monkeypatch, service, API_KEY)
    assert any(s.value == "Predicted: **severe**, probability 61.0%" for s in at.success)
    request = FakeService.received[-1]
    assert request["path"] == "/predict"
    record = request["body"]["accidents"][0]
    # Every field of the request, with the example accident's values.
    assert {spec.name for spec in ACCIDENT_SPECS} | {"vehicles", "users"} == set(record)
    example = support.example_record()
    assert {k: v for k, v in record.items() if k not in ("vehicles", "users")} == {
        k: v for k, v in example.items() if k not in ("vehicles", "users")
    }
    assert record["vehicles"] == example["vehicles"] and record["users"] == example["users"]
    PredictRequest.model_validate(request["body"])  # what the service accepts
    assert request["body"]["explain"] is True
    shown = at.table[-1].value  # the last table of the page
    assert list(shown.index) == ["speed limit (km/h): 90"]
    assert list(shown["effect on the probability"]) == ["+0.2000"]


def test_prediction_wrong_key_says_401(monkeypatch, service: str) -> None:
    at = predict(monkeypatch, service, "wrong")
    assert any("401" in e.value and "API_KEY" in e.value for e in at.error)


def test_prediction_service_down(monkeypatch) -> None:
    port = free_port()  # nothing listens there
    at = predict(monkeypatch, f"http://127.0.0.1:{port}", API_KEY)
    assert any("down or unreachable" in e.value for e in at.error)


def test_example_is_the_most_complete_real_accident() -> None:
    example = support.example_record()
    accidents = json.loads(support.EXAMPLE_REQUEST.read_text())["accidents"]
    assert example in accidents and example["an"] >= 2019  # users' attributes exist since 2019
    assert example["users"][0]["catu"] is not None


def test_fallback_record_is_scored_by_the_real_service(monkeypatch, tmp_path, server, keys) -> None:
    """Without baac_severity/serving/predict_request.json the form starts from ``default_record``:
    the real service (the session ``server``) scores it, and the page shows the probability."""
    monkeypatch.setattr(support, "EXAMPLE_REQUEST", tmp_path / "absent.json")
    assert support.example_record() == support.default_record()
    at = predict(monkeypatch, server.url, keys[0])
    assert not at.error, [e.value for e in at.error]
    shown = [s.value for s in at.success]
    assert any(re.fullmatch(r"Predicted: \*\*\w+\*\*, probability \d+\.\d%", s) for s in shown)
