"""`phasefit serve`: an HTTP server (FastAPI + uvicorn) for a trained model, PyTorch or ONNX Runtime back end.

``GET /health``; ``POST /predict`` with ``{"texts": [...]}`` answers
``{"predictions": [{"label": ..., "probabilities": {label: p}}]}`` (a multi-label model: ``"labels": [...]``). Concurrent requests are
batched: a single worker task takes the waiting requests' texts together (up to ``max_batch``
texts, after at most ``batch_wait_ms``) and runs the model once, in a thread, so the event loop
keeps answering. Bad requests get a 4xx with a message (422 for malformed JSON or wrong types, 413
for too many or too long texts): never a 500, never a dead worker.
"""

# No `from __future__ import annotations` here: FastAPI reads the request models from the real annotations.

import asyncio
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelFilesError

ENVIRONMENT_PREFIX = "PHASEFIT_SERVE_"


@dataclass(frozen=True)
class ServeOptions:
    model_dir: str
    onnx: bool = False
    max_texts: int = 64
    max_chars: int = 5_000
    max_batch: int = 64
    batch_wait_ms: float = 5.0

    def to_environment(self) -> dict[str, str]:
        """For uvicorn's worker processes, which build the app from the environment."""
        return {ENVIRONMENT_PREFIX + name.upper(): str(value) for name, value in self.__dict__.items()}

    @classmethod
    def from_environment(cls) -> "ServeOptions":
        read = {name: os.environ[ENVIRONMENT_PREFIX + name.upper()] for name in cls.__dataclass_fields__ if ENVIRONMENT_PREFIX + name.upper() in os.environ}
        return cls(
            model_dir=read["model_dir"],
            onnx=read.get("onnx", "False") == "True",
            max_texts=int(read.get("max_texts", 64)),
            max_chars=int(read.get("max_chars", 5000)),
            max_batch=int(read.get("max_batch", 64)),
            batch_wait_ms=float(read.get("batch_wait_ms", 5.0)),
        )


def load_backend(options: ServeOptions) -> Any:
    """A PhaseFitModel folder, or (``onnx``, or a folder with phasefit_onnx.json) one written by `phasefit export`."""
    folder = Path(options.model_dir)
    if not folder.is_dir():
        raise ModelFilesError(f"{folder}: no such model folder.")
    if options.onnx or (folder / "phasefit_onnx.json").is_file():
        from .export import OnnxClassifier

        return OnnxClassifier(folder)
    from ..model import PhaseFitModel

    return PhaseFitModel.from_pretrained(folder)


class Batcher:
    """Collects the texts of concurrent requests and runs the model on them together."""

    def __init__(self, backend: Any, max_batch: int, wait_seconds: float) -> None:
        self.backend, self.max_batch, self.wait_seconds = backend, max_batch, wait_seconds
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def predict(self, texts: list[str]) -> Any:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            size = len(waiting[0][0])
            deadline = loop.time() + self.wait_seconds
            while size < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                waiting.append(item)
                size += len(item[0])
            texts = [text for request, _ in waiting for text in request]
            try:
                probabilities = await loop.run_in_executor(None, self.backend.predict_proba, texts)
            except Exception as error:  # the model failed: every waiting request hears it, the worker lives on
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for request, future in waiting:
                if not future.done():
                    future.set_result(probabilities[start : start + len(request)])
                start += len(request)


def create_app(options: ServeOptions, backend: Any | None = None):
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, Field, StrictStr

    backend = backend if backend is not None else load_backend(options)
    labels = list(backend.labels)
    batcher = Batcher(backend, options.max_batch, options.batch_wait_ms / 1000)

    class PredictRequest(BaseModel):
        texts: list[StrictStr] = Field(min_length=1, description=f"Texts to label: 1 to {options.max_texts}, each at most {options.max_chars} characters.")

    multi_label = bool(getattr(backend, "multi_label", False))
    thresholds = list(getattr(backend, "thresholds", [])) if multi_label else []

    class Prediction(BaseModel):
        label: str | None = None
        labels: list[str] | None = Field(default=None, description="A multi-label model's labels at or above their thresholds.")
        probabilities: dict[str, float]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]

    class Health(BaseModel):
        status: str
        labels: list[str]
        backend: str

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="phasefit", description="A phasefit text classifier.", lifespan=lifespan)
    kind = "onnx" if type(backend).__name__ == "OnnxClassifier" else "pytorch"

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(status="ok", labels=labels, backend=kind)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses={413: {"description": "Too many or too long texts"}, 422: {"description": "Malformed request"}},
    )
    async def predict(request: PredictRequest) -> PredictResponse:
        if len(request.texts) > options.max_texts:
            raise HTTPException(413, f"{len(request.texts)} texts in one request; at most {options.max_texts} (--max-texts).")
        too_long = next((i for i, text in enumerate(request.texts) if len(text) > options.max_chars), None)
        if too_long is not None:
            raise HTTPException(413, f"texts[{too_long}] has {len(request.texts[too_long])} characters; at most {options.max_chars} (--max-chars).")
        try:
            probabilities = await batcher.predict(request.texts)
        except Exception as error:
            raise HTTPException(503, f"the model could not label this request ({type(error).__name__}); try again.") from None
        predictions = []
        for row in probabilities:
            scores = {label: round(float(p), 6) for label, p in zip(labels, row)}
            if multi_label:
                predictions.append(Prediction(labels=[label for label, p, t in zip(labels, row, thresholds) if p >= t], probabilities=scores))
            else:
                predictions.append(Prediction(label=labels[int(row.argmax())], probabilities=scores))
        return PredictResponse(predictions=predictions)

    return app


def app_from_environment():
    """The app factory uvicorn's worker processes call (``--workers`` > 1)."""
    return create_app(ServeOptions.from_environment())


def serve(options: ServeOptions, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise ConfigError("phasefit serve needs fastapi and uvicorn (pip install 'phasefit[serve]').") from None
    if workers > 1:
        os.environ.update(options.to_environment())
        load_backend(options)  # fail here, with a message, rather than in every worker
        uvicorn.run("phasefit.deploy.serve:app_from_environment", factory=True, host=host, port=port, workers=workers, log_level="warning")
    else:
        uvicorn.run(create_app(options), host=host, port=port, log_level="warning")
