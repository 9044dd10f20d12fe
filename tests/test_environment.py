"""environment.yml (Binder, conda) and pyproject.toml (pip, make setup) name the same packages and ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from the PyPI ones
NOT_PACKAGES = {"python", "pip"}


def normalise(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_conda_spec(spec: str) -> tuple[str, SpecifierSet]:
    """A conda MatchSpec ``name version[ |=]build`` → (pip name, version range).

    The version/build split follows conda's own rule: the build is what follows the last space or
    ``=`` that is not part of an operator. A bare ``=x.y`` (or ``x.y``) pin means ``==x.y.*``.
    """
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec)
    name, rest = match.groups()
    rest = re.sub(r"\s*([,|])\s*", r"\1", rest)  # ">=1 , <2" -> ">=1,<2"
    rest = re.sub(r"([<>=!~])\s+", r"\1", rest)  # ">= 1" -> ">=1"
    version = ""
    if rest:
        parts = re.fullmatch(r"((?:.+?)[^><!,|]?)(?:(?<![=!|,<>~])[ =]([^-=,|<>~]+?))?", rest)
        assert parts, f"cannot parse the conda spec {spec!r}"
        version = parts.group(1)
    if re.fullmatch(r"=?[0-9][\w.]*", version):
        version = f"=={version.lstrip('=')}.*"
    return normalise(CONDA_TO_PIP.get(name, name)), SpecifierSet(version)


def conda_packages() -> dict[str, SpecifierSet]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    packages: dict[str, SpecifierSet] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):  # the pip: section holds PyPI requirements
            for line in entry["pip"]:
                req = Requirement(line)
                packages[normalise(req.name)] = req.specifier
        else:
            name, spec = parse_conda_spec(entry)
            packages[name] = spec
    return {k: v for k, v in packages.items() if k not in NOT_PACKAGES}


def pyproject_packages() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    return {normalise(r.name): r.specifier for r in requirements}


@pytest.mark.parametrize(
    "spec, name, version",
    [
        ("pytorch>=2.3,<2.15=cpu*", "torch", ">=2.3,<2.15"),
        ("numpy >=1.24", "numpy", ">=1.24"),
        ("python=3.11", "python", "==3.11.*"),
        ("pip", "pip", ""),
        ("scikit_learn>=1.3", "scikit-learn", ">=1.3"),
        ("jupyterlab >=4.1 , <5 *_0", "jupyterlab", ">=4.1,<5"),
        ("numpy=1.26=py311*", "numpy", "==1.26.*"),
        ("nbval==0.11.0", "nbval", "==0.11.0"),
    ],
)
def test_the_conda_spec_parser(spec, name, version):
    assert parse_conda_spec(spec) == (name, SpecifierSet(version))


def test_both_files_name_the_same_packages():
    conda, pip = conda_packages(), pyproject_packages()
    assert sorted(set(pip) - set(conda)) == [], "in pyproject.toml but missing from environment.yml"
    assert sorted(set(conda) - set(pip)) == [], "in environment.yml but missing from pyproject.toml"


def test_both_files_give_the_same_version_ranges():
    conda, pip = conda_packages(), pyproject_packages()
    differing = {name: (str(pip[name]), str(conda[name])) for name in set(conda) & set(pip)
                 if str(pip[name]) and str(conda[name]) and pip[name] != conda[name]}
    assert differing == {}


def test_the_installed_environment_satisfies_pyproject():
    from importlib.metadata import PackageNotFoundError, version

    wrong = {}
    for name, spec in pyproject_packages().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            wrong[name] = "not installed"
            continue
        if installed not in spec:
            # local builds such as 2.14.1+cu130 satisfy ranges by their public version
            public = installed.split("+")[0]
            if public not in spec:
                wrong[name] = installed
    assert wrong == {}


def test_files_named_by_the_makefile_and_postbuild_exist():
    referenced = set()
    for name in ("Makefile", "postBuild"):
        referenced |= set(re.findall(r"jupyter_config/[\w./-]+", (ROOT / name).read_text()))
    assert referenced >= {"jupyter_config/jupyter_server_config.py", "jupyter_config/lab/overrides.json",
                          "jupyter_config/nbval_sanitize.cfg"}
    assert [p for p in sorted(referenced) if not (ROOT / p).is_file()] == []
    assert (ROOT / "postBuild").stat().st_mode & 0o111, "postBuild must be executable for Binder"


def test_nbval_sanitize_rules_parse_and_apply():
    """Read the rules as nbval does and apply them in order, as nbval does to both outputs."""
    from nbval.plugin import get_sanitize_patterns

    text = (ROOT / "jupyter_config" / "nbval_sanitize.cfg").read_text()
    patterns = get_sanitize_patterns(text)
    assert len(patterns) == text.count("\nregex: ") + text.startswith("regex: ") >= 4  # no rule silently dropped

    def sanitize(s: str) -> str:
        for regex, replace in patterns:
            s = re.sub(regex, replace, s)
        return s

    assert sanitize("took 12.5 s (3 ms per batch)") == "took <TIME> (<TIME> per batch)"
    assert sanitize("<Figure at 0x7f3a2b9c10>") == "<Figure at <ADDRESS>>"
    assert sanitize("peak 310 MiB, file 1.5 GB") == "peak <MEMORY>, file <MEMORY>"
    assert sanitize("epochs: 100%|##########| 5/5 [00:01<00:00, 4.20it/s]") == "epochs: <PROGRESS>"
    assert sanitize("IoU = 0.681, 3 boxes kept") == "IoU = 0.681, 3 boxes kept"  # results are left alone


def third_party_imports(folder: str) -> set[str]:
    """Top-level modules imported (absolute imports) by the .py files under ``folder``."""
    import ast
    import sys

    modules = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"course_utils", "tools"}


@pytest.mark.parametrize("folder, extras", [("course_utils", ()), ("tools", ("test",))])
def test_every_imported_package_is_declared(folder, extras):
    """What the code imports is declared in pyproject.toml, or is a hard requirement of a declared package."""
    from importlib.metadata import packages_distributions, requires

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalise(Requirement(r).name) for r in project["dependencies"]}
    for extra in extras:
        declared |= {normalise(Requirement(r).name) for r in project["optional-dependencies"][extra]}
    guaranteed = set(declared)
    for name in declared:
        for line in requires(name) or []:
            req = Requirement(line)
            if req.marker is None:  # unconditional: installed whenever `name` is
                guaranteed.add(normalise(req.name))
    distributions = packages_distributions()
    missing = {m: distributions.get(m) for m in third_party_imports(folder)
               if not {normalise(d) for d in distributions.get(m, [m])} & guaranteed}
    assert missing == {}
