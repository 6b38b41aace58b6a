"""KServe's Python ModelServer with a `kserve.Model` around the stored TabularPredictor: the
custom-model recipe of KServe's docs. It answers V1 (`/v1/models/NAME:predict`, instances as
row objects) and V2 (`/v2/models/NAME/infer`, one tensor per column, content type "pd"),
through KServe's own codecs (`get_predict_input`, `get_predict_response`).

    python kserve_server.py --model_name NAME --model_dir PREDICTOR_DIR --workers 2 \
        --http_port 8080 --grpc_port 8081
"""

import argparse

import kserve
from kserve.utils.utils import get_predict_input, get_predict_response
from peer_model import load_predictor, score


class AutoGluonModel(kserve.Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self) -> bool:
        self.predictor = load_predictor(self.model_dir)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        rows = get_predict_input(payload)
        return get_predict_response(payload, score(self.predictor, rows), self.name)


parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
parser.add_argument("--model_dir", required=True, help="the stored predictor's folder")
args, _ = parser.parse_known_args()

if __name__ == "__main__":
    kserve.ModelServer().start([AutoGluonModel(args.model_name, args.model_dir)])
