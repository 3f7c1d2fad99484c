"""errors.py draws every error class in the tree, so a reader finds each one from there."""

from __future__ import annotations

import ast
from pathlib import Path

import shipyard
from shipyard import errors

SRC = Path(shipyard.__file__).parent
_BUILTIN = {"Exception", "BaseException", "RuntimeError", "ValueError", "OSError", "KeyError", "TypeError"}


def _error_classes() -> dict[str, str]:
    """Every class in src/shipyard deriving (transitively, by name) from an exception: name → module."""
    classes: list[tuple[str, list[str], str]] = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                classes.append((node.name, bases, module))
    found: dict[str, str] = {}
    known = set(_BUILTIN)
    grew = True
    while grew:
        grew = False
        for name, bases, module in classes:
            if name not in found and any(b in known for b in bases):
                found[name] = module
                known.add(name)
                grew = True
    return found


def test_every_error_class_is_drawn_in_the_hierarchy() -> None:
    found = _error_classes()
    assert "ModelServerError" in found and "NoSuchKey" in found  # the walk sees both kinds
    doc = errors.__doc__ or ""
    missing = {name: module for name, module in found.items() if name not in doc}
    assert not missing, f"draw these in errors.py's docstring: {missing}"


def test_classes_drawn_as_living_elsewhere_live_there() -> None:
    found = _error_classes()
    for name, module in found.items():
        if module != "shipyard.errors" and f"{name} (" in (errors.__doc__ or ""):
            drawn = (errors.__doc__ or "").split(f"{name} (", 1)[1].split(")", 1)[0]
            assert module.startswith(f"shipyard.{drawn}"), (name, module, drawn)
