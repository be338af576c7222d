"""A provider the deployment has not configured is answered in one place: the `Slot` a typed
dependency reads (api/core/deps.py), so every route says it the same way and none can forget."""

import ast
from pathlib import Path
from typing import TypeGuard

REPO = Path(__file__).resolve().parents[2]
SLOTS = REPO / "api" / "core" / "deps.py"


def raises_not_configured(node: ast.AST) -> TypeGuard[ast.Call]:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "ApiError"
        and any(
            isinstance(arg, ast.Constant) and arg.value == "provider_not_configured"
            for arg in node.args
        )
    )


def test_only_slots_answer_provider_not_configured() -> None:
    by_hand = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in sorted((REPO / "api").rglob("*.py"))
        if path != SLOTS
        for node in ast.walk(ast.parse(path.read_text()))
        if raises_not_configured(node)
    ]
    assert by_hand == []
