"""`n3net info`: print versions, threads and the accelerators torch can see."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="print n3net, torch and python versions and the available devices",
        description="Print n3net, torch and python versions, torch's thread count, and which "
        "CUDA and MPS devices torch can use.",
    )
    parser.set_defaults(func=run)


def _rows() -> list[tuple[str, str]]:
    """Collect (label, value) rows; torch is imported here so `n3net --help` stays fast."""
    import platform

    import torch

    from n3net import __version__

    rows = [
        ("n3net", __version__),
        ("torch", torch.__version__),
        ("python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("platform", platform.platform()),
        ("threads", str(torch.get_num_threads())),
    ]
    cuda = torch.cuda.is_available()
    cuda_build = torch.version.cuda or "none"
    rows.append(("cuda", f"{cuda} (build: {cuda_build}, devices: {torch.cuda.device_count()})"))
    if cuda:
        for index in range(torch.cuda.device_count()):
            rows.append((f"  cuda:{index}", torch.cuda.get_device_name(index)))
    rows.append(("mps", str(torch.backends.mps.is_available())))
    return rows


def run(args: argparse.Namespace) -> int:
    """Print one `label: value` line per fact."""
    rows = _rows()
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"{label + ':':<{width}} {value}")
    return 0
