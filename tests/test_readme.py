"""The README's promises: its commands match CI, and its plugin example works as written."""
from __future__ import annotations

import re
import types
from pathlib import Path

import gbench
import gbench.plugins
from gbench import hookspecs

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert blocks[0].strip() == "pip install . && gbench run ring --executor process --jobs 2"
    assert blocks[1].strip() == "pip install -e '.[test]' && python -m pytest"
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text()


def test_readme_plugin_example_registers_and_trains():
    code = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "register_variants" in b)
    module = types.ModuleType("readme_hinge")
    exec(compile(code, "README.md", "exec", dont_inherit=True), module.__dict__)
    gbench.plugins._loaded = gbench.plugins.load_plugins(entry_points=False, extra=(module,))
    try:
        from gbench.suite import parse_suite
        from gbench.run.trial import run_trial, trials_of

        suite = parse_suite({"variants": ["hinge"], "dataset": {"name": "ring8", "train_size": 256},
                             "budget": {"g_steps": 5, "batch_size": 16}, "eval": {"num_samples": 200}}, "x.toml")
        result = run_trial(trials_of(suite)[0]).result
        assert result.status == "ok", result.error
        assert gbench.get_plugins().variants.entry("hinge").plugin == "readme_hinge"
    finally:
        gbench.plugins.reset_plugins()


def test_every_hook_is_documented_in_the_readme():
    names = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "gbench_spec")]
    assert names
    for name in names:
        assert f"`{name}(" in README, name
