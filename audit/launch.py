"""``audit launch [ACCELERATE LAUNCH OPTIONS] -- COMMAND ...``: ``accelerate launch -m audit COMMAND ...``
with the exit-code contract kept (0 pass, 1 a gate failed, 2 an error).

Why a wrapper: ``accelerate launch`` (1.16, through torch elastic) exits 1 whenever a rank exits
non-zero, so a config or runtime error on every rank (each rank exits 2) reads as "a gate failed".
Nothing inside the ranks can change the launcher's code. So this launcher makes a per-run directory,
names it to the ranks in ``$AUDIT_LAUNCH_EXIT_DIR``, and each rank's ``audit.cli.main`` writes its own
exit code there (``rank<RANK>``) and exits 0 (:func:`run_rank`). The launcher then exits with
:func:`final_code` of those codes.

Example:
    >>> final_code({0: 1, 1: 1}, launcher_code=1)   # a failed gate on every rank stays 1
    1
    >>> final_code({0: 2, 1: 2}, launcher_code=1)   # an error stays 2
    2
    >>> final_code({}, launcher_code=1)             # no rank finished: a crash
    2
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .errors import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_PASS

EXIT_DIR_ENV = "AUDIT_LAUNCH_EXIT_DIR"
# The module `accelerate launch` runs (accelerate 1.x: accelerate/commands/launch.py has a __main__ guard).
ACCELERATE_LAUNCH = "accelerate.commands.launch"

USAGE = ("usage: audit launch [ACCELERATE LAUNCH OPTIONS] -- COMMAND [ARGS ...]\n"
         "  e.g. audit launch --multi_gpu --num_processes 2 -- run SUITE --out DIR\n"
         "Runs `accelerate launch [OPTIONS] -m audit COMMAND [ARGS ...]` and exits with rank 0's code "
         "(0 pass, 1 a gate failed, 2 an error; 2 when a rank crashed or reported an error), where "
         "`accelerate launch` alone exits 1 for any failed rank. Options: `accelerate launch --help`.")


def record_exit_code(code: object) -> None:
    """Under :func:`launch`: write this rank's exit code to ``$AUDIT_LAUNCH_EXIT_DIR/rank<RANK>``; else nothing.

    Never raises: the process's own exit code must not change because the note could not be written
    (the launcher then reads a missing code as a crash, exit 2).
    """
    where = os.environ.get(EXIT_DIR_ENV)
    if not where:
        return
    try:
        rank = int(os.environ.get("RANK", "0") or 0)
        value = code if isinstance(code, int) else EXIT_PASS if code is None else EXIT_GATE_FAILED  # sys.exit("msg") exits 1
        tmp = Path(where) / f"rank{rank}.tmp"
        tmp.write_text(str(value))
        os.replace(tmp, Path(where) / f"rank{rank}")   # whole or absent: the launcher never reads half a number
    except Exception:  # noqa: BLE001 - see the docstring
        pass


def run_rank(main: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    """One rank under :func:`launch`: run ``main``, note its exit code (:func:`record_exit_code`), exit 0.

    Exiting 0 keeps torch elastic from stopping the other ranks when one ends first with 1 or 2:
    rank 1 finishes its (report-less) run before rank 0 has written results.json and the reports,
    and a rank exiting non-zero would have the launcher SIGTERM rank 0 mid-write. The launcher
    exits with the noted codes; a rank that crashes notes nothing and still exits non-zero.
    """
    code: object = EXIT_ERROR
    try:
        code = main(argv)
    except SystemExit as e:   # argparse: usage errors (2), --help and --version (0)
        code = e.code
    record_exit_code(code)
    return EXIT_PASS


def read_codes(where: Path) -> dict[int, int]:
    """``{rank: exit code}`` of the ranks that wrote one (an unreadable note counts as an error, 2)."""
    codes: dict[int, int] = {}
    for f in where.iterdir():
        m = re.fullmatch(r"rank(\d+)", f.name)
        if m:
            try:
                codes[int(m.group(1))] = int(f.read_text().strip())
            except (OSError, ValueError):
                codes[int(m.group(1))] = EXIT_ERROR
    return codes


def final_code(codes: dict[int, int], launcher_code: int) -> int:
    """The run's exit code from the ranks' own codes and the launcher's.

    Rank 0's code (it gates and writes the reports), except: 2 when rank 0 wrote none (it crashed or
    was stopped), when any rank reported something other than 0 or 1, or when rank 0 passed but the
    launcher still failed (another rank crashed: a pass needs every rank to finish).
    """
    return _decide(codes, launcher_code)[0]


def _decide(codes: dict[int, int], launcher_code: int) -> tuple[int, str | None]:
    if 0 not in codes:
        return EXIT_ERROR, (f"rank 0 ended without an exit code (it crashed or was stopped; "
                            f"`accelerate launch` exited {launcher_code}: see its output above)")
    bad = sorted(r for r, c in codes.items() if c not in (EXIT_PASS, EXIT_GATE_FAILED))
    if bad:
        # Rank 0 printed its own error line; another rank's error is named.
        return EXIT_ERROR, None if 0 in bad else f"rank {bad[0]} exited {codes[bad[0]]} (see its error above)"
    if codes[0] == EXIT_PASS and launcher_code != 0:
        return EXIT_ERROR, (f"rank 0 passed but `accelerate launch` exited {launcher_code}: another rank "
                            f"failed (see the output above)")
    return codes[0], None


def launch(accelerate_args: list[str], command: list[str]) -> int:
    """Run ``accelerate launch ACCELERATE_ARGS -m audit COMMAND`` and return the run's exit code (:func:`final_code`)."""
    where = Path(tempfile.mkdtemp(prefix="audit-launch-"))
    try:
        env = {**os.environ, EXIT_DIR_ENV: str(where)}
        cmd = [sys.executable, "-m", ACCELERATE_LAUNCH, *accelerate_args, "-m", "audit", *command]
        proc = subprocess.Popen(cmd, env=env)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:   # the ranks got the same Ctrl-C (one process group); let them stop
            rc = proc.wait()
        code, why = _decide(read_codes(where), rc)
        if why:
            print(f"audit: error: launch: {why}", file=sys.stderr)
        return code
    finally:
        shutil.rmtree(where, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``audit launch ARGV``: split ARGV at the first ``--`` into accelerate's options and the audit command."""
    if "--" not in argv:
        if any(a in ("-h", "--help") for a in argv):
            print(USAGE)
            return EXIT_PASS
        print("audit: error: launch: put `--` before the audit command (audit launch [OPTIONS] -- run SUITE ...)",
              file=sys.stderr)
        return EXIT_ERROR
    i = argv.index("--")
    options, command = argv[:i], argv[i + 1:]
    if any(a in ("-h", "--help") for a in options):
        print(USAGE)
        return EXIT_PASS
    if command[:1] == ["audit"]:   # `-- audit run ...` reads naturally too
        command = command[1:]
    if not command:
        print("audit: error: launch: no audit command after `--` (e.g. -- run SUITE)", file=sys.stderr)
        return EXIT_ERROR
    return launch(options, command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
