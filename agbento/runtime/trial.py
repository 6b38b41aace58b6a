"""A trial load: does a stored version load and score its example rows, as a server's start
would? Asked before a version takes a stage (`StageRegistry.promote(check=...)`), so that a
promotion never hands servers a model they cannot start with."""

from __future__ import annotations

from agbento.models.store import ModelCard, ModelIntegrityError
from agbento.runtime.inference import TabularRuntime


class UnservableModelError(RuntimeError):
    """The stored files are intact but do not make a model that scores its examples."""


def trial_load(card: ModelCard, allow_version_mismatch: bool = False) -> None:
    """Verify, load and warm up `card` as `TabularModel` does at start, then let it go."""
    try:
        TabularRuntime.ready_to_serve(card, allow_version_mismatch)
    except ModelIntegrityError:
        raise  # its own message says what is wrong with the files
    except Exception as exc:  # noqa: BLE001 - whatever breaks the load breaks a server's too
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise UnservableModelError(
            f"model {card.tag} does not load and score its example rows "
            f"({type(exc).__name__}: {detail}); servers could not start with it"
        ) from exc
