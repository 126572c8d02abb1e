"""Nothing in the kernel or the services starts a task it does not own (DESIGN.md §6): every
background task goes through taskfleet.core.supervisor.Supervisor, which logs, counts and restarts
it; a TaskGroup's tasks are awaited by their group. This reads the code itself, so a new
fire-and-forget `create_task` fails here before it can lose an exception in production.
(tests/e2e/test_agent_e2e.py makes a supervised loop of a real worker raise.)"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "shared" / "taskfleet", ROOT / "cli", *sorted((ROOT / "services").glob("*/*"))]
SUPERVISOR = ROOT / "shared" / "taskfleet" / "core" / "supervisor.py"
SPAWNERS = {"create_task", "ensure_future", "run_coroutine_threadsafe"}


def unsupervised(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    groups = {  # names bound by `async with asyncio.TaskGroup() as name`
        item.optional_vars.id
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncWith)
        for item in node.items
        if isinstance(item.optional_vars, ast.Name)
        and isinstance(item.context_expr, ast.Call)
        and ast.unparse(item.context_expr.func).endswith("TaskGroup")
    }
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in SPAWNERS:
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id in groups:
            continue
        found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_every_background_task_is_started_by_the_supervisor() -> None:
    files = [p for root in SOURCES for p in root.rglob("*.py") if p != SUPERVISOR]
    assert len(files) > 50  # the sources were found, so the check below means something
    assert [hit for p in files for hit in unsupervised(p)] == []


def test_the_check_sees_a_fire_and_forget_task(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import asyncio\n"
        "async def f():\n"
        "    asyncio.create_task(g())\n"
        "    asyncio.get_running_loop().create_task(g())\n"
        "    async with asyncio.TaskGroup() as tg:\n"
        "        tg.create_task(g())\n"
    )
    hits = unsupervised(sample, root=tmp_path)
    assert [h.split(": ", 1)[1] for h in hits] == [
        "asyncio.create_task",
        "asyncio.get_running_loop().create_task",
    ]
