"""`taskfleet` completes its commands and options in the shell (argcomplete), as the shell's
hook asks it: the words so far in COMP_LINE, the answers in the file it names."""

import os
import subprocess
import sys
from pathlib import Path


def complete(line: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "completions"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLEET_")}
    env |= {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "taskfleet_cli"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out.read_text().split()


def test_commands_and_their_options_complete(tmp_path: Path) -> None:
    assert set(complete("taskfleet ca", tmp_path)) == {"cancel"}
    assert set(complete("taskfleet ta", tmp_path)) == {"task", "tasks"}
    assert {"--url", "--token", "--timeout"} <= set(complete("taskfleet wait x --", tmp_path))
    assert "--json" in complete("taskfleet tasks --j", tmp_path)
