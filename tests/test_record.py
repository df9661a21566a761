"""The trial record's typed parts: result files of the previous code load into them and write back unchanged."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from gbench.errors import GbenchError
from gbench.run.budget import Consumed
from gbench.run.record import (Batched, Evaluation, LossPoint, Parallel, Protocol, Runtime, RuntimeRecord, Target,
                               TrialResult)
from gbench.run.results import dumps, read_json

DATA = Path(__file__).parent / "data"
# results-v1: a batched group and a failed trial; results-v1-parts: an image trial whose metric could not run
# (no Inception weights) with a target that measured nothing, delta-gan's measured target, an EMA G's "raw."
# metrics, a trial trained alone, a group in a process worker. Both written by gbench before the typed parts
# (schema 1, commit 81fd31a for results-v1-parts).
OLD_FILES = sorted((DATA / "results-v1" / "trials").glob("*.json")) + sorted((DATA / "results-v1-parts").glob("*.json"))


def old(name: str) -> TrialResult:
    path = next(p for p in OLD_FILES if p.stem == name)
    return TrialResult.from_json(read_json(path))


@pytest.mark.parametrize("path", OLD_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_an_old_result_file_reads_into_typed_parts_and_writes_back_byte_for_byte(path: Path):
    result = TrialResult.from_json(read_json(path))
    assert isinstance(result.runtime, RuntimeRecord) and isinstance(result.runtime.settings, Runtime)
    assert isinstance(result.protocol, Protocol)
    if result.trained:
        assert isinstance(result.consumed, Consumed) and result.evaluations and result.loss_curve
        assert all(isinstance(e, Evaluation) for e in result.evaluations)
        assert all(isinstance(p, LossPoint) for p in result.loss_curve)
        assert result.target is None or isinstance(result.target, Target)
        assert result.protocol.metrics and result.evaluations[-1].metrics == result.metrics
    assert dumps(result.to_json()) + "\n" == path.read_text()
    assert TrialResult.from_json(json.loads(path.read_text())) == result


def test_the_parts_hold_what_the_old_files_say():
    image = old("image-delta-gan-no-weights")
    assert image.data_kind == "image" and "Inception weights" in image.evaluations[0].metric_errors["fidelity"]
    assert image.target.note.startswith("add the classifier-jsd metric") and image.target.jsd_p_pdelta is None
    assert image.runtime.batched == Batched(2, (0, 1), "loop") and image.runtime.parallel == Parallel(1, 1)

    delta = old("toy-delta-gan-batched").target
    assert delta.jsd == 0.1 and set(delta.details) == {"eps", "guarantee", "reference_weight"}
    assert delta.jsd_p_pdelta_ci[0] <= delta.jsd_p_pdelta <= delta.jsd_p_pdelta_ci[1] and delta.jsd_pdelta_pg > 0

    ema = old("toy-sgan-ema-batched")
    assert ema.generator == "ema" and all("raw.jsd_bits" in e.metrics for e in ema.evaluations)
    assert [(e.g_step, e.fraction) for e in ema.evaluations] == [(20, 0.5), (40, 1.0)]
    assert ema.consumed.batched_device_seconds == pytest.approx(2 * ema.consumed.device_seconds)

    alone = old("toy-deligan-alone")
    assert alone.runtime.batched is None and alone.runtime.settings.batch is False
    assert (alone.runtime.executor, alone.runtime.parallel) == ("local", Parallel(1, 1))
    assert alone.consumed.batched_device_seconds is None and "batched_device_seconds" not in alone.to_json()["consumed"]
    assert alone.consumed.gradient_evals == alone.consumed.d_real_images + alone.consumed.g_images == 2 * 40 * 64
    assert old("toy-sgan-process").runtime.parallel == Parallel(2, 1)

    failed = old("sgan-seed2")  # its worker never reported: the executor's name, not its settings
    assert failed.runtime.executor == "local" and failed.runtime.parallel is None
    assert failed.consumed is None and failed.protocol.metrics is None and failed.evaluations == ()


def _set(data: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the key at dotted path ``where`` (list items by index) set, or deleted if None."""
    data = copy.deepcopy(data)
    *path, last = where.split(".")
    node: Any = data
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("where, value, message", [
    ("runtime.nodes", 3, "unknown field 'runtime.nodes'"),
    ("runtime.device", None, r"no runtime\.device"),
    ("protocol.eval_seed", None, r"no protocol\.eval_seed"),
    ("protocol.metric", {}, "unknown field 'protocol.metric'"),
    ("evaluations.1.g_step", None, r"no evaluations\[\]\.g_step"),
    ("evaluations.0.samples", 10, r"unknown field 'evaluations\[\]\.samples'"),
    ("consumed.g_steps", None, r"no consumed\.g_steps"),
    ("consumed.steps", 1, "unknown field 'consumed.steps'"),
    ("loss_curve.0.d_loss", None, r"no loss_curve\[\]\.d_loss"),
    ("target.jsd", None, r"no target\.jsd"),
    ("evaluations", {}, "a dict where a list belongs"),
    ("runtime", [], "runtime is a list, not a table"),
])
def test_a_part_with_a_field_missing_or_unknown_is_a_clear_error(where: str, value: Any, message: str):
    data = read_json(DATA / "results-v1-parts" / "toy-delta-gan-batched.json")
    with pytest.raises(GbenchError, match=message):
        TrialResult.from_json(_set(data, where, value))


def test_ran_by_records_where_a_trial_ran_over_what_was_known():
    data = read_json(DATA / "results-v1-parts" / "toy-deligan-alone.json")
    result = TrialResult.from_json(data)
    bare = dataclasses.replace(result, runtime=RuntimeRecord(result.runtime.settings))
    assert "executor" not in bare.to_json()["runtime"] and "jobs" not in bare.to_json()["runtime"]
    lost = bare.ran_by("process")  # a worker that never reported
    assert lost.to_json()["runtime"] == {**bare.to_json()["runtime"], "executor": "process"}
    remote = lost.ran_by("ray", Parallel(None, 4), "off: the run directory is not on this node's file system")
    assert remote.runtime.parallel == Parallel(None, 4)
    assert remote.ran_by("ray").runtime == remote.runtime  # settings and note known: kept
    again = TrialResult.from_json(json.loads(dumps(remote.to_json())))
    assert again == remote and again.to_json()["runtime"]["jobs"] is None
    assert again.to_json()["runtime"]["checkpoints"].startswith("off")
