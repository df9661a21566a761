"""Malformed suites, generated with Hypothesis: every one is exit code 2, one line, no traceback, and
nothing written (issue 12: validation up front)."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gbench.cli import cli

BASE: dict[str, Any] = {
    "name": "fuzz",
    "seeds": [0],
    "variants": ["sgan"],
    "dataset": {"name": "ring8", "train_size": 256},
    "model": {"g_hidden": 8, "d_hidden": 8, "depth": 1},
    "budget": {"g_steps": 2, "batch_size": 16},
    "optim": {"g_lr": 1e-3, "d_lr": 1e-3, "betas": [0.5, 0.999]},
    "eval": {"num_samples": 64, "seed": 1, "at": [1.0]},
}

not_a_number = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))
not_an_int = st.one_of(not_a_number, st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer()))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])

# (table, key) -> values that must each be refused
BAD: dict[tuple[str | None, str], st.SearchStrategy[Any]] = {
    ("budget", "g_steps"): st.one_of(st.integers(max_value=0), not_an_int),
    ("budget", "batch_size"): st.one_of(st.integers(max_value=0), st.integers(min_value=257, max_value=10**6),
                                        not_an_int),
    ("budget", "d_steps_per_g_step"): st.one_of(st.integers(max_value=0), not_an_int),
    ("budget", "max_device_seconds"): st.one_of(st.floats(max_value=-1e-9, allow_nan=False), not_a_number,
                                                non_finite),
    ("budget", "device_seconds"): st.one_of(st.floats(max_value=-1e-9, allow_nan=False), not_a_number, non_finite),
    # BASE gives g_steps, so any gradient-evaluation budget contradicts it
    ("budget", "gradient_evals"): st.one_of(st.integers(max_value=-1), st.integers(min_value=1), not_an_int),
    ("optim", "g_lr"): st.one_of(st.floats(max_value=0, allow_nan=False), non_finite, not_a_number),
    ("optim", "d_lr"): st.one_of(st.floats(max_value=0, allow_nan=False), non_finite, not_a_number),
    ("optim", "betas"): st.one_of(
        st.lists(st.floats(0, 0.9), max_size=1), st.lists(st.floats(0, 0.9), min_size=3, max_size=4),
        st.tuples(st.floats(0, 0.9), st.one_of(st.floats(min_value=1.0, allow_nan=False), non_finite,
                                               st.floats(max_value=-1e-9, allow_nan=False))).map(list),
        st.lists(st.text(max_size=3), min_size=2, max_size=2), st.text(max_size=3)),
    ("dataset", "train_size"): st.one_of(st.integers(max_value=0), not_an_int),
    ("dataset", "seed"): st.one_of(st.integers(max_value=-1), not_an_int),
    ("dataset", "options"): st.one_of(
        st.fixed_dictionaries({"sigma": st.one_of(st.floats(max_value=0, allow_nan=False), non_finite)}),
        st.fixed_dictionaries({"sigmaa": st.floats(0.01, 1)}), st.text(max_size=3)),
    ("model", "depth"): st.one_of(st.integers(max_value=0), not_an_int),
    ("model", "g_hidden"): st.one_of(st.integers(max_value=0), not_an_int),
    ("model", "arch"): st.one_of(st.sampled_from(["cnn", "dcgan", "resnet", ""]), st.integers()),
    ("eval", "seed"): st.one_of(st.integers(max_value=-1), not_an_int),
    ("eval", "num_samples"): st.one_of(st.integers(max_value=0), not_an_int),
    ("eval", "at"): st.one_of(st.just([]), st.lists(st.one_of(st.floats(min_value=1.0001, allow_nan=False),
                                                              st.floats(max_value=0, allow_nan=False),
                                                              st.text(max_size=3), non_finite),
                                                    min_size=1, max_size=3)),
    (None, "seeds"): st.one_of(st.just([]), st.lists(st.integers(max_value=-1), min_size=1, max_size=3),
                               st.lists(st.booleans(), min_size=1, max_size=2),
                               st.integers(0, 5).map(lambda s: [s, s]), st.text(max_size=3)),
    (None, "name"): st.sampled_from(["../x", "/abs/path", "a/b", "..", ".hidden", "x" * 81]),
    (None, "variants"): st.one_of(
        st.just([]), st.just(["nope"]),
        st.just([{"name": "sgan", "label": "a/b"}, {"name": "rsgan", "label": "a_b"}]),
        st.integers(min_value=-5, max_value=5).map(lambda v: [{"name": "sgan", "label": v}]),
        st.just([{"name": "sgan", "label": "l" * 300}]),
        st.just([{"name": "alpha-gan", "alpha_d": -1.0}]), st.just([{"name": "sgan", "colour": 1}]),
        # a variant's own optimiser and schedule: bad values, and a schedule that a G-step budget cannot equalise
        st.one_of(st.floats(max_value=0, allow_nan=False), non_finite, not_a_number).map(
            lambda v: [{"name": "sgan", "optim": {"g_lr": v}}]),
        st.one_of(st.integers(max_value=0), st.integers(min_value=257, max_value=10**6), not_an_int).map(
            lambda v: [{"name": "sgan", "schedule": {"batch_size": v}}]),
        st.one_of(st.integers(max_value=0), not_an_int).map(
            lambda v: [{"name": "sgan", "schedule": {"d_steps_per_g_step": v}}]),
        st.sampled_from(["authors", 3, [1]]).map(lambda v: [{"name": "sgan", "optim": v}]),
        st.just([{"name": "sgan", "schedule": {"g_steps": 3}}]),
        st.integers(2, 9).map(lambda k: ["sgan", {"name": "rsgan", "schedule": {"d_steps_per_g_step": k}}])),
}
KEYS = sorted(BAD, key=str)
TABLES = ["budget", "optim", "dataset", "model", "eval"]
names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"


def toml(raw: dict[str, Any]) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for table, body in raw.items():
        if isinstance(body, dict):
            lines += [f"[{table}]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def mutate(choice: str, key: tuple[str | None, str] | None, value: Any, table: str, extra: str) -> dict[str, Any]:
    raw = json.loads(json.dumps(BASE))
    if choice == "bad value":
        section, name = key
        (raw if section is None else raw[section])[name] = value
    else:  # an unknown key in a table or at the top
        target = raw if table == "top" else raw[table]
        target[f"zz_{extra}"] = 1
    return raw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_malformed_suite_is_one_line_and_exit_2(tmp_path: Path, data: st.DataObject):
    choice = data.draw(st.sampled_from(["bad value", "bad value", "bad value", "unknown key"]))
    key = data.draw(st.sampled_from(KEYS)) if choice == "bad value" else None
    value = data.draw(BAD[key]) if key else None
    raw = mutate(choice, key, value, data.draw(st.sampled_from(TABLES + ["top"])), data.draw(names))
    here = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example (tmp_path is per test)
    path = here / "s.toml"
    path.write_text(toml(raw))
    out = here / "out"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--quiet"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, (raw, result.output, result.exception)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert str(path) in lines[0] or "--seeds" in lines[0], lines[0]
    assert not out.exists()  # nothing ran, nothing was written


def test_the_unmutated_suite_is_valid(tmp_path: Path):
    """The generator's base suite itself passes validation (so every refusal above is the mutation's)."""
    from gbench.run.runner import check_suite
    from gbench.suite import parse_suite
    from gbench.run.trial import Runtime

    check_suite(parse_suite(BASE, "base.toml"), Runtime())


def test_binary_and_non_table_files_are_one_line(tmp_path: Path):
    for content in (bytes(range(256)), b"[budget]\ng_steps = 3\n[budget]\n", b"seeds = 3\n"):
        path = tmp_path / "bad.toml"
        path.write_bytes(content)
        result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
