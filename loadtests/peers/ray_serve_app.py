"""Ray Serve: one deployment holding the stored TabularPredictor, a replica per core, and
`@serve.batch` merging concurrent requests into one model call (Ray Serve's dynamic request
batching guide). Bodies and answers as agbento's /predict: {"data": [row, ...]} in,
{"predictions": [...], "probabilities": [...]} out.

    PEER_PREDICTOR=DIR PEER_PORT=8000 PEER_WORKERS=2 python ray_serve_app.py
"""

import os
import signal
import sys

import pandas as pd
from peer_model import load_predictor, score
from ray import serve
from starlette.requests import Request

MAX_BATCH_SIZE = 64
BATCH_WAIT_TIMEOUT_S = 0.005
NO_ACCESS_LOG = {"enable_access_log": False}


@serve.deployment(num_replicas=int(os.environ.get("PEER_WORKERS", "2")),
                  # the batching guide: a replica must take at least a batch's worth at once
                  max_ongoing_requests=2 * MAX_BATCH_SIZE, logging_config=NO_ACCESS_LOG)
class AutoGluonDeployment:
    def __init__(self, path: str) -> None:
        self.predictor = load_predictor(path)

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
    async def score_batch(self, frames: list[pd.DataFrame]) -> list[dict]:
        answer = score(self.predictor, pd.concat(frames, ignore_index=True))
        answers, start = [], 0
        for frame in frames:
            part = answer.iloc[start:start + len(frame)]
            start += len(frame)
            classes = part.drop(columns="prediction")
            answers.append({"predictions": part["prediction"].tolist(),
                            "probabilities": classes.to_dict(orient="records")
                            if len(classes.columns) else None})
        return answers

    async def __call__(self, request: Request) -> dict:
        if request.method == "GET":  # readiness: the deployment answers
            return {"status": "ready"}
        body = await request.json()
        return await self.score_batch(pd.DataFrame(body["data"]))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through ray's own shutdown
    serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["PEER_PORT"])},
                logging_config=NO_ACCESS_LOG)
    serve.run(AutoGluonDeployment.bind(os.environ["PEER_PREDICTOR"]), blocking=True,
              logging_config=NO_ACCESS_LOG)
