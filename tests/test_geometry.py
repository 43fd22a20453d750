"""Two-view geometry: exact synthetic data, reference vs fast eight-point, metrics by hand."""

from __future__ import annotations

import math

import pytest
import torch

from n3net import geometry as g


def _rotation(axis: list[float], degrees: float) -> torch.Tensor:
    vector = torch.tensor(axis, dtype=torch.float64)
    k = g.skew(vector / vector.norm())
    angle = math.radians(degrees)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _exact_pairs(b: int = 3, n: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """Noise-free matches of random points in front of both cameras, poses of b pairs."""
    gen = torch.Generator().manual_seed(seed)
    rotations = torch.stack([_rotation([0.2, 1.0, 0.1 * i], 5.0 + 7 * i) for i in range(b)])
    translations = torch.randn(b, 3, generator=gen, dtype=torch.float64)
    translations = translations / translations.norm(dim=-1, keepdim=True)
    points = torch.rand(b, n, 3, generator=gen, dtype=torch.float64) * 4 - 2
    points[..., 2] = points[..., 2].abs() + 6  # depths 6-8
    in2 = points @ rotations.transpose(-1, -2) + translations[:, None]
    x1 = points[..., :2] / points[..., 2:]
    x2 = in2[..., :2] / in2[..., 2:]
    return {"x1": x1, "x2": x2, "R": rotations, "t": translations}


def test_skew_is_the_cross_product() -> None:
    v, w = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose((g.skew(v) @ w[..., None])[..., 0], torch.linalg.cross(v, w), atol=1e-6)


def test_exact_matches_lie_on_their_epipolar_lines() -> None:
    data = _exact_pairs()
    essential = g.essential_from_pose(data["R"], data["t"])
    distance = g.symmetric_epipolar_distance(data["x1"], data["x2"], essential)
    assert distance.max() < 1e-20
    assert torch.allclose(torch.linalg.matrix_norm(essential), torch.ones(3, dtype=torch.float64))


def test_symmetric_epipolar_distance_by_hand() -> None:
    # E = [t]_x with t = x: pure translation along x, epipolar lines are image rows.
    essential = g.skew(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))[None]
    x1 = torch.tensor([[[0.1, 0.2]]], dtype=torch.float64)
    x2 = torch.tensor([[[0.5, 0.23]]], dtype=torch.float64)  # 0.03 off the row in both images
    distance = g.symmetric_epipolar_distance(x1, x2, essential)
    assert distance.item() == pytest.approx(2 * 0.03**2)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_eight_point_recovers_e_up_to_scale(impl: str) -> None:
    data = _exact_pairs()
    truth = g.essential_from_pose(data["R"], data["t"])
    weights = torch.ones(data["x1"].shape[:2], dtype=torch.float64)
    estimate = g.weighted_eight_point(data["x1"], data["x2"], weights, impl=impl)
    assert g.essential_loss(estimate, truth).item() < 1e-16
    assert torch.allclose(torch.linalg.matrix_norm(estimate), torch.ones(3, dtype=torch.float64))


def test_weights_switch_off_outliers() -> None:
    data = _exact_pairs(n=40)
    x2 = data["x2"].clone()
    x2[:, 30:] = torch.rand(3, 10, 2, dtype=torch.float64)  # 10 wrong matches per pair
    weights = torch.ones(3, 40, dtype=torch.float64)
    truth = g.essential_from_pose(data["R"], data["t"])
    assert g.essential_loss(g.weighted_eight_point(data["x1"], x2, weights), truth) > 1e-3
    weights[:, 30:] = 0
    assert g.essential_loss(g.weighted_eight_point(data["x1"], x2, weights), truth) < 1e-16


@pytest.mark.parametrize("n", [8, 9, 50], ids=["n8", "n9", "n50"])
def test_eight_point_fast_equals_reference(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    x1 = torch.randn(4, n, 2, generator=gen, dtype=torch.float64)
    x2 = torch.randn(4, n, 2, generator=gen, dtype=torch.float64)
    weights = torch.rand(4, n, generator=gen, dtype=torch.float64)
    fast = g.weighted_eight_point(x1, x2, weights, impl="fast")
    reference = g.weighted_eight_point(x1, x2, weights, impl="reference")
    assert torch.allclose(fast, reference, atol=1e-7)


def test_eight_point_gradients_agree_and_are_finite() -> None:
    data = _exact_pairs(b=2, n=20)
    x1 = data["x1"] + 1e-3 * torch.randn_like(data["x1"])  # non-degenerate smallest eigenvalue
    truth = g.essential_from_pose(data["R"], data["t"])
    grads = []
    for impl in ("fast", "reference"):
        weights = torch.rand(2, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        weights.requires_grad_(True)
        g.essential_loss(
            g.weighted_eight_point(x1, data["x2"], weights, impl=impl), truth
        ).backward()
        grads.append(weights.grad)
    assert torch.isfinite(grads[0]).all()
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_eight_point_gradcheck() -> None:
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randn(1, 12, 2, generator=gen, dtype=torch.float64)
    x2 = torch.randn(1, 12, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(1, 3, 3, generator=gen, dtype=torch.float64)
    weights = torch.rand(1, 12, generator=gen, dtype=torch.float64).requires_grad_(True)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return g.essential_loss(g.weighted_eight_point(x1, x2, w), target)

    assert torch.autograd.gradcheck(loss, (weights,))


def test_eight_point_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"x1 and x2 must both be \(B, N, 2\)"):
        g.weighted_eight_point(torch.zeros(1, 9, 3), torch.zeros(1, 9, 3), torch.ones(1, 9))
    with pytest.raises(ValueError, match=r"weights must be \(B, N\) = \(1, 9\), got \(9,\)"):
        g.weighted_eight_point(torch.zeros(1, 9, 2), torch.zeros(1, 9, 2), torch.ones(9))
    with pytest.raises(ValueError, match="impl must be"):
        g.weighted_eight_point(
            torch.zeros(1, 9, 2), torch.zeros(1, 9, 2), torch.ones(1, 9), impl="x"
        )


def test_essential_loss_ignores_sign_and_scale() -> None:
    e = torch.randn(2, 3, 3, dtype=torch.float64)
    assert g.essential_loss(-3 * e, e).item() == pytest.approx(0.0, abs=1e-12)
    unit = e / torch.linalg.matrix_norm(e)[..., None, None]
    other = torch.randn(2, 3, 3, dtype=torch.float64)
    other = other / torch.linalg.matrix_norm(other)[..., None, None]
    expected = torch.minimum(((unit - other) ** 2).sum((1, 2)), ((unit + other) ** 2).sum((1, 2)))
    assert g.essential_loss(unit, other).item() == pytest.approx(expected.mean().item())


def test_decomposition_contains_the_true_pose() -> None:
    data = _exact_pairs()
    rotations, translations = g.decompose_essential(g.essential_from_pose(data["R"], data["t"]))
    assert rotations.shape == (3, 4, 3, 3) and translations.shape == (3, 4, 3)
    dets = torch.linalg.det(rotations)
    assert torch.allclose(dets, torch.ones_like(dets))
    for b in range(3):
        errors = [
            g.rotation_error(rotations[b, i][None], data["R"][b][None]).item()
            + (translations[b, i] - data["t"][b]).norm().item()
            for i in range(4)
        ]
        assert min(errors) < 1e-6


def test_recover_pose_gives_zero_error_on_exact_data() -> None:
    data = _exact_pairs()
    essential = g.essential_from_pose(data["R"], data["t"])
    for sign in (1.0, -1.0):  # E is defined up to sign
        rotation, translation, votes = g.recover_pose(sign * essential, data["x1"], data["x2"])
        err_q, err_t = g.pose_errors(rotation, translation, data["R"], data["t"])
        assert err_q.max() < 1e-5 and err_t.max() < 1e-5
        assert torch.allclose(translation, data["t"], atol=1e-6)  # the sign is resolved too
        assert votes.tolist() == [40, 40, 40]


def test_triangulated_depths_are_the_true_ones() -> None:
    data = _exact_pairs(b=1, n=5)
    z1, z2 = g.triangulate_depths(data["x1"], data["x2"], data["R"], data["t"])
    x1h = torch.cat([data["x1"], torch.ones(1, 5, 1, dtype=torch.float64)], -1)
    points = x1h * z1[..., None]
    in2 = points @ data["R"].transpose(-1, -2) + data["t"][:, None]
    assert torch.allclose(in2[..., 2], z2) and (z1 > 5).all()


def test_top_fraction_respects_the_mask() -> None:
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0, 9.0, 8.0]])
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    kept = g.top_fraction(logits, mask, fraction=0.5)
    assert kept.tolist() == [[True, True, True, False, False, False],
                             [False, False, True, True, False, False]]  # fmt: skip
    assert g.top_fraction(logits, mask, fraction=0.01).sum(-1).tolist() == [1, 1]


def test_pose_errors_by_hand() -> None:
    eye = torch.eye(3, dtype=torch.float64)[None].repeat(3, 1, 1)
    rotations = torch.stack([torch.eye(3, dtype=torch.float64), _rotation([0, 0, 1], 30),
                             _rotation([1, 1, 0], 90)])  # fmt: skip
    t = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0]], dtype=torch.float64)
    t_gt = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=torch.float64)
    err_q, err_t = g.pose_errors(rotations, t, eye, t_gt)
    assert err_q.tolist() == pytest.approx([0.0, 30.0, 90.0], abs=1e-6)
    assert err_t.tolist() == pytest.approx([0.0, 45.0, 0.0], abs=1e-6)  # sign-agnostic
    err_q, err_t = g.pose_errors(rotations, t, eye, t_gt, torch.tensor([True, False, True]))
    assert err_q[1].item() == 180.0 and err_t[1].item() == 90.0
    err_q, err_t = g.pose_errors(eye, torch.zeros(3, 3, dtype=torch.float64), eye, t_gt)
    assert err_q.tolist() == [180.0] * 3 and err_t.tolist() == [90.0] * 3  # no translation


def test_pose_map_by_hand() -> None:
    # acc@5, 10, 15, 20 = 1/5, 2/5, 3/5, 3/5 (4.99, 5.0, 14.9; 20 is not below 20; NaN fails)
    errors = [4.99, 5.0, 14.9, 20.0, math.nan]
    maps = g.pose_map(errors)
    assert maps[5] == pytest.approx(0.2)
    assert maps[10] == pytest.approx((0.2 + 0.4) / 2)
    assert maps[20] == pytest.approx((0.2 + 0.4 + 0.6 + 0.6) / 4)
    assert g.pose_map([], (5,)) == {5: pytest.approx(math.nan, nan_ok=True)}
    assert g.pose_map([0.0] * 3, (30,)) == {30: 1.0}
    with pytest.raises(ValueError, match="multiples of 5"):
        g.pose_map([1.0], (7,))
