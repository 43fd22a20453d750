"""A seeded synthetic two-view benchmark of putative correspondences ("synth2v"), numpy only.

Axis legend: ``N`` correspondences per pair, ``S`` scene points, ``P`` planes.

One pair: two pinhole cameras (640 x 480, the same focal length f ~ U[400, 800] px, principal
point at the centre); camera 1 at the origin looking along +z, camera 2 rotated by up to 30°
about a random axis biased to yaw and moved by a baseline of 0.3-1.5 units in a random
direction of the forward hemisphere. The scene: a ground plane, 2-4 facades (depth 5-15) with a
repeated-texture lattice of period 0.3-1.0, 0-3 boxes, and 10-30 % clutter points floating in
the frustum; about 6000 points are cast from camera 1 onto the nearest surface and kept when
both cameras see them (a pair with fewer than 300 is drawn again from the same generator).

Rows: ``N`` matches, of which a share ``r`` (log-uniform in [0.05, 0.5]) are true matches with
Gaussian pixel noise (sigma ~ U[0.5, 1.5] px per view); every other row keeps a true keypoint
in image 1 and gets a wrong ``x2`` of one of four kinds, mixed per pair by a Dirichlet draw:
uniform in image 2; the projection of the lattice point one or two periods away on the same
facade (repeated texture); the true ``x2`` moved by 8-40 px (a near miss); a point at a wrong
depth on the true epipolar line, pushed off it so that its epipolar distance is 0.5-4 times
the threshold. Labels are always recomputed as ``symmetric epipolar distance < 1e-4`` in
normalised coordinates, whatever the kind; ``gen_type`` records the kind (0 true match, 1-4 the
outlier kinds) for diagnostics. Rows are shuffled.

Everything is drawn from the one ``numpy.random.Generator`` given, so a pair is a pure function
of its seed; :func:`n3net.data.correspondences.synthetic_pair` seeds pair ``i`` of a split with
``default_rng([split_seed, i])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GEN_TYPES", "SyntheticConfig", "generate_pair"]

GEN_TYPES = ("inlier", "uniform", "repeated", "near-miss", "epipolar-near")
_MAX_ATTEMPTS = 100
_Z_NEAR, _Z_FAR = 1.0, 30.0  # depths at which cast rays may hit a surface


@dataclass(frozen=True)
class SyntheticConfig:
    """The benchmark's parameters (the defaults are the design's).

    Attributes:
        num_points: matches per pair (N).
        width, height: image size in pixels.
        focal: range of the focal length in pixels (both views share it).
        max_rotation_deg: largest rotation angle of camera 2.
        baseline: range of the baseline length (scene depths are 4-20).
        inlier_ratio: range of the share of true matches (drawn log-uniformly).
        pixel_noise: range of the pixel noise sigma of true keypoints.
        near_miss_px: range of the offset of near-miss outliers, pixels.
        epipolar_offset: range of the epipolar distance of epipolar-near outliers, in
            multiples of ``threshold``.
        surface_points: rays cast from camera 1 into the scene.
        min_covisible: fewest scene points both cameras must see.
        threshold: symmetric epipolar distance of an inlier (normalised coordinates).
        side_info: also return a noisy "ratio test" score per match (Beta(2, 5) for inliers,
            Beta(5, 2) for outliers), off by default.
    """

    num_points: int = 2000
    width: int = 640
    height: int = 480
    focal: tuple[float, float] = (400.0, 800.0)
    max_rotation_deg: float = 30.0
    baseline: tuple[float, float] = (0.3, 1.5)
    inlier_ratio: tuple[float, float] = (0.05, 0.5)
    pixel_noise: tuple[float, float] = (0.5, 1.5)
    near_miss_px: tuple[float, float] = (8.0, 40.0)
    epipolar_offset: tuple[float, float] = (0.5, 4.0)
    surface_points: int = 6000
    min_covisible: int = 300
    threshold: float = 1e-4
    side_info: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.num_points, int) or self.num_points < 8:
            raise ValueError(f"num_points must be an integer >= 8, got {self.num_points!r}")
        low, high = self.inlier_ratio
        if not 0 < low <= high <= 1:
            raise ValueError(f"inlier_ratio must satisfy 0 < low <= high <= 1, got {low}, {high}")


# Geometry helpers ----------------------------------------------------------------------------


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula: rotation by ``angle`` (radians) about the unit ``axis``."""
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _episym(x1: np.ndarray, x2: np.ndarray, essential: np.ndarray) -> np.ndarray:
    """Symmetric epipolar distance of (N, 2) normalised points (as in n3net.geometry)."""
    h1 = np.concatenate([x1, np.ones_like(x1[:, :1])], 1)
    h2 = np.concatenate([x2, np.ones_like(x2[:, :1])], 1)
    line2, line1 = h1 @ essential.T, h2 @ essential
    # Sums over the short axis spelled out: the same additions in the same order, far faster
    # than a reduction along an axis of length 2 or 3.
    product = h2 * line2
    residual = product[:, 0] + product[:, 1] + product[:, 2]
    tiny = np.finfo(np.float64).tiny
    norm2 = np.maximum(line2[:, 0] ** 2 + line2[:, 1] ** 2, tiny)
    norm1 = np.maximum(line1[:, 0] ** 2 + line1[:, 1] ** 2, tiny)
    return residual**2 * (1 / norm2 + 1 / norm1)


def _in_image(pixels: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Whether (S, 2) pixels lie in an image of ``size`` (column by column: no slow reduction)."""
    x, y = pixels[:, 0], pixels[:, 1]
    return (x >= 0) & (x <= size[0] - 1) & (y >= 0) & (y <= size[1] - 1)


@dataclass
class _Camera:
    focal: float
    centre: np.ndarray  # (2,) principal point, pixels
    size: np.ndarray  # (2,) width, height

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of (S, 3) camera-frame points and whether they are in front and inside."""
        z = points[:, 2]
        safe = np.where(z > 1e-9, z, 1.0)
        pixels = points[:, :2] / safe[:, None] * self.focal + self.centre
        return pixels, (z > 0.1) & _in_image(pixels, self.size)

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels - self.centre) / self.focal


# Scene --------------------------------------------------------------------------------------


@dataclass
class _Scene:
    points: np.ndarray  # (S, 3) camera-1 coordinates
    facade: np.ndarray  # (S,) facade index of lattice points, -1 otherwise
    lattice: np.ndarray  # (S, 2) integer lattice coordinates of lattice points
    origins: np.ndarray  # (F, 3) lattice origin per facade
    axes: np.ndarray  # (F, 2, 3) lattice directions per facade (unit, in-plane)
    periods: np.ndarray  # (F,)


def _facade_planes(rng: np.random.Generator, count: int) -> tuple[np.ndarray, ...]:
    """Facade normals, offsets, lattice origins, in-plane axes and periods."""
    yaw = rng.uniform(-1.0, 1.0, count) * math.radians(60)
    pitch = rng.uniform(-1.0, 1.0, count) * math.radians(10)
    normals = np.stack(
        [np.sin(yaw) * np.cos(pitch), np.sin(pitch), -np.cos(yaw) * np.cos(pitch)], 1
    )
    anchors = np.stack(
        [rng.uniform(-5, 5, count), rng.uniform(-1, 1, count), rng.uniform(5, 15, count)], 1
    )
    offsets = (normals * anchors).sum(1)
    horizontal = np.cross(normals, [0.0, 1.0, 0.0])
    horizontal /= np.linalg.norm(horizontal, axis=1, keepdims=True)
    vertical = np.cross(normals, horizontal)
    axes = np.stack([horizontal, vertical], 1)  # (F, 2, 3)
    periods = rng.uniform(0.3, 1.0, count)
    return normals, offsets, anchors, axes, periods


def _box_hits(rng: np.random.Generator, rays: np.ndarray, count: int) -> np.ndarray:
    """Depth at which each ray enters each box, inf where it misses: (S, count)."""
    hits = np.full((len(rays), count), np.inf)
    for b in range(count):
        centre = np.array([rng.uniform(-4, 4), rng.uniform(-0.5, 1.0), rng.uniform(5, 18)])
        half = rng.uniform(0.3, 1.5, 3)
        turn = _rotation(np.array([0.0, 1.0, 0.0]), rng.uniform(0, math.pi))
        origin = -centre @ turn  # the camera centre in box coordinates
        direction = rays @ turn  # (S, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = (-half - origin) / direction
            hi = (half - origin) / direction
        entry, leave = np.minimum(lo, hi), np.maximum(lo, hi)
        # nanmax / nanmin over the 3 slabs, spelled out (fmax and fmin skip NaN the same way).
        near = np.fmax(np.fmax(entry[:, 0], entry[:, 1]), entry[:, 2])
        far = np.fmin(np.fmin(leave[:, 0], leave[:, 1]), leave[:, 2])
        entered = (near <= far) & (near > 0)
        hits[entered, b] = near[entered]
    return hits


def _scene(rng: np.random.Generator, camera: _Camera, config: SyntheticConfig) -> _Scene:
    """Cast ``surface_points`` rays from camera 1; each hits its nearest surface or floats."""
    count = config.surface_points
    pixels = rng.uniform([0, 0], camera.size - 1, (count, 2))
    rays = np.concatenate([camera.normalise(pixels), np.ones((count, 1))], 1)  # z = 1: t is depth
    n_facades, n_boxes = int(rng.integers(2, 5)), int(rng.integers(0, 4))
    normals, offsets, anchors, axes, periods = _facade_planes(rng, n_facades)
    tilt = rng.normal(0, 0.03, 2)
    ground = np.array([tilt[0], 1.0, tilt[1]])
    ground /= np.linalg.norm(ground)
    all_normals = np.concatenate([normals, ground[None]], 0)  # (P, 3), the ground last
    all_offsets = np.concatenate([offsets, [rng.uniform(1.2, 2.0)]])
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = all_offsets[None] / (rays @ all_normals.T)  # (S, P)
    depth = np.where((depth > _Z_NEAR) & (depth < _Z_FAR), depth, np.inf)
    depth = np.concatenate([depth, _box_hits(rng, rays, n_boxes)], 1)
    surface = depth.argmin(1)
    z = depth[np.arange(count), surface]
    clutter = rng.random(count) < rng.uniform(0.1, 0.3)
    # Clutter is uniform in the frustum volume between depths 4 and 20: density ~ z^2.
    z_clutter = (4.0**3 + rng.random(count) * (20.0**3 - 4.0**3)) ** (1 / 3)
    z = np.where(clutter, z_clutter, z)
    keep = np.isfinite(z)
    points, surface, clutter = rays[keep] * z[keep, None], surface[keep], clutter[keep]

    # Facade points snap to their lattice with a per-facade probability: repeated texture.
    facade = np.where(~clutter & (surface < n_facades), surface, -1)
    snap_share = rng.uniform(0.4, 0.9, n_facades)
    on = facade >= 0
    facade[on] = np.where(rng.random(int(on.sum())) < snap_share[facade[on]], facade[on], -1)
    lattice = np.zeros((len(points), 2), dtype=np.int64)
    on = facade >= 0
    if on.any():
        f = facade[on]
        local = np.einsum("sd,skd->sk", points[on] - anchors[f], axes[f])  # (S_on, 2)
        lattice[on] = np.round(local / periods[f, None]).astype(np.int64)
        points[on] = _lattice_point(anchors, axes, periods, f, lattice[on])
        # Several rays may snap to one lattice node: keep each node once.
        key = (
            (f.astype(np.int64) << 42)
            + ((lattice[on, 0] + (1 << 20)) << 21)
            + lattice[on, 1]
            + (1 << 20)
        )
        _, first = np.unique(key, return_index=True)
        unique = ~on
        unique[np.flatnonzero(on)[first]] = True
        points, facade, lattice = points[unique], facade[unique], lattice[unique]
    return _Scene(points, facade, lattice, anchors, axes, periods)


def _lattice_point(
    anchors: np.ndarray, axes: np.ndarray, periods: np.ndarray, facade: np.ndarray, ij: np.ndarray
) -> np.ndarray:
    """3-D position of lattice node ``ij`` of each facade: (S, 3)."""
    steps = ij * periods[facade, None]  # (S, 2)
    return anchors[facade] + steps[:, :1] * axes[facade, 0] + steps[:, 1:] * axes[facade, 1]


# Pose ---------------------------------------------------------------------------------------


def _pose(rng: np.random.Generator, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """Relative pose (R, t) with X2 = R X1 + t; ``t`` has the baseline's length."""
    axis = rng.normal(size=3) * np.array([0.3, 1.0, 0.3])  # y is the yaw axis (image y down)
    axis /= np.linalg.norm(axis)
    rotation = _rotation(axis, math.radians(rng.uniform(0, config.max_rotation_deg)))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    direction[2] = abs(direction[2])  # the hemisphere facing the scene
    centre = direction * rng.uniform(*config.baseline)  # camera 2's centre in camera-1 frame
    return rotation, -rotation @ centre


# Correspondences ----------------------------------------------------------------------------


def _outlier_x2(
    rng: np.random.Generator,
    kinds: np.ndarray,
    scene: _Scene,
    rows: np.ndarray,
    true_x2: np.ndarray,
    pose: tuple[np.ndarray, np.ndarray],
    camera: _Camera,
    config: SyntheticConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Wrong pixels in image 2 for outlier rows of each kind (1-4); falls back to uniform."""
    rotation, translation = pose
    count = len(kinds)
    x2 = rng.uniform([0, 0], camera.size - 1, (count, 2))  # kind 1, and every fallback
    kinds = kinds.copy()

    repeated = np.flatnonzero(kinds == 2)
    if repeated.size:
        point = rows[repeated]
        f = scene.facade[point]
        axis = rng.integers(0, 2, repeated.size)
        step = rng.choice([-2, -1, 1, 2], repeated.size)
        ij = scene.lattice[point].copy()
        ij[np.arange(repeated.size), axis] += step
        ok = f >= 0
        moved = _lattice_point(scene.origins, scene.axes, scene.periods, np.maximum(f, 0), ij)
        pixels, inside = camera.project(moved @ rotation.T + translation)
        ok &= inside
        x2[repeated[ok]] = pixels[ok]
        kinds[repeated[~ok]] = 1

    near = np.flatnonzero(kinds == 3)
    if near.size:
        angle = rng.uniform(0, 2 * math.pi, near.size)
        length = rng.uniform(*config.near_miss_px, near.size)
        offset = np.stack([np.cos(angle), np.sin(angle)], 1) * length[:, None]
        x2[near] = np.clip(true_x2[near] + offset, 0, camera.size - 1)

    epipolar = np.flatnonzero(kinds == 4)
    if epipolar.size:
        point = scene.points[rows[epipolar]]
        scale = np.exp(rng.choice([-1, 1], epipolar.size) * rng.uniform(0.1, 0.7, epipolar.size))
        pixels, inside = camera.project((point * scale[:, None]) @ rotation.T + translation)
        essential = _skew(translation) @ rotation
        h1 = np.concatenate([point[:, :2] / point[:, 2:], np.ones((epipolar.size, 1))], 1)
        line = h1 @ essential.T  # epipolar lines in image 2 (normalised coordinates)
        normal = line[:, :2] / np.linalg.norm(line[:, :2], axis=1, keepdims=True)
        # Pushed off the line by d in image 2 (and so by about d in image 1 too): episym ~ 2 d^2.
        distance = np.sqrt(
            rng.uniform(*config.epipolar_offset, epipolar.size) * config.threshold / 2
        )
        sign = rng.choice([-1, 1], epipolar.size)
        moved = pixels + normal * (sign * distance * camera.focal)[:, None]
        ok = inside & _in_image(moved, camera.size)
        x2[epipolar[ok]] = moved[ok]
        kinds[epipolar[~ok]] = 1
    return x2, kinds


def _attempt(rng: np.random.Generator, config: SyntheticConfig) -> dict[str, np.ndarray] | None:
    """One draw of a pair; None when the cameras share too few scene points."""
    size = np.array([config.width, config.height], dtype=np.float64)
    camera = _Camera(rng.uniform(*config.focal), (size - 1) / 2, size)
    rotation, translation = _pose(rng, config)
    scene = _scene(rng, camera, config)
    x1_all, in1 = camera.project(scene.points)
    x2_all, in2 = camera.project(scene.points @ rotation.T + translation)
    covisible = np.flatnonzero(in1 & in2)
    if covisible.size < config.min_covisible:
        return None

    n = config.num_points
    low, high = config.inlier_ratio
    ratio = math.exp(rng.uniform(math.log(low), math.log(high)))
    n_in = max(1, round(ratio * n))
    rows = rng.choice(covisible, n, replace=covisible.size < n)
    mix = rng.dirichlet(np.ones(4))
    kinds = np.concatenate([np.zeros(n_in, np.int8), 1 + rng.choice(4, n - n_in, p=mix)])
    kinds = kinds.astype(np.int8)
    # Repeated-texture outliers start from lattice points: swap in co-visible lattice rows.
    lattice_rows = covisible[scene.facade[covisible] >= 0]
    repeated = np.flatnonzero(kinds == 2)
    if lattice_rows.size:
        rows[repeated] = rng.choice(lattice_rows, repeated.size)
    x1, x2 = x1_all[rows].copy(), x2_all[rows].copy()
    out = np.flatnonzero(kinds > 0)
    x2[out], kinds[out] = _outlier_x2(
        rng, kinds[out], scene, rows[out], x2[out], (rotation, translation), camera, config
    )
    sigma = rng.uniform(*config.pixel_noise)
    x1 = x1 + rng.normal(0, sigma, x1.shape)
    x2 = x2 + rng.normal(0, sigma, x2.shape)

    unit_t = translation / np.linalg.norm(translation)
    essential = _skew(unit_t) @ rotation
    n1, n2 = camera.normalise(x1), camera.normalise(x2)
    episym = _episym(n1, n2, essential)
    order = rng.permutation(n)
    pair = {
        "xs": np.concatenate([n1, n2], 1)[order].astype(np.float32),
        "episym": episym[order].astype(np.float32),
        "labels": (episym < config.threshold)[order],
        "gen_type": kinds[order],
        "R": rotation.astype(np.float32),
        "t": unit_t.astype(np.float32),
        "E": (essential / np.linalg.norm(essential)).astype(np.float32),
        "inlier_ratio": np.float32(ratio),
        "focal": np.float32(camera.focal),
        "sigma": np.float32(sigma),
    }
    if config.side_info:
        inlier = pair["labels"]
        score = np.where(inlier, rng.beta(2, 5, n), rng.beta(5, 2, n))
        pair["ratio"] = score.astype(np.float32)
    return pair


def generate_pair(
    rng: np.random.Generator, config: SyntheticConfig | None = None
) -> dict[str, np.ndarray]:
    """Draw one synthetic image pair and its putative correspondences.

    Args:
        rng: the only source of randomness (see the module docstring).
        config: the benchmark's parameters; None for the defaults.

    Returns:
        ``xs`` (N, 4) float32 ``(x1, y1, x2, y2)`` normalised; ``labels`` (N,) bool;
        ``episym`` (N,) the symmetric epipolar distances; ``gen_type`` (N,) int8 (0 true match,
        1 uniform, 2 repeated texture, 3 near miss, 4 epipolar-near); ``R`` (3, 3), unit ``t``
        (3,) and unit-norm ``E`` (3, 3) of the relative pose; ``inlier_ratio`` (the drawn
        share of true matches), ``focal`` and ``sigma`` (pixels); ``ratio`` (N,) with
        ``side_info``.

    Shape:
        -> xs: (N, 4), labels / episym / gen_type: (N,).

    Example:
        >>> pair = generate_pair(np.random.default_rng([2, 0]), SyntheticConfig(num_points=64))
        >>> pair["xs"].shape, pair["labels"].shape, pair["R"].shape
        ((64, 4), (64,), (3, 3))
    """
    config = config or SyntheticConfig()
    for _ in range(_MAX_ATTEMPTS):
        pair = _attempt(rng, config)
        if pair is not None:
            return pair
    raise RuntimeError(
        f"no pair with {config.min_covisible} co-visible points in {_MAX_ATTEMPTS} draws; "
        "lower min_covisible or the rotation range"
    )
