import json

from n3net.cli.main import main


def test_models_lists_architectures_and_weights(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "n3net" in out and "dncnn" in out
    assert "dncnn17-gray-sigma25" in out


def test_models_json(capsys) -> None:
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "n3net-light" in data["architectures"]
    names = [row["name"] for row in data["pretrained"]]
    assert "dncnn17-gray-sigma25" in names
    row = data["pretrained"][names.index("dncnn17-gray-sigma25")]
    assert row["arch"] == "dncnn" and row["sigma"] == "25"


def test_models_marks_one_default_per_sigma_the_best_measured(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["pretrained"]
    for sigma in {row["sigma"] for row in rows}:
        same = [row for row in rows if row["sigma"] == sigma]
        defaults = [row for row in same if row["default"]]
        assert len(defaults) == 1, sigma
        measured = [float(row["bsd68_psnr"]) for row in same if row["bsd68_psnr"] != "?"]
        if measured:
            assert float(defaults[0]["bsd68_psnr"]) == max(measured)


def test_models_lists_the_classic_baselines(capsys) -> None:
    assert main(["models"]) == 0
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("classic")]
    assert len(line) == 1 and "bm3d, nlm" in line[0] and "n3net[eval]" in line[0]
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["classic"] == ["bm3d", "nlm"] and "bm3d" in data["architectures"]
