"""Import of the authors' checkpoints: key checks, error cases, and a hand-computed forward.

The synthetic checkpoint has exactly the 140 keys and shapes of the authors' files (built here
from the layout in official_checkpoint.md), with random values. The forward pass is checked
against a direct re-implementation of the authors' semantics written below with plain loops
over the state dict, independent of n3net's modules.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from n3net.cli.main import main
from n3net.models import load_model, model_metadata
from n3net.models.official import (
    convert_official_state_dict,
    import_official,
    load_official,
    official_keys,
    read_official_checkpoint,
)

# ---------------------------------------------------------------------------------------------
# The authors' semantics, re-implemented directly (official_checkpoint.md)
# ---------------------------------------------------------------------------------------------

BN_EPS = 1e-5
PATCH, STRIDE, WINDOW, K = 10, 5, 15, 7


def _bn(x: Tensor, sd: dict[str, Tensor], p: str) -> Tensor:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = sd[p + "running_mean"].view(shape), sd[p + "running_var"].view(shape)
    return (x - mean) / torch.sqrt(var + BN_EPS) * sd[p + "weight"].view(shape) + sd[
        p + "bias"
    ].view(shape)


def dncnn_block(x: Tensor, sd: dict[str, Tensor], p: str) -> Tensor:
    h = F.relu(F.conv2d(x, sd[p + "conv1.weight"], sd[p + "conv1.bias"], padding=1))
    for j in (0, 3, 6, 9):  # bn1 is not applied
        h = F.relu(
            _bn(F.conv2d(h, sd[f"{p}layer1.{j}.weight"], padding=1), sd, f"{p}layer1.{j + 1}.")
        )
    out = F.conv2d(h, sd[p + "conv2.weight"], sd[p + "conv2.bias"], padding=1)
    r = min(x.shape[1], out.shape[1])
    out = out.clone()
    out[:, :r] = out[:, :r] + x[:, :r]
    return out


def small_cnn(x: Tensor, sd: dict[str, Tensor], p: str) -> Tensor:
    h = F.relu(_bn(F.conv2d(x, sd[p + "0.weight"], padding=1), sd, p + "1."))
    h = F.relu(_bn(F.conv2d(h, sd[p + "3.weight"], padding=1), sd, p + "4."))
    return F.conv2d(h, sd[p + "6.weight"], sd[p + "6.bias"], padding=1)


def log1mexp(a: Tensor) -> Tensor:
    return torch.where(a < math.log(0.5), torch.log1p(-torch.exp(a)), torch.log(-torch.expm1(a)))


def n3_block(y: Tensor, sd: dict[str, Tensor], p: str, stats: dict | None = None) -> Tensor:
    """The authors' N3 block on one image (batch 1)."""
    e = small_cnn(y, sd, p + "embedcnn.")
    log_t = small_cnn(y, sd, p + "tempcnn.")
    h, w = y.shape[-2:]
    ph, pw = (-(h - PATCH)) % STRIDE, (-(w - PATCH)) % STRIDE
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    yp, ep, lp = F.pad(y, pad), F.pad(e, pad), F.pad(log_t, pad)
    hp, wp = yp.shape[-2:]
    n1, n2 = (hp - PATCH) // STRIDE + 1, (wp - PATCH) // STRIDE + 1

    def patch(t: Tensor, i: int, j: int) -> Tensor:
        return t[0, :, i * STRIDE : i * STRIDE + PATCH, j * STRIDE : j * STRIDE + PATCH]

    grid = [(i, j) for i in range(n1) for j in range(n2)]
    epat = torch.stack([patch(ep, i, j).reshape(-1) for i, j in grid])  # (L, 800)
    ypat = torch.stack([patch(yp, i, j).reshape(-1) for i, j in grid])  # (L, 800)
    # Candidates by the clamp rule, and negative squared distances, one query at a time.
    cands, dists = [], []
    for q, (i, j) in enumerate(grid):
        r0 = min(max(i - 7, 0), n1 - WINDOW)
        c0 = min(max(j - 7, 0), n2 - WINDOW)
        cand = [
            a * n2 + b
            for a in range(r0, r0 + WINDOW)
            for b in range(c0, c0 + WINDOW)
            if (a, b) != (i, j)
        ]
        assert len(cand) == 224
        cands.append(torch.tensor(cand))
        dists.append(((epat[cands[-1]] - epat[q]) ** 2).sum(1))
    bn = p + "n3aggregation.aggregation.nnn.bn."
    logits = -torch.stack(dists)  # (L, 224)
    logits = (logits - sd[bn + "running_mean"]) / torch.sqrt(sd[bn + "running_var"] + BN_EPS)
    logits = logits * sd[bn + "weight"] + sd[bn + "bias"]
    mean_l = torch.stack([patch(lp, i, j).sum() / 100 for i, j in grid])  # (L,)
    alpha = logits / torch.exp(mean_l + math.log(0.1))[:, None]
    rounds = []
    for _ in range(K):
        log_w = torch.log_softmax(alpha, 1)
        rounds.append(log_w.exp())
        alpha = alpha + log1mexp(log_w)
    weights = torch.stack(rounds, 1)  # (L, K, 224)
    max_w = float(weights.max())
    # Neighbour volumes: weighted candidate Y patches, summed into the image and averaged.
    volumes = torch.zeros(K, y.shape[1], hp, wp, dtype=y.dtype)
    count = torch.zeros(hp, wp, dtype=y.dtype)
    for q, (i, j) in enumerate(grid):
        vol = weights[q] @ ypat[cands[q]]  # (K, C * 100)
        rows = slice(i * STRIDE, i * STRIDE + PATCH)
        cols = slice(j * STRIDE, j * STRIDE + PATCH)
        volumes[:, :, rows, cols] += vol.reshape(K, y.shape[1], PATCH, PATCH)
        count[rows, cols] += 1
    if stats is not None:
        stats["max_weight"] = max(stats.get("max_weight", 0.0), max_w)
    volumes = (volumes / count)[:, :, pad[2] : pad[2] + h, pad[0] : pad[0] + w]
    return torch.cat([y] + [volumes[r : r + 1] - y for r in range(K)], dim=1)


def authors_forward(x: Tensor, sd: dict[str, Tensor], stats: dict | None = None) -> Tensor:
    """x -> blocks.0 -> nls.0 -> blocks.1 -> nls.1 -> blocks.2 (no global skip)."""
    y = dncnn_block(x, sd, "blocks.0.")
    y = n3_block(y, sd, "nls.0.", stats)
    y = dncnn_block(y, sd, "blocks.1.")
    y = n3_block(y, sd, "nls.1.", stats)
    return dncnn_block(y, sd, "blocks.2.")


# ---------------------------------------------------------------------------------------------
# Synthetic checkpoints
# ---------------------------------------------------------------------------------------------

_BN = ("weight", "bias", "running_mean", "running_var")
# Key, shape and dtype of every tensor in the authors' checkpoints, as listed from their files.
_FACTS = Path(__file__).resolve().parent / "data" / "official_checkpoint_keys.txt"


def authors_key_shapes() -> dict[str, tuple[int, ...]]:
    """The 140 keys and shapes of the authors' state dict, in file order."""
    spec: dict[str, tuple[int, ...]] = {}
    for i, (c_in, c_out) in enumerate([(1, 8), (64, 8), (64, 1)]):
        p = f"blocks.{i}."
        spec[p + "conv1.weight"], spec[p + "conv1.bias"] = (64, c_in, 3, 3), (64,)
        spec.update({f"{p}bn1.{n}": (64,) for n in _BN})
        for j in (0, 3, 6, 9):
            spec[f"{p}layer1.{j}.weight"] = (64, 64, 3, 3)
            spec.update({f"{p}layer1.{j + 1}.{n}": (64,) for n in _BN})
        spec[p + "conv2.weight"], spec[p + "conv2.bias"] = (c_out, 64, 3, 3), (c_out,)
    for i in (0, 1):
        for net, c_out in (("embedcnn", 8), ("tempcnn", 1)):
            p = f"nls.{i}.{net}."
            spec[p + "0.weight"] = (64, 8, 3, 3)
            spec.update({f"{p}1.{n}": (64,) for n in _BN})
            spec[p + "3.weight"] = (64, 64, 3, 3)
            spec.update({f"{p}4.{n}": (64,) for n in _BN})
            spec[p + "6.weight"], spec[p + "6.bias"] = (c_out, 64, 3, 3), (c_out,)
        spec.update({f"nls.{i}.n3aggregation.aggregation.nnn.bn.{n}": (1,) for n in _BN})
    return spec


def synthetic_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """Random float32 weights of moderate size: activations and logits stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in authors_key_shapes().items():
        if key.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 4:  # conv weights, fan-in scaled
            v = torch.randn(shape, generator=g) / math.sqrt(shape[1] * 9)
        elif key.endswith("weight"):
            v = 0.5 + torch.rand(shape, generator=g)
        else:
            v = 0.1 * torch.randn(shape, generator=g)
        sd[key] = v
    for i in (0, 1):  # temperatures around 1, logits scaled down a little
        sd[f"nls.{i}.tempcnn.6.bias"] = torch.tensor([math.log(10.0)])
        sd[f"nls.{i}.n3aggregation.aggregation.nnn.bn.running_var"] = torch.tensor([2.0])
    return sd


def save_legacy(obj: object, path: Path) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def state() -> dict[str, Tensor]:
    return synthetic_state_dict()


@pytest.fixture(scope="module")
def image_and_expected(state: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict]:
    """A 83x91 image (16x18 patch grid) and the authors' output for it, in float64."""
    x = torch.rand(1, 1, 83, 91, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    stats: dict = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: threads only add overhead (and contention)
    try:
        expected = authors_forward(x, {k: v.double() for k, v in state.items()}, stats)
    finally:
        torch.set_num_threads(threads)
    return x, expected, stats


@pytest.fixture()
def checkpoint(tmp_path: Path, state: dict[str, Tensor]) -> Path:
    return save_legacy({"net": state, "epoch": 51}, tmp_path / "051_ckpt.t7")


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_key_table_matches_the_facts() -> None:
    spec = authors_key_shapes()
    assert len(spec) == 140
    assert official_keys() == spec
    rows = [line.split(" (") for line in _FACTS.read_text().splitlines() if line[:1] != "#"]
    facts = {
        name: tuple(int(v) for v in rest.split(")")[0].split(",") if v.strip())
        for name, rest in rows
    }
    assert facts == spec


def test_every_tensor_is_mapped(checkpoint: Path, state: dict[str, Tensor]) -> None:
    model = load_official(checkpoint)
    ours = model.state_dict()
    renames = {
        "embedcnn": "embedding",
        "tempcnn": "temperature_net",
        "n3aggregation.aggregation.nnn.bn": "logits_bn",
    }
    used = set()
    for key, value in state.items():
        if ".bn1." in key:
            continue
        name = key.replace("nls.", "n3.")
        for old, new in renames.items():
            name = name.replace(f".{old}.", f".{new}.")
        assert torch.equal(ours[name], value), key
        used.add(name)
    rest = set(ours) - used
    assert rest and all(k.endswith("num_batches_tracked") for k in rest)
    assert len(used) == 128


def test_forward_matches_the_authors_semantics(
    tmp_path: Path, checkpoint: Path, image_and_expected: tuple[Tensor, Tensor, dict]
) -> None:
    out_file = tmp_path / "model.safetensors"
    import_official(checkpoint, out_file, sigma=25)
    model = load_model(out_file).double()
    x, expected, stats = image_and_expected
    assert 0.01 < stats["max_weight"] < 0.9  # informative, well-conditioned weights
    with torch.no_grad():
        got = model(x)
    assert got.shape == expected.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-8)


def test_import_writes_metadata(tmp_path: Path, checkpoint: Path) -> None:
    out = tmp_path / "m.safetensors"
    import_official(checkpoint, out, sigma=50)
    meta = model_metadata(out)
    assert meta["n3net_arch"] == "n3net"
    assert meta["sigma"] == "50" and meta["channels"] == "1"
    assert "authors" in meta["source"]
    with pytest.raises(FileExistsError, match="overwrite"):
        import_official(checkpoint, out)
    import_official(checkpoint, out, overwrite=True)
    with pytest.raises(ValueError, match="safetensors"):
        import_official(checkpoint, tmp_path / "m.pt")


def test_bare_state_dict_and_batch_counters(tmp_path: Path, state: dict[str, Tensor]) -> None:
    with_counts = dict(state)
    for key in list(state):
        if key.endswith("running_mean"):
            with_counts[key.replace("running_mean", "num_batches_tracked")] = torch.tensor(7)
    path = save_legacy(with_counts, tmp_path / "bare.t7")
    model = load_official(path)
    assert int(model.state_dict()["blocks.0.layer1.1.num_batches_tracked"]) == 7
    assert int(model.state_dict()["n3.1.logits_bn.num_batches_tracked"]) == 7


def _read_error(tmp_path: Path, net: dict[str, Tensor]) -> str:
    path = save_legacy({"net": net, "epoch": 51}, tmp_path / "bad.t7")
    with pytest.raises(ValueError) as info:
        read_official_checkpoint(path)
    return str(info.value)


def test_unknown_key(tmp_path: Path, state: dict[str, Tensor]) -> None:
    message = _read_error(tmp_path, {**state, "nls.2.embedcnn.0.weight": torch.zeros(1)})
    assert "unknown keys: nls.2.embedcnn.0.weight" in message


def test_missing_keys_listed_briefly(tmp_path: Path, state: dict[str, Tensor]) -> None:
    net = {k: v for k, v in state.items() if not k.startswith("blocks.2.")}
    message = _read_error(tmp_path, net)
    assert "missing keys: blocks.2." in message and "more)" in message
    assert "\n" not in message


def test_wrong_shape(tmp_path: Path, state: dict[str, Tensor]) -> None:
    message = _read_error(tmp_path, {**state, "blocks.0.conv1.weight": torch.zeros(64, 3, 3, 3)})
    assert "wrong shapes: blocks.0.conv1.weight (64, 3, 3, 3) (expected (64, 1, 3, 3))" in message


class _Payload:
    def __reduce__(self):  # would run code when unpickled without weights_only
        return (print, ("unpickled!",))


def test_pickle_with_code_is_refused(tmp_path: Path, state: dict[str, Tensor]) -> None:
    path = save_legacy({"net": state, "epoch": 51, "args": _Payload()}, tmp_path / "evil.t7")
    with pytest.raises(ValueError, match="not a plain checkpoint"):
        read_official_checkpoint(path)
    garbage = tmp_path / "garbage.t7"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.t7"):
        read_official_checkpoint(garbage)
    truncated = tmp_path / "truncated.t7"
    truncated.write_bytes(path.read_bytes()[:3])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        read_official_checkpoint(truncated)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = save_legacy({"epoch": 51}, tmp_path / "x.t7")
    with pytest.raises(ValueError, match="no state dict"):
        read_official_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        read_official_checkpoint(tmp_path / "absent.t7")


def test_convert_drops_bn1(state: dict[str, Tensor]) -> None:
    converted = convert_official_state_dict(state)
    assert not any(".bn1." in k or k.startswith("nls.") for k in converted)


def test_cli(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pretrained_sigma70" / "checkpoint"
    folder.mkdir(parents=True)
    ckpt = checkpoint.rename(folder / checkpoint.name)
    out = tmp_path / "n3net-sigma70.safetensors"
    assert main(["import-official", str(ckpt), "-o", str(out)]) == 0
    assert "sigma 70" in capsys.readouterr().out
    assert model_metadata(out)["sigma"] == "70"
    assert main(["import-official", str(ckpt), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["import-official", str(ckpt), "-o", str(out), "--overwrite", "--sigma", "65"]) == 0
    assert model_metadata(out)["sigma"] == "65"
    bad = save_legacy({"net": {"x": torch.zeros(1)}}, tmp_path / "bad.t7")
    assert main(["import-official", str(bad), "-o", str(tmp_path / "b.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("n3net: error:") and "\n" not in err
