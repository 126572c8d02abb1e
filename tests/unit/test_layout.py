"""The layout stays one a newcomer can read: no module over 300 lines, and the kernel's top
folder shows its layers (and the API's client) at a glance (the import contracts in
pyproject.toml keep their order)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 300
KERNEL = ROOT / "shared" / "taskfleet"
LAYERS = {"core", "security", "llm", "store", "broker", "runtime", "path", "data"}
# Beside the layers, what a backend imports to talk to the API (only core below it).
CLIENT = "client"


def python_files() -> list[Path]:
    """Every module of the repository's own code, tests and tools included."""
    folders = ["shared", "cli", "services", "tests", "bench", "docs"]
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")]


def test_no_module_is_over_300_lines() -> None:
    files = python_files()
    assert len(files) > 100  # the sources were found, so the check below means something
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_kernel_top_folder_holds_its_layers_and_the_two_entry_modules() -> None:
    folders = {p.name for p in KERNEL.iterdir() if p.is_dir() and p.name != "__pycache__"}
    modules = {p.name for p in KERNEL.glob("*.py")}
    assert folders == LAYERS | {CLIENT}
    assert modules == {"__init__.py", "handler.py", "worker.py"}
