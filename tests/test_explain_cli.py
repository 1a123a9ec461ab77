"""`audit explain`: files, exit codes, escaping, and the heatmap page in a real headless Chromium."""

from __future__ import annotations


import pytest

from audit.cli import main
from audit.explain import Explanation
from audit.report.browser import Page, find_chromium

EVIL_PROMPT = "<script>alert('p')</script> & \"quotes\""
EVIL_TARGET = " <img src=x onerror=alert(1)></script>"


@pytest.fixture(scope="module")
def written(micro_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    html, js = out / "e.html", out / "e.json"
    rc = main(["explain", "--model", str(micro_path), "--prompt", EVIL_PROMPT, "--target", EVIL_TARGET,
               "-o", str(html), "-o", str(js), "-q"])
    return rc, html, js


def test_writes_json_and_html(written, capsys):
    rc, html, js = written
    assert rc == 0
    e = Explanation.from_json(js.read_text())
    assert e.prompt == EVIL_PROMPT and e.target == EVIL_TARGET
    assert e.method == "integrated_gradients" and e.completeness_error() < 0.01
    assert len(e.attributions) == len(e.target_tokens)


def test_html_escapes_untrusted_text(written):
    _, html, _ = written
    text = html.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert" in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    # The JSON for the script cannot close its <script> block.
    data = text.split('type="application/json"', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and "\\u003c" in data


@pytest.mark.skipif(find_chromium() is None, reason="needs a chromium binary")
def test_heatmap_page_in_chromium(written):
    _, html, js = written
    e = Explanation.from_json(js.read_text())
    with Page(width=1100, height=800) as page:
        page.open(html)
        assert page.problems() == []   # no console errors, no CSP violation, no alert dialog
        n_spans = page.eval("document.querySelectorAll('.interactive .tok').length")
        assert n_spans == len(e.source_tokens)
        # Hover the last generated token: its sources get colors, the tokens after it none.
        last = len(e.source_tokens) - 1
        page.eval(f"document.querySelectorAll('.interactive .tok')[{last}].dispatchEvent(new MouseEvent('mouseenter'))")
        colors = page.eval("Array.from(document.querySelectorAll('.interactive .tok')).map(s => s.style.backgroundColor)")
        titles = page.eval("Array.from(document.querySelectorAll('.interactive .tok')).map(s => s.title)")
        row = e.attributions[-1]
        best = max(range(last), key=lambda j: abs(row[j]))
        assert colors[best].startswith("rgba(") and colors[last] in ("", "transparent", "rgba(0, 0, 0, 0)")
        assert float(titles[best]) == pytest.approx(row[best], rel=1e-3)
        # The server-rendered rows show every score on hover without JavaScript.
        rows = page.eval("document.querySelectorAll('table.heat tr').length")
        assert rows == len(e.target_tokens)
        assert page.eval("document.title") == "audit explain"
        assert page.problems() == []


def test_cli_errors_exit_2(micro_path, tmp_path, capsys):
    assert main(["explain", "--model", str(micro_path), "--prompt", "x", "--method", "integrated_gradient"]) == 2
    assert "did you mean 'integrated_gradients'" in capsys.readouterr().err
    assert main(["explain", "--model", str(micro_path), "--prompt", "x", "-o", str(tmp_path / "e.txt")]) == 2
    assert "use .json or .html" in capsys.readouterr().err
    assert not (tmp_path / "e.txt").exists()
    assert main(["explain", "--model", str(tmp_path / "missing"), "--prompt", "x"]) == 2


def test_cli_prints_a_summary_and_ls_lists_methods(micro_path, capsys):
    assert main(["explain", "--model", str(micro_path), "--prompt", "Hello", "--max-new-tokens", "3",
                 "--method", "feature_ablation", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("feature_ablation: ") and "faithfulness" in out and "<-" in out
    assert main(["ls"]) == 0
    listing = capsys.readouterr().out
    section = listing.split("attribution methods:", 1)[1]
    for name in ("integrated_gradients", "input_x_gradient", "saliency", "feature_ablation", "shapley_sampling", "attention"):
        assert f"  {name}\n" in section
    assert "attribution.faithfulness ↑" in listing
