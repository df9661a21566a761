"""Suite files: parsing, defaults, and errors that name the key and the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from gbench.errors import GbenchError
from gbench.suite import builtin_suites, load_suite, parse_suite

MINIMAL = {"variants": ["sgan"], "dataset": {"name": "ring8"}}


def test_every_builtin_suite_loads():
    suites = builtin_suites()
    assert {"smoke", "ring", "grid", "delta-ring"} <= set(suites)
    for name in suites:
        suite = load_suite(name)
        assert suite.variants and suite.seeds and suite.budget.g_steps > 0


def test_smoke_and_default_suites_cover_all_six_variants():
    six = {"sgan", "rsgan", "tgan", "deligan", "alpha-gan", "delta-gan"}
    for name in ("smoke", "ring"):
        assert {v.name for v in load_suite(name).variants} == six
    assert len(load_suite("ring").seeds) >= 3


def test_defaults_and_final_evaluation_added():
    suite = parse_suite({**MINIMAL, "eval": {"at": [0.5]}}, "s.toml")
    assert suite.seeds == (0,)
    assert suite.eval.at == (0.5, 1.0)
    assert suite.variants[0].label == "sgan"


def test_variant_tables_get_labels_and_validated_options():
    raw = {**MINIMAL, "variants": [{"name": "alpha-gan", "alpha_d": 0.3}, {"name": "sgan", "label": "mm",
                                                                              "non_saturating": False}]}
    suite = parse_suite(raw, "s.toml")
    assert [v.label for v in suite.variants] == ["alpha-gan(alpha_d=0.3)", "mm"]
    assert suite.select(["mm"]).variants[0].options == {"non_saturating": False}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({**MINIMAL, "budgett": {}}, "s.toml: unknown key 'budgett'"),
        ({**MINIMAL, "budget": {"g_step": 3}}, "s.toml [budget]: unknown key 'g_step'"),
        ({**MINIMAL, "budget": {"g_steps": 0}}, "'g_steps': must be greater than 0"),
        ({**MINIMAL, "budget": {"batch_size": -4}}, "'batch_size': must be greater than 0"),
        ({**MINIMAL, "budget": {"g_steps": 1.5}}, "'g_steps': must be a valid integer"),
        ({**MINIMAL, "optim": {"betas": ["a", "b"]}}, "[optim]: 'betas.0': must be a valid number"),
        ({**MINIMAL, "optim": {"betas": [0.5]}}, "'betas.1': field required"),
        ({**MINIMAL, "optim": {"betas": [0.5, 1.0]}}, "'betas.1': must be less than 1"),
        ({**MINIMAL, "optim": {"g_lr": -1}}, "'g_lr': must be greater than 0"),
        ({**MINIMAL, "optim": {"g_lr": float("nan")}}, "'g_lr' is nan"),
        ({**MINIMAL, "optim": {"d_lr": float("inf")}}, "'d_lr': must be a finite number"),
        ({**MINIMAL, "dataset": {"mixture": [{"name": "ring8", "weight": float("nan")}]}}, "'weight' is nan"),
        ({**MINIMAL, "dataset": {"name": "ring8", "options": {"sigmaa": 0.1}}}, "has no option 'sigmaa'"),
        ({**MINIMAL, "dataset": {"name": "ring8", "train_size": -1}}, "'train_size': must be greater than or equal"),
        ({**MINIMAL, "model": {"depth": 0}}, "[model]: 'depth' must be positive"),
        ({**MINIMAL, "eval": {"seed": -5}}, "'seed': must be greater than or equal to 0"),
        ({**MINIMAL, "eval": {"at": ["0.5"]}}, "'at.0': must be a valid number"),
        ({**MINIMAL, "seeds": [True, 1]}, "'seeds' must be a non-empty list of non-negative integers"),
        ({**MINIMAL, "seeds": [1, 1]}, "lists seed 1 twice"),
        ({**MINIMAL, "variants": [{"name": "sgan", "label": 5}]}, "'label' should be a non-empty string"),
        ({**MINIMAL, "variants": [{"name": "sgan", "label": "a/b"}, {"name": "rsgan", "label": "a_b"}]},
         "give the same trial file name 'a_b'"),
        ({**MINIMAL, "variants": [{"name": "sgan", "label": "x" * 300}]}, "too long for a file name"),
        ({**MINIMAL, "name": "../x"}, "'name' must be 1-80 letters"),
        ({**MINIMAL, "name": "/tmp/x"}, "'name' must be 1-80 letters"),
        ({**MINIMAL, "variants": ["nope"]}, "unknown variant 'nope'"),
        ({**MINIMAL, "variants": [{"name": "sgan", "colour": 1}]}, "variant 'sgan': unknown key 'colour'"),
        ({**MINIMAL, "variants": [{"name": "alpha-gan", "alpha_d": -1.0}]}, "alpha"),
        ({**MINIMAL, "variants": ["sgan", "sgan"]}, "appears twice"),
        ({**MINIMAL, "dataset": {"name": "moon"}}, "unknown dataset 'moon'"),
        ({**MINIMAL, "dataset": {"name": "ring8", "size": 3}}, "[dataset]: unknown key 'size'"),
        ({**MINIMAL, "dataset": {}}, "exactly one of 'name' or 'mixture'"),
        ({**MINIMAL, "dataset": {"mixture": [{"name": "ring8", "weight": -1}]}}, "'weight': must be greater than 0"),
        ({**MINIMAL, "eval": {"at": [1.5]}}, "'at.0': must be less than or equal to 1"),
        ({**MINIMAL, "eval": {"metrics": ["fidd"]}}, "unknown metric 'fidd'"),
        ({**MINIMAL, "seeds": []}, "'seeds' must be a non-empty list"),
        # a variant entry's own optimiser and schedule, and the budgets they need
        ({**MINIMAL, "variants": [{"name": "sgan", "optim": {"g_lr": 0}}]},
         "s.toml variant 'sgan' optim: 'g_lr': must be greater than 0, got 0"),
        ({**MINIMAL, "variants": [{"name": "sgan", "optim": {"beta": [0.0, 0.9]}}]},
         "variant 'sgan' optim: unknown key 'beta' (known: g_lr, d_lr, betas"),
        ({**MINIMAL, "variants": [{"name": "sgan", "optim": {"betas": [0.0, 1.0]}}]}, "'betas.1': must be less than 1"),
        ({**MINIMAL, "variants": [{"name": "sgan", "optim": "authors"}]}, "'optim' should be a table, e.g. optim = {"),
        ({**MINIMAL, "variants": [{"name": "sgan", "schedule": 5}]}, "'schedule' should be a table, e.g. schedule = {"),
        ({**MINIMAL, "variants": [{"name": "sgan", "schedule": {"d_steps_per_g_step": 0}}]},
         "variant 'sgan' schedule: 'd_steps_per_g_step': must be greater than 0"),
        ({**MINIMAL, "variants": [{"name": "sgan", "schedule": {"d_steps": 5}}]},
         "schedule: unknown key 'd_steps' (known: d_steps_per_g_step, batch_size)"),
        ({**MINIMAL, "variants": [{"name": "sgan", "schedule": {"batch_size": True}}]}, "'batch_size': must be a valid"),
        ({**MINIMAL, "variants": ["sgan", {"name": "rsgan", "schedule": {"batch_size": 64}}]},
         "s.toml [budget]: variants 'sgan' (D:G 1:1, batch 128) and 'rsgan' (D:G 1:1, batch 64) train on different "
         "schedules"),
        ({**MINIMAL, "budget": {"device_seconds": -1.0}}, "'device_seconds': must be greater than or equal to 0"),
        ({**MINIMAL, "budget": {"device_seconds": float("inf"), "g_steps": 9}}, "'device_seconds': must be a finite"),
        ({**MINIMAL, "budget": {"gradient_evals": 1.5}}, "'gradient_evals': must be a valid integer"),
        ({**MINIMAL, "budget": {"gradient_evals": 10**6, "g_steps": 9}}, "'g_steps' follows from 'gradient_evals'"),
    ],
)
def test_bad_suites_are_one_clear_error(raw, message):
    with pytest.raises(GbenchError) as err:
        parse_suite(raw, "s.toml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(GbenchError, match="no suite file 'nope.toml'"):
        load_suite("nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(GbenchError, match="bad.toml: not valid TOML"):
        load_suite(str(bad))


def test_mixture_dataset_and_hash_ignores_path(tmp_path: Path):
    raw = {"variants": ["sgan"], "dataset": {"mixture": [{"name": "ring8", "weight": 3}, {"name": "grid25"}]}}
    a, b = parse_suite(raw, "a.toml"), parse_suite(raw, "b.toml")
    assert a.dataset.mixture == (("ring8", 3.0, {}), ("grid25", 1.0, {}))
    assert a.hash == b.hash
    assert parse_suite({**raw, "seeds": [1]}, "a.toml").hash != a.hash


def test_variant_settings_resolve_over_the_suite_tables():
    raw = {**MINIMAL, "optim": {"g_lr": 2e-4, "lr_schedule": "linear"}, "budget": {"gradient_evals": 100_000},
           "variants": ["sgan", {"name": "rsgan", "optim": {"betas": [0.0, 0.9]},
                                 "schedule": {"d_steps_per_g_step": 5, "batch_size": 64}}]}
    suite = parse_suite(raw, "s.toml")
    plain, own = (suite.for_variant(v) for v in suite.variants)
    assert plain.optim == suite.optim and plain.optim.betas == (0.5, 0.999)
    # only the keys the entry gives change; the rest is the suite's [optim]
    assert (own.optim.g_lr, own.optim.lr_schedule, own.optim.betas) == (2e-4, "linear", (0.0, 0.9))
    # G steps from the gradient-evaluation budget: floor(100000 / ((k + 1) x batch))
    assert (plain.budget.g_steps, own.budget.g_steps) == (100_000 // 256, 100_000 // 384)
    assert (own.budget.d_steps_per_g_step, own.budget.batch_size) == (5, 64)
    assert suite.budget.g_steps == 390  # the suite's own: the most any variant takes
    assert [v.label for v in suite.variants] == ["sgan", "rsgan"]  # optim/schedule are not variant settings
