"""`audit ls` lists the model kinds --model accepts, as it lists sections and backends (issue 22)."""

from __future__ import annotations

import dataclasses

from audit.cli import main


def test_ls_lists_every_model_kind_and_served_option(capsys):
    from audit.models.files import BUILTIN_NAMES
    from audit.models.served.spec import PREFIXES, ServedSpec

    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    block = out.split("models (--model, a suite's model:):\n", 1)[1]
    block = block[:block.index("\n", block.index("served options"))]
    for name in BUILTIN_NAMES:                       # a new builtin must be listed here too
        assert f"  builtin:{name} " in block
    for prefix in PREFIXES:
        assert f"  {prefix}URL[#NAME] " in block
    assert "FILE.gguf" in block and "DIR" in block
    for f in dataclasses.fields(ServedSpec):
        if f.name != "provider":
            assert f"{f.name}=" in block, f.name
    assert "builtin:smollm2" in block and ("(installed)" in block or "not installed" in block)
