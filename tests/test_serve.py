"""`phasefit serve`: answers, batching, every malformed request a 4xx, and 200 concurrent requests answered."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import toy_rows
from test_cli import fast_flags
from typer.testing import CliRunner

from phasefit import PhaseFitModel
from phasefit.cli import app as cli

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from phasefit.deploy.serve import ServeOptions, create_app  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    data = folder / "train.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in toy_rows({"sport": 12, "weather": 12}, seed=3)))
    result = CliRunner().invoke(cli, ["train", str(data), *fast_flags(tiny_model), "--recipe", "ft", "--output", str(folder / "model")])
    assert result.exit_code == 0, result.output
    return folder / "model"


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(ServeOptions(str(model_dir), max_texts=4, max_chars=50)), raise_server_exceptions=False) as client:
        yield client


def test_health_and_predict_match_the_model(client, model_dir):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["labels"] == ["sport", "weather"] and health["backend"] == "pytorch"
    texts = ["the team won the match", "rain and snow today"]
    answer = client.post("/predict", json={"texts": texts})
    assert answer.status_code == 200
    model = PhaseFitModel.from_pretrained(model_dir)
    expected = model.predict_proba(texts)
    for prediction, row in zip(answer.json()["predictions"], expected):
        assert prediction["label"] == model.labels[int(row.argmax())]
        assert prediction["probabilities"]["sport"] == pytest.approx(float(row[0]), abs=1e-5)


@pytest.mark.parametrize(
    "body, status",
    [
        (b"{not json", 422),
        (b"[1, 2]", 422),
        (b"{}", 422),
        (b'{"texts": "one string"}', 422),
        (b'{"texts": []}', 422),
        (b'{"texts": ["ok", 3]}', 422),
        (b'{"texts": [null]}', 422),
        (json.dumps({"texts": ["a"] * 5}).encode(), 413),
        (json.dumps({"texts": ["x" * 51]}).encode(), 413),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_message_and_the_server_lives_on(client, body, status):
    answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status and answer.json()["detail"]
    assert client.post("/predict", json={"texts": ["rain"]}).status_code == 200


def test_the_openapi_schema_describes_predict(client):
    schema = client.get("/openapi.json").json()
    assert {"/health", "/predict"} <= set(schema["paths"])
    assert "413" in schema["paths"]["/predict"]["post"]["responses"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_running_server_answers_200_concurrent_requests(model_dir):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "phasefit", "serve", str(model_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.2)

        def ask(i: int) -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict",
                data=json.dumps({"texts": [f"the team won {i}", "rain"]}).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status if len(json.loads(answer.read())["predictions"]) == 2 else -1

        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(ask, range(200)))
        assert statuses.count(200) == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_names_a_folder_that_is_not_a_model(tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "absent")])
    assert result.exit_code == 2 and "no such model folder" in result.output
