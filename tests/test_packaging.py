"""pyproject.toml declares what `pip install -e .` needs: requirements.txt's runtime pins, as
pinned there, and torch at the Makefile's pin. The tools (JupyterLab, tests, lint) stay out."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# requirements.txt pins these (and pytest's plugins) for `make lab`, the tests and lint; a
# user of the library needs none of them.
TOOLS = {"jupyterlab", "pytest", "ruff", "pyright", "playwright"}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)$")


def is_tool(name: str) -> bool:
    return name in TOOLS or name.startswith("pytest-")


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"not an exact pin: {line!r}"
        found[match[1].lower()] = match[2]
    return found


def requirement_pins() -> dict[str, str]:
    return pins((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())


def declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return pins(project["dependencies"])


def test_pyproject_declares_the_runtime_requirements_as_pinned():
    required = requirement_pins()
    assert TOOLS <= set(required), "requirements.txt no longer pins a tool this test names; update TOOLS"
    runtime = {name: version for name, version in required.items() if not is_tool(name)}
    ours = {name: version for name, version in declared().items() if name != "torch"}
    assert ours == runtime


def test_pyproject_pins_torch_as_the_makefile_installs_it():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    torch_pin = re.search(r"^TORCH_PIN := torch==(\S+)$", makefile, re.M)
    assert torch_pin, "the Makefile no longer sets TORCH_PIN"
    assert declared()["torch"] == torch_pin[1]
    assert "torch" not in requirement_pins(), "requirements.txt must leave torch to make (CPU wheel first)"
