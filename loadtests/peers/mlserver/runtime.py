"""MLServer custom inference runtime for the stored TabularPredictor: an `MLModel` that decodes
the V2 request with MLServer's PandasCodec and encodes the answer frame with it. Batching
(adaptive) and worker processes (parallel inference) are MLServer's, set in
model-settings.json and settings.json beside this file."""

from mlserver import MLModel
from mlserver.codecs import PandasCodec
from mlserver.types import InferenceRequest, InferenceResponse
from peer_model import load_predictor, score


class AutoGluonRuntime(MLModel):
    async def load(self) -> bool:
        self._predictor = load_predictor(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = self.decode_request(payload, default_codec=PandasCodec)
        return PandasCodec.encode_response(self.name, score(self._predictor, rows),
                                           use_bytes=False)
