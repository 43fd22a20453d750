"""Two-view geometry of correspondence classification (paper §5.5), batched and differentiable.

Axis legend: ``B`` batch (image pairs), ``N`` correspondences per pair, ``R`` pose candidates.

Conventions, as in the data of Yi et al. that the paper uses: points are in normalised camera
coordinates (pixels minus the principal point, divided by the focal length); the relative pose
maps camera-1 coordinates to camera-2 coordinates, ``X2 = R X1 + t`` with ``|t| = 1``; the
essential matrix is ``E = [t]_x R`` and satisfies ``x2^T E x1 = 0``.

Contents: the symmetric epipolar distance (the labels), the weighted eight-point algorithm
(:func:`weighted_eight_point`, with an SVD reference beside the eigen-solver fast path), the
essential-matrix loss, the decomposition of ``E`` into a pose with the cheirality check
(:func:`recover_pose`), the rotation and translation errors and the pose mAP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "INLIER_THRESHOLD",
    "MAP_THRESHOLDS",
    "decompose_essential",
    "eight_point_rows",
    "essential_from_pose",
    "essential_loss",
    "pose_errors",
    "pose_map",
    "recover_pose",
    "rotation_error",
    "skew",
    "symmetric_epipolar_distance",
    "top_fraction",
    "translation_error",
    "triangulate_depths",
    "weighted_eight_point",
    "weighted_eight_point_reference",
    "weights_from_logits",
]

INLIER_THRESHOLD = 1e-4  # symmetric epipolar distance below which a match is an inlier (Yi et al.)
MAP_THRESHOLDS = (5, 10, 20)  # degrees
FAILED_ROTATION_DEG = 180.0  # the errors of a pair with no pose (Yi et al.'s pi and pi / 2)
FAILED_TRANSLATION_DEG = 90.0
_BIN = 5  # degrees per bin of the mAP histogram
_MAX_DEG = 30


def skew(vector: Tensor) -> Tensor:
    """Cross-product matrix ``[v]_x``, so that ``[v]_x w = v x w``.

    Shape:
        vector: (..., 3) -> (..., 3, 3).

    Example:
        >>> skew(torch.tensor([1.0, 2.0, 3.0])).tolist()
        [[0.0, -3.0, 2.0], [3.0, 0.0, -1.0], [-2.0, 1.0, 0.0]]
    """
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    rows = [torch.stack(r, -1) for r in ((zero, -z, y), (z, zero, -x), (-y, x, zero))]
    return torch.stack(rows, -2)


def essential_from_pose(rotation: Tensor, translation: Tensor) -> Tensor:
    """Essential matrix ``[t]_x R``, scaled to unit Frobenius norm.

    Shape:
        rotation: (..., 3, 3), translation: (..., 3) -> (..., 3, 3).
    """
    essential = skew(translation) @ rotation
    return essential / torch.linalg.matrix_norm(essential)[..., None, None].clamp_min(1e-12)


def _homogeneous(points: Tensor) -> Tensor:
    """(..., 2) -> (..., 3) with a trailing 1."""
    return torch.cat([points, torch.ones_like(points[..., :1])], -1)


def symmetric_epipolar_distance(x1: Tensor, x2: Tensor, essential: Tensor) -> Tensor:
    """Yi et al.'s symmetric epipolar distance (``get_episym``), the labels' criterion.

    ``d = (x2^T E x1)^2 * (1 / ((E x1)_0^2 + (E x1)_1^2) + 1 / ((E^T x2)_0^2 + (E^T x2)_1^2))``:
    the sum of the squared distances of each point to the other's epipolar line. A match is an
    inlier when ``d < INLIER_THRESHOLD`` (1e-4).

    Shape:
        x1, x2: (B, N, 2) normalised coordinates, essential: (B, 3, 3) -> (B, N).
    """
    h1, h2 = _homogeneous(x1), _homogeneous(x2)
    line2 = h1 @ essential.transpose(-1, -2)  # (B, N, 3): E x1, the epipolar line in image 2
    line1 = h2 @ essential  # (B, N, 3): E^T x2
    residual = (h2 * line2).sum(-1)  # (B, N)
    tiny = torch.finfo(residual.dtype).tiny
    norm2 = (line2[..., :2] ** 2).sum(-1).clamp_min(tiny)
    norm1 = (line1[..., :2] ** 2).sum(-1).clamp_min(tiny)
    return residual**2 * (1 / norm2 + 1 / norm1)


def eight_point_rows(x1: Tensor, x2: Tensor) -> Tensor:
    """Rows ``X_i`` of the eight-point system, ``X_i . vec(E) = x2^T E x1`` (row-major vec).

    ``X_i = [x2 x1, x2 y1, x2, y2 x1, y2 y1, y2, x1, y1, 1]``.

    Shape:
        x1, x2: (B, N, 2) -> (B, N, 9).
    """
    h1, h2 = _homogeneous(x1), _homogeneous(x2)
    return (h2[..., :, None] * h1[..., None, :]).flatten(-2)  # (B, N, 3, 3) -> (B, N, 9)


def weights_from_logits(logits: Tensor) -> Tensor:
    """Weights of the eight-point algorithm from the network's logits: ``ReLU(tanh(logit))``."""
    return torch.relu(torch.tanh(logits))


def _sign_fix(vectors: Tensor) -> Tensor:
    """Flip each vector so that its largest-magnitude entry is positive (a canonical sign)."""
    index = vectors.abs().argmax(-1, keepdim=True)
    return vectors * torch.sign(vectors.gather(-1, index)).clamp_min(0).mul(2).sub(1)


def weighted_eight_point_reference(x1: Tensor, x2: Tensor, weights: Tensor) -> Tensor:
    """Weighted eight-point by SVD: the smallest right singular vector of ``sqrt(w) X``.

    The obviously correct form of :func:`weighted_eight_point`: the minimiser of
    ``sum_i w_i (X_i . e)^2`` over unit vectors ``e``. Computed in float64.

    Shape:
        x1, x2: (B, N, 2), weights: (B, N) -> (B, 3, 3), unit Frobenius norm, canonical sign.
    """
    dtype = torch.promote_types(x1.dtype, torch.float64)
    rows = eight_point_rows(x1.to(dtype), x2.to(dtype))  # (B, N, 9)
    scaled = rows * weights.to(dtype).clamp_min(0).sqrt()[..., None]
    if scaled.shape[-2] < 9:  # SVD of a wide matrix: pad with zero rows (same null space)
        scaled = torch.cat([scaled, scaled.new_zeros(*scaled.shape[:-2], 9, 9)], -2)
    vector = torch.linalg.svd(scaled, full_matrices=False).Vh[..., -1, :]  # (B, 9)
    return _sign_fix(vector).unflatten(-1, (3, 3)).to(x1.dtype)


def weighted_eight_point(
    x1: Tensor,
    x2: Tensor,
    weights: Tensor,
    *,
    impl: Literal["auto", "reference", "fast"] = "auto",
) -> Tensor:
    """Weighted eight-point algorithm (Yi et al., as the paper's correspondence network uses it).

    ``M = X^T diag(w) X`` (9 x 9, ``X`` the rows of :func:`eight_point_rows`); the estimate ``e``
    is the eigenvector of the smallest eigenvalue of ``M``, unit norm, reshaped row-major into
    ``E`` with ``x2^T E x1 = 0``. As in the original, no rank-2 projection is applied and the
    points are used as given (normalised camera coordinates, no further conditioning). The
    eigen-decomposition runs in float64 (a 9 x 9 matrix per pair) and is differentiable.
    ``impl="reference"`` uses :func:`weighted_eight_point_reference` (SVD, slower for large
    ``N``); both give the same ``E`` with the same canonical sign (largest entry positive).

    Args:
        x1, x2: the correspondences in normalised coordinates.
        weights: non-negative per-match weights (0 for padding), e.g.
            :func:`weights_from_logits`.
        impl: ``"auto"``/``"fast"`` (eigen-solver) or ``"reference"`` (SVD).

    Shape:
        x1, x2: (B, N, 2), weights: (B, N) -> (B, 3, 3).

    Example:
        >>> x1, x2 = torch.randn(2, 20, 2), torch.randn(2, 20, 2)
        >>> weighted_eight_point(x1, x2, torch.ones(2, 20)).shape
        torch.Size([2, 3, 3])
    """
    if x1.shape != x2.shape or x1.dim() != 3 or x1.shape[-1] != 2:
        raise ValueError(
            f"x1 and x2 must both be (B, N, 2), got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    if tuple(weights.shape) != tuple(x1.shape[:2]):
        raise ValueError(
            f"weights must be (B, N) = {tuple(x1.shape[:2])}, got {tuple(weights.shape)}"
        )
    if impl == "reference":
        return weighted_eight_point_reference(x1, x2, weights)
    if impl not in ("auto", "fast"):
        raise ValueError(f"impl must be 'auto', 'reference' or 'fast', got {impl!r}")
    dtype = torch.promote_types(x1.dtype, torch.float64)
    rows = eight_point_rows(x1.to(dtype), x2.to(dtype))  # (B, N, 9)
    moment = rows.transpose(-1, -2) @ (rows * weights.to(dtype)[..., None])  # (B, 9, 9)
    vector = torch.linalg.eigh(moment).eigenvectors[..., :, 0]  # ascending: smallest first
    return _sign_fix(vector).unflatten(-1, (3, 3)).to(x1.dtype)


def essential_loss(estimate: Tensor, target: Tensor) -> Tensor:
    """Yi et al.'s essential-matrix loss: ``mean_b min(|e - e_gt|^2, |e + e_gt|^2)``.

    Both matrices are scaled to unit Frobenius norm first (the estimate of
    :func:`weighted_eight_point` already is; ``target`` e.g. from :func:`essential_from_pose`).

    Shape:
        estimate, target: (B, 3, 3) -> scalar.
    """
    e = estimate.flatten(-2)
    g = target.flatten(-2)
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    minus = ((e - g) ** 2).sum(-1)
    plus = ((e + g) ** 2).sum(-1)
    return torch.minimum(minus, plus).mean()


def decompose_essential(essential: Tensor) -> tuple[Tensor, Tensor]:
    """The four poses an essential matrix allows: ``(R1, t), (R1, -t), (R2, t), (R2, -t)``.

    With ``E = U diag(s) V^T`` (``U``, ``V`` made proper rotations), ``R1 = U W V^T``,
    ``R2 = U W^T V^T`` and ``t = U[:, 2]``, ``W`` the 90° rotation about z.

    Shape:
        essential: (B, 3, 3) -> rotations (B, 4, 3, 3), translations (B, 4, 3).
    """
    u, _, vh = torch.linalg.svd(essential)
    # Flipping the last column of U (row of V^T) keeps U diag(s) V^T's null space and makes
    # both proper rotations; E is only defined up to sign anyway.
    u = torch.cat([u[..., :2], u[..., 2:] * torch.linalg.det(u)[..., None, None]], -1)
    vh = torch.cat([vh[..., :2, :], vh[..., 2:, :] * torch.linalg.det(vh)[..., None, None]], -2)
    w = essential.new_tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    r1, r2 = u @ w @ vh, u @ w.T @ vh
    t = u[..., :, 2]
    rotations = torch.stack([r1, r1, r2, r2], -3)
    translations = torch.stack([t, -t, t, -t], -2)
    return rotations, translations


def triangulate_depths(
    x1: Tensor, x2: Tensor, rotation: Tensor, translation: Tensor
) -> tuple[Tensor, Tensor]:
    """Depths of each match in both cameras by least squares on ``z2 x2 = z1 R x1 + t``.

    Solves the 3 x 2 system ``[R x1, -x2] (z1, z2)^T = -t`` per match in closed form (the
    midpoint of the two rays). Parallel rays give depths of huge magnitude or NaN, which
    the cheirality check's distance threshold drops.

    Shape:
        x1, x2: (B, N, 2), rotation: (B, ..., 3, 3), translation: (B, ..., 3) with the same
        middle axes ``...`` (e.g. the candidates R) -> z1, z2: (B, ..., N).
    """
    extra = rotation.dim() - 3
    h1, h2 = _homogeneous(x1), _homogeneous(x2)
    for _ in range(extra):
        h1, h2 = h1[:, None], h2[:, None]
    a = h1 @ rotation.transpose(-1, -2)  # (B, ..., N, 3): R x1
    b = -h2
    t = translation[..., None, :]
    aa, ab, bb = (a * a).sum(-1), (a * b).sum(-1), (b * b).sum(-1)
    at, bt = (a * t).sum(-1), (b * t).sum(-1)
    det = aa * bb - ab * ab
    z1 = (-at * bb + bt * ab) / det
    z2 = (-bt * aa + at * ab) / det
    return z1, z2


def recover_pose(
    essential: Tensor,
    x1: Tensor,
    x2: Tensor,
    mask: Tensor | None = None,
    distance_threshold: float = 50.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Pose from an essential matrix with the cheirality check (as OpenCV's ``recoverPose``).

    Of the four candidates of :func:`decompose_essential`, keep the one under which the most
    of the selected matches triangulate in front of both cameras, closer than
    ``distance_threshold`` (in units of the unit baseline; far points decide nothing).

    Args:
        essential: the estimates.
        x1, x2: the correspondences in normalised coordinates.
        mask: the matches that vote (e.g. the top 10 % by logit, :func:`top_fraction`);
            None means all.
        distance_threshold: depths beyond it do not count (OpenCV's default 50).

    Returns:
        ``(rotation, translation, votes)``: the chosen pose (unit ``t``) and how many matches
        passed the check for it.

    Shape:
        essential: (B, 3, 3), x1, x2: (B, N, 2), mask: (B, N) -> (B, 3, 3), (B, 3), (B,).
    """
    dtype = torch.promote_types(essential.dtype, torch.float64)
    rotations, translations = decompose_essential(essential.to(dtype))  # (B, 4, 3, 3), (B, 4, 3)
    z1, z2 = triangulate_depths(x1.to(dtype), x2.to(dtype), rotations, translations)  # (B, 4, N)
    front = (z1 > 0) & (z1 < distance_threshold) & (z2 > 0) & (z2 < distance_threshold)
    if mask is not None:
        front = front & mask[:, None, :]
    votes = front.sum(-1)  # (B, 4)
    best = votes.argmax(-1)  # (B,): the first candidate on ties
    batch = torch.arange(essential.shape[0], device=essential.device)
    rotation = rotations[batch, best].to(essential.dtype)
    translation = translations[batch, best].to(essential.dtype)
    return rotation, translation, votes[batch, best]


def top_fraction(logits: Tensor, mask: Tensor | None = None, fraction: float = 0.1) -> Tensor:
    """The ``fraction`` of each pair's valid matches with the largest logits (at least one).

    Yi et al. run the cheirality check on the top 10 % of the matches by logit.

    Shape:
        logits: (B, N), mask: (B, N) -> (B, N) bool.

    Example:
        >>> top_fraction(torch.tensor([[0.1, 3.0, -1.0, 2.0]]), fraction=0.5).tolist()
        [[False, True, False, True]]
    """
    valid = torch.ones_like(logits, dtype=torch.bool) if mask is None else mask.bool()
    counts = valid.sum(-1)  # (B,)
    keep = (counts.to(torch.float64) * fraction).ceil().long().clamp_min(1)
    scores = logits.masked_fill(~valid, -math.inf)
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(logits.shape[-1], device=logits.device).expand_as(order))
    return (rank < keep[:, None]) & valid


def rotation_error(rotation: Tensor, target: Tensor) -> Tensor:
    """Angle of ``R R_gt^T`` in radians (Yi et al.'s quaternion ``err_q``, via the trace).

    ``arccos(2 <q, q_gt>^2 - 1)`` and ``arccos((trace(R R_gt^T) - 1) / 2)`` are the same
    angle; the trace form needs no quaternion conversion. Computed in float64.

    Shape:
        rotation, target: (B, 3, 3) -> (B,).
    """
    relative = rotation.double() @ target.double().transpose(-1, -2)
    cosine = (relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.arccos(cosine.clamp(-1.0, 1.0))


def translation_error(translation: Tensor, target: Tensor) -> Tensor:
    """Angle between translation directions in radians, sign-agnostic: ``arccos(|<t, t_gt>|)``.

    At most pi / 2; NaN for a zero vector.

    Shape:
        translation, target: (B, 3) -> (B,).
    """
    t = translation.double()
    g = target.double()
    cosine = (t * g).sum(-1) / (t.norm(dim=-1) * g.norm(dim=-1))
    return torch.arccos(cosine.abs().clamp(max=1.0))


def pose_errors(
    rotation: Tensor,
    translation: Tensor,
    target_rotation: Tensor,
    target_translation: Tensor,
    success: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Rotation and translation errors in degrees; failures get 180° and 90°.

    A pair fails where ``success`` is False or an error is not finite (e.g. no pose).

    Shape:
        rotation: (B, 3, 3), translation: (B, 3), targets alike, success: (B,) -> (B,), (B,).
    """
    err_q = torch.rad2deg(rotation_error(rotation, target_rotation))
    err_t = torch.rad2deg(translation_error(translation, target_translation))
    failed = ~(torch.isfinite(err_q) & torch.isfinite(err_t))
    if success is not None:
        failed = failed | ~success.bool()
    err_q = err_q.masked_fill(failed, FAILED_ROTATION_DEG)
    err_t = err_t.masked_fill(failed, FAILED_TRANSLATION_DEG)
    return err_q, err_t


def pose_map(errors: Tensor | Sequence[float], thresholds: Sequence[int] = MAP_THRESHOLDS) -> dict:
    """Pose mAP at each threshold (Yi et al.'s protocol), from per-pair errors in degrees.

    ``acc[i]`` is the fraction of pairs with error below ``5 (i + 1)`` degrees (the cumulative
    histogram over the bins ``[0, 5, ..., 30]``) and ``mAP@theta = mean(acc[0 : theta / 5])``:
    ``mAP@5 = acc@5``, ``mAP@10 = (acc@5 + acc@10) / 2``, ``mAP@20`` the mean of four. The
    error of a pair is ``max(err_q, err_t)`` (the "qt" variant the papers report); NaN counts
    as a failure.

    Args:
        errors: one error per pair, degrees.
        thresholds: multiples of 5 up to 30.

    Returns:
        ``{theta: mAP}``, NaN for every theta when there are no pairs.

    Example:
        >>> pose_map(torch.tensor([1.0, 7.0, 12.0, 90.0]))
        {5: 0.25, 10: 0.375, 20: 0.5625}
    """
    values = torch.as_tensor(errors, dtype=torch.float64).flatten()
    for theta in thresholds:
        if not (isinstance(theta, int) and theta % _BIN == 0 and _BIN <= theta <= _MAX_DEG):
            raise ValueError(f"thresholds must be multiples of 5 in [5, 30], got {theta!r}")
    if values.numel() == 0:
        return {theta: math.nan for theta in thresholds}
    values = torch.nan_to_num(values, nan=math.inf)
    edges = torch.arange(_BIN, _MAX_DEG + 1, _BIN, dtype=torch.float64)  # 5, 10, ..., 30
    acc = (values[None, :] < edges[:, None]).double().mean(-1)  # (6,)
    return {theta: float(acc[: theta // _BIN].mean()) for theta in thresholds}
