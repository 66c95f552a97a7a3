"""environment.yml and pyproject.toml agree, and CI runs exactly the README's two commands."""

import re
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_this_package_with_dev_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "pip" in deps, "conda needs pip listed to run the pip section"
    pip_items = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-e .[dev]" in pip_items
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    version = python.split("=", 1)[1]
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(version + ".0")


def test_environment_pins_satisfy_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_items = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    project = pyproject()["project"]
    declared = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    declared |= {Requirement(r).name: Requirement(r) for r in project["optional-dependencies"]["dev"]}
    for item in pip_items:
        if item.startswith("-e"):
            continue
        req = Requirement(item)
        assert req.name in declared, f"environment.yml pins {req.name}, which pyproject.toml does not declare"
        pinned = next(iter(req.specifier)).version
        assert declared[req.name].specifier.contains(pinned), f"{item} violates pyproject's {declared[req.name]}"


def test_core_dependencies_declared():
    names = {Requirement(r).name for r in pyproject()["project"]["dependencies"]}
    assert {"torch", "numpy", "einops", "matplotlib", "jupyter", "tqdm", "safetensors", "tiktoken"} <= names
    dev = {Requirement(r).name for r in pyproject()["project"]["optional-dependencies"]["dev"]}
    assert {"pytest", "nbmake", "pytest-xdist", "pytest-timeout", "transformers", "llama-models", "trl"} <= dev
    assert {"ruff", "import-linter"} <= dev  # CI's lint, format and layering stages


def readme_commands():
    """The fenced bash block right under the README's first heading: clone, set-up, test."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith(("git clone", "cd "))]


def test_readme_has_exactly_two_commands_and_ci_runs_them_verbatim():
    commands = readme_commands()
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "python -m pip install -q torch==2.13.0" in ci  # the CPU wheel first
    for cmd in commands:
        assert cmd in ci, f"CI does not run the README command {cmd!r} verbatim"


def test_ci_lints_and_checks_the_layering_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    tests = ci.index("python -m pytest -n auto")
    for command in ("ruff check .", "ruff format --check .", "lint-imports"):
        assert command in ci[:tests], f"CI does not run {command!r} before the tests"
