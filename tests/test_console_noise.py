"""What a new user sees on the console (issue 25): a note before a long first build, no library chatter."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import write_suite


def test_a_first_build_of_builtin_tiny_is_announced_before_it_starts(tmp_path, monkeypatch):
    from audit.models.builtin import TINY_VERSION, first_build_note

    monkeypatch.setenv("AUDIT_CACHE", str(tmp_path))
    note = first_build_note("builtin:tiny")
    assert note and "once" in note and str(tmp_path / f"builtin-tiny-{TINY_VERSION}") in note
    (tmp_path / f"builtin-tiny-{TINY_VERSION}").mkdir()
    (tmp_path / f"builtin-tiny-{TINY_VERSION}" / "config.json").write_text("{}")
    assert first_build_note("builtin:tiny") is None          # built: nothing to say
    assert first_build_note("builtin:micro") is None and first_build_note(str(tmp_path)) is None


def test_a_run_prints_no_library_chatter(tmp_path, support_like):
    """rouge-score's absl "Using default tokenizer." and matplotlib's "generated new fontManager" (a fresh font
    cache) reached the console through the root logger at INFO."""
    suite = write_suite(tmp_path, f"""
name: noise
model: builtin:micro
data: {support_like}
generation: {{max_new_tokens: 4, batch_size: 8}}
sections:
  quality: {{metrics: [rouge_l, chrf]}}
""")
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}   # a fresh matplotlib cache: it logs its rebuild
    # matplotlib is imported lazily by libraries mid-run, after the CLI set up logging: do the same.
    code = ("import sys\nfrom audit import cli\nsetup = cli._setup_logging\n"
            "def setup_then_matplotlib(args):\n    setup(args)\n    import matplotlib.font_manager\n"
            "cli._setup_logging = setup_then_matplotlib\nraise SystemExit(cli.main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "run", str(suite), "--out", str(tmp_path / "o")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "quality.rouge_l" in r.stdout
    for chatter in ("Using default tokenizer", "fontManager"):
        assert chatter not in r.stderr, r.stderr


def test_attack_progress_shows_counts_not_a_misleading_eta():
    from audit.attacks.run import attack_bar

    bar = attack_bar(12, "attack deepwordbug")
    try:
        bar.update(1)
        text = str(bar)
    finally:
        bar.close()
    assert "1/12 examples" in text and "elapsed" in text
    assert "<" not in text and "?" not in text      # tqdm's "[elapsed<remaining, rate]" is gone


def test_quiet_hides_the_builtin_tiny_build_bar(tmp_path, capfd):
    """-q sets the audit logger to WARNING; the first build's training bar followed a hard-coded progress=True."""
    import logging

    from audit.models.builtin import build_tiny

    audit_log = logging.getLogger("audit")
    old = audit_log.level
    try:
        audit_log.setLevel(logging.WARNING)
        capfd.readouterr()
        build_tiny(tmp_path / "quiet", steps=2)
        assert "builtin:tiny" not in capfd.readouterr().err
        audit_log.setLevel(logging.INFO)
        build_tiny(tmp_path / "loud", steps=2)
        assert "builtin:tiny" in capfd.readouterr().err
    finally:
        audit_log.setLevel(old)


def test_textattacks_first_import_says_nothing_about_downloading(tmp_path):
    """In an empty ~/.cache/textattack (a fresh machine) TextAttack's first import logged "Updating TextAttack
    package dependencies." and "Downloading NLTK required packages." while audit had replaced every download."""
    from audit.io.paths import cache_dir

    env = {**os.environ, "HOME": str(tmp_path), "AUDIT_CACHE": str(cache_dir())}
    env.pop("TA_CACHE_DIR", None)
    code = "from audit.attacks.offline import import_textattack\nimport_textattack()\nprint('imported')\n"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / ".cache" / "textattack" / "post_install_check_3").exists()   # it did run its post-install
    assert "imported" in r.stdout
    out = r.stdout + r.stderr
    assert "Downloading NLTK" not in out and "Updating TextAttack" not in out, out[-2000:]
