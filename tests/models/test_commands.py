"""`flaxnets models` and `flaxnets summary`."""

import json

from flaxnets.cli import main


def test_models_json_lists_every_model(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["efficientnet_b0"]["params"] == 5_288_548
    assert isinstance(by_name["efficientnet_b0"]["macs"], int)
    assert by_name["mobilenet_v3_large"]["resolution"] == 224
    assert len(rows) == 32


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_v3_small" in out and "2,542,856" in out
    large = next(line.split() for line in out.splitlines() if line.startswith("mobilenet_v3_large "))
    # name, params, our MACs, the published figure, resolution, top-1
    assert large == ["mobilenet_v3_large", "5,483,032", "216.59M", "219M", "224", "75.2"]


def test_summary_totals_and_resolution(capsys):
    assert main(["summary", "mobilenet_v3_small", "--resolution", "96"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "mobilenet_v3_small at 96x96"
    assert "2,542,856" in out[-1]
    assert any(line.startswith("stem_conv") and "48x48x16" in line for line in out)


def test_summary_unknown_name_exits_2_with_one_line(capsys):
    assert main(["summary", "mobilenet_v3_larg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mobilenet_v3_larg" in err[0] and "mobilenet_v3_large" in err[0]


def test_readme_zoo_table_is_what_flaxnets_models_prints(capsys):
    from pathlib import Path

    from flaxnets.commands.models import row_cells

    assert main(["models", "--json"]) == 0
    expected = [row_cells(r) for r in json.loads(capsys.readouterr().out)]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = {row[0] for row in expected}
    table = [[cell.strip() for cell in line.strip("|").split("|")]
             for line in readme.splitlines() if line.startswith("| ")]
    assert [row for row in table if row[0] in names] == expected
