"""The answers' shapes as pydantic models: what /docs.json shows, and what tests check.

The service renders answers itself (`PredictionContract.render` splices the model's JSON
fragments), so nothing validates them on the way out; tests validate real answers against
these models instead, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema


class ModelReference(BaseModel):
    tag: str
    problem_type: str
    eval_metric: str | None = None


class RowError(BaseModel):
    row: int
    field: str | None
    problem: str


class InputDrift(BaseModel):
    unseen_categories: dict[str, int] = Field(
        default_factory=dict, description="feature -> accepted values never seen in training"
    )
    out_of_range: dict[str, int] = Field(
        default_factory=dict, description="feature -> accepted numbers outside training range"
    )


class PredictionResponse(BaseModel):
    """Row i of `predictions` (and `probabilities`) answers row i of the request."""

    predictions: list[Any] = Field(description="null for a row listed in `errors` (skip mode)")
    probabilities: list[dict[str, float] | None] | None = Field(
        None, description="class -> probability per row; null for regression"
    )
    model: ModelReference
    timestamp: str = Field(description="ISO-8601, UTC")
    request_id: str
    ignored_fields: list[str] = Field(
        default_factory=list, description="request fields the model does not use"
    )
    errors: list[RowError] = Field(
        default_factory=list, description='rows not predicted (only with on_error="skip")'
    )
    input_drift: InputDrift = Field(default_factory=InputDrift)


class ProbabilityResponse(BaseModel):
    probabilities: list[dict[str, float] | None]
    classes: list[Any]
    model: ModelReference
    timestamp: str
    request_id: str
    ignored_fields: list[str] = Field(default_factory=list)
    errors: list[RowError] = Field(default_factory=list)
    input_drift: InputDrift = Field(default_factory=InputDrift)


class FeedbackResponse(BaseModel):
    """POST /feedback: the labelled rows' metrics beside the holdout's (AutoGluon's sign:
    higher is better; error metrics are negative)."""

    rows: int = Field(description="labelled rows the model scored and measured")
    eval_metric: str | None
    metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    errors: list[RowError] = Field(default_factory=list)
    model: ModelReference
    timestamp: str
    request_id: str


class Explanation(BaseModel):
    """One row's explanation: base_value + sum(contributions) (+ others) is the model's
    output for the explained class (its probability) or, for a regression, the value."""

    prediction: Any = Field(description="the model's prediction, as /predict answers it")
    explained_class: str | None = Field(
        None, description="classifiers: the class whose probability is explained (the "
        "predicted one unless the request names one); absent for a regression")
    base_value: float = Field(description="the output before any feature is known")
    contributions: dict[str, float] = Field(
        description="raw feature -> its contribution; with `top`, the k largest by "
        "magnitude, largest first")
    others: float | None = Field(
        None, description="with `top` only: the sum of the contributions left out")
    method: str = Field(description="tree_shap, tree_shap_margin_rescaled or "
                        "permutation_shap (README: Explanations)")


class ExplanationResponse(BaseModel):
    """Row i of `explanations` explains row i of the request."""

    explanations: list[Explanation | None] = Field(
        description="null for a row listed in `errors` (skip mode)")
    model: ModelReference
    timestamp: str = Field(description="ISO-8601, UTC")
    request_id: str
    ignored_fields: list[str] = Field(default_factory=list)
    errors: list[RowError] = Field(default_factory=list)
    input_drift: InputDrift = Field(default_factory=InputDrift)


ROWS_DESCRIPTION = "rows: feature name -> value"
LABELLED_ROWS_DESCRIPTION = "labelled rows: feature name -> value, and the label"


def request_rows_type(row_json_schema: dict[str, Any], examples: list[dict[str, Any]],
                      description: str = ROWS_DESCRIPTION) -> Any:
    """The `data` parameter as /docs.json shows it: this model's rows, with real examples.

    Validation stays ours (422 naming row and field), so the type BentoML checks is loose.
    """
    return Annotated[
        list[Any],
        WithJsonSchema({"type": "array", "items": row_json_schema}),
        Field(examples=[examples[:2]], description=description),
    ]
