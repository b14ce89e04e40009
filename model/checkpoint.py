"""Opt-in checkpoints of a running model (``--checkpoint-every K``) and ``--resume``.

A checkpoint is written inside the run's hidden partial directory, after the writer has closed
every table's segment (:meth:`weishang.model.recorder.RunWriter.checkpoint`), through a
temporary file renamed into place: ``checkpoint.pkl`` holds the tick, the resolved config, the
model's state (:meth:`CommerceModel.state_dict`), the running totals and the closed segments
with their row counts and digests. So a checkpoint survives whatever ends the process after it,
SIGKILL and the OOM killer included. Resuming rebuilds the population from the config
(deterministic), restores the state, checks every recorded segment against its digest, drops
anything written after the checkpoint, and goes on: the finished run is identical to one that
was never interrupted (tests compare them, after SIGTERM and after SIGKILL).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from .recorder import FORMAT_VERSION, RunDirectoryError

CHECKPOINT = "checkpoint.pkl"


def save(partial_dir: Path, payload: dict[str, Any]) -> None:
    tmp = partial_dir / f".{CHECKPOINT}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump({"format_version": FORMAT_VERSION, **payload}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, partial_dir / CHECKPOINT)


def find(final_dir: Path) -> Path | None:
    """The newest hidden partial directory of ``final_dir`` that holds a checkpoint."""
    candidates = [p for p in final_dir.parent.glob(f".{final_dir.name}.partial-*") if (p / CHECKPOINT).is_file()]
    return max(candidates, key=lambda p: (p / CHECKPOINT).stat().st_mtime) if candidates else None


def load(partial_dir: Path, config_json: str) -> dict[str, Any]:
    """Read a checkpoint; a damaged one, another format or another config is a clear error."""
    path = partial_dir / CHECKPOINT
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError) as exc:
        raise RunDirectoryError(f"checkpoint {str(path)!r} is damaged ({type(exc).__name__}); "
                                f"delete {str(partial_dir)!r} and start the run again") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise RunDirectoryError(f"checkpoint {str(path)!r} was written by another weishang version")
    missing = {"tick", "config_json", "model", "totals", "segments"} - set(payload)
    if missing:
        raise RunDirectoryError(f"checkpoint {str(path)!r} is damaged (it lacks {', '.join(sorted(missing))}); "
                                f"delete {str(partial_dir)!r} and start the run again")
    if not _complete_state(payload["model"]):
        raise RunDirectoryError(f"checkpoint {str(path)!r} is damaged (the model's state is incomplete); "
                                f"delete {str(partial_dir)!r} and start the run again")
    if payload.get("config_json") != config_json:
        raise RunDirectoryError(f"checkpoint {str(path)!r} belongs to a different config; resume with the same "
                                f"scenario, --set and --seed, or delete it")
    return payload


def _complete_state(state: Any) -> bool:
    """Whether a saved model state holds every part the model declares (see
    :meth:`~weishang.model.commerce.CommerceModel.state_dict`)."""
    from .commerce import TICK_PLAN  # noqa: PLC0415  (the model is imported only to resume)
    from .merchant import MerchantTable  # noqa: PLC0415

    if not isinstance(state, dict) or not {"steps", "random", "rng", "merchants", "mechanisms", "phase_seconds",
                                           "collected"} <= set(state):
        return False
    if not isinstance(state["merchants"], dict) or set(MerchantTable.STATE) - set(state["merchants"]):
        return False
    mechanisms = state["mechanisms"]
    return isinstance(mechanisms, dict) and all(
        isinstance(mechanisms.get(m.name), dict) and not set(m.STATE) - set(mechanisms[m.name]) for m in TICK_PLAN)
