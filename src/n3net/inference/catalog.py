"""Which shipped weights serve a request: the training sigma of each, and the default per sigma."""

from __future__ import annotations

import math

from n3net._checks import check_sigma

__all__ = ["DEFAULT_SIGMA", "default_model", "metadata_sigma", "trained_models"]

DEFAULT_SIGMA = 25.0
# Order in which the default weights for a sigma are chosen when several exist.
_ARCH_PREFERENCE = ("n3net", "n3net-light", "dncnn")


def metadata_sigma(metadata: dict[str, str] | None) -> float | None:
    """The sigma a model file was trained for, from its metadata (None when it has none).

    Example:
        >>> metadata_sigma({"sigma": "25"}), metadata_sigma({})
        (25.0, None)
    """
    text = (metadata or {}).get("sigma")
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _shipped_metadata() -> dict[str, dict[str, str]]:
    """Every shipped pretrained name with its model file's metadata (one read each)."""
    from n3net.models import list_pretrained, model_metadata

    return {name: model_metadata(name) for name in list_pretrained()}


def trained_models() -> dict[str, float | None]:
    """Map every shipped pretrained name to the sigma it was trained for (None if unknown)."""
    return {name: metadata_sigma(meta) for name, meta in _shipped_metadata().items()}


def _trained_sigmas_text(models: dict[str, float | None]) -> str:
    sigmas = sorted({s for s in models.values() if s is not None})
    if not sigmas:
        return "no trained weights are shipped yet; give a .safetensors model file instead"
    listed = ", ".join(f"{s:g}" for s in sigmas)
    return f"trained sigmas: {listed} (models: {', '.join(models)})"


def default_model(sigma: float) -> str:
    """Return the shipped pretrained model trained for ``sigma`` (0-255 scale).

    When several exist, the one with the best measured PSNR comes first: a model file may
    record its BSD68 PSNR at its sigma in the metadata entry ``bsd68_psnr`` (written when the
    weights ship, from ``n3net evaluate``), and files without one rank after those with one.
    Ties go to N3Net before N3Net light and DnCNN, grey before colour, then the name.

    Raises:
        ValueError: no shipped weights for that sigma; the message lists the sigmas that exist.
    """
    sigma = check_sigma(sigma)
    shipped = _shipped_metadata()
    models = {name: metadata_sigma(meta) for name, meta in shipped.items()}
    matching = [name for name, trained in models.items() if trained == sigma]
    if not matching:
        raise ValueError(f"no trained model for sigma {sigma:g}; {_trained_sigmas_text(models)}")

    def rank(name: str) -> tuple[float, int, bool, str]:
        metadata = shipped[name]
        try:
            psnr = float(metadata.get("bsd68_psnr", "nan"))
        except ValueError:
            psnr = math.nan
        arch = metadata.get("n3net_arch", "")
        order = _ARCH_PREFERENCE.index(arch) if arch in _ARCH_PREFERENCE else len(_ARCH_PREFERENCE)
        measured = -psnr if math.isfinite(psnr) else math.inf
        return measured, order, metadata.get("channels", "1") != "1", name

    return min(matching, key=rank)
