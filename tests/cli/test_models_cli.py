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
