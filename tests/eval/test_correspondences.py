"""The correspondence benchmark: classification scores by hand, summaries, tiers, the runner."""

from __future__ import annotations

import math

import pytest
import torch

from n3net.data.correspondences import synthetic_pairs
from n3net.data.synthetic import SyntheticConfig
from n3net.eval.correspondences import (
    ROW_KEYS,
    SUMMARY_KEYS,
    classification_scores,
    evaluate_correspondences,
    summarize,
)
from n3net.models import create_model, load_model


def test_classification_scores_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.0, 5.0], [-1.0, -2.0, -3.0, 1.0, 9.0]])
    labels = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False], [True, True, True, True, False]])
    precision, recall, f1 = classification_scores(logits, labels, mask)
    # Pair 0: predicted {0, 1} (logit 0 is not > 0; row 4 is padding), true {0, 1, 2}.
    assert precision[0].item() == 1.0 and recall[0].item() == pytest.approx(2 / 3)
    assert f1[0].item() == pytest.approx(0.8)
    # Pair 1: predicted {3}, true {0}: nothing right.
    assert (precision[1].item(), recall[1].item(), f1[1].item()) == (0.0, 0.0, 0.0)
    nothing = classification_scores(-torch.ones(1, 3), torch.zeros(1, 3))
    assert [v.item() for v in nothing] == [0.0, 0.0, 0.0]


def test_summarize_by_hand() -> None:
    rows = [
        {"err_q": 1.0, "err_t": 3.0, "precision": 1.0, "recall": 0.5, "f1": 2 / 3},
        {"err_q": 8.0, "err_t": 2.0, "precision": 0.5, "recall": 0.5, "f1": 0.5},
        {"err_q": 180.0, "err_t": 90.0, "precision": 0.0, "recall": 0.0, "f1": 0.0},
    ]
    summary = summarize(rows)
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["map5"] == pytest.approx(1 / 3)
    assert summary["map10"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert summary["precision"] == pytest.approx(0.5) and summary["median_err_q"] == 8.0
    assert summary["n_pairs"] == 3
    assert math.isnan(summarize([])["map20"]) and summarize([])["n_pairs"] == 0


def test_oracle_and_a_network_through_the_runner() -> None:
    pairs = synthetic_pairs(1000, 5, SyntheticConfig(num_points=128))
    result = evaluate_correspondences(load_model("oracle"), pairs, batch_size=2)
    assert tuple(result["rows"][0]) == ROW_KEYS and len(result["rows"]) == 5
    assert result["summary"]["f1"] == 1.0 and result["summary"]["precision"] == 1.0
    assert sum(t["n_pairs"] for t in result["tiers"].values()) == 5
    assert [r["pair"] for r in result["rows"]] == ["0", "1", "2", "3", "4"]

    model = create_model("cnnet-n3", channels=16, depth=4, n3_block=2, embed_features=8)
    one = evaluate_correspondences(model, pairs, batch_size=1)
    three = evaluate_correspondences(model, pairs, batch_size=3)
    assert not model.training
    for a, b in zip(one["rows"], three["rows"], strict=True):
        assert a.pop("pair") == b.pop("pair") and a.pop("tier") == b.pop("tier")
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)  # batching does not change a pair
