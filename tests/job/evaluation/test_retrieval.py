"""Block-wise retrieval metrics against a brute-force NumPy definition (full sort per query,
ties ordered against the query)."""
import numpy as np
import pytest

from job.evaluation.retrieval import normalize, retrieval_metrics


def brute_force(features, labels, ks):
    x = normalize(features)
    sim = x @ x.T
    n = len(x)
    hits = {k: 0 for k in ks}
    ap, scored = 0.0, 0
    for q in range(n):
        others = np.array([j for j in range(n) if j != q])
        rel = labels[others] == labels[q]
        r = int(rel.sum())
        if r == 0:
            continue
        scored += 1
        # sort by similarity descending; among equal similarities negatives first
        order = np.lexsort((rel.astype(int), -sim[q, others]))
        ranked = rel[order]
        first = int(np.argmax(ranked)) + 1
        for k in ks:
            hits[k] += first <= k
        top = ranked[:r]
        precision = np.cumsum(top) / np.arange(1, r + 1)
        ap += float((precision * top).sum() / r)
    return {k: hits[k] / scored for k in ks}, ap / scored, scored


def _clustered(rng, classes, dim, noise):
    sizes = rng.integers(2, 8, size=classes)
    centers = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), sizes)
    feats = centers[labels] + noise * rng.normal(size=(len(labels), dim))
    return feats.astype(np.float32), labels


CASES = {
    "random": dict(classes=40, dim=16, noise=5.0),
    "clustered": dict(classes=40, dim=16, noise=0.5),
    "tight": dict(classes=25, dim=4, noise=0.05),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("block", [1, 7, 512])
def test_matches_brute_force(case, block):
    rng = np.random.default_rng(list(CASES).index(case))
    feats, labels = _clustered(rng, **CASES[case])
    ks = (1, 2, 5, 10, 100)
    got = retrieval_metrics(feats, labels, ks, block_size=block)
    recall, map_r, scored = brute_force(feats, labels, ks)
    assert got.num_queries == scored
    for k in ks:
        assert got.recall[k] == pytest.approx(recall[k], abs=1e-12), k
    assert got.map_at_r == pytest.approx(map_r, abs=1e-9)


def test_ties_do_not_inflate():
    """All features equal: every positive ties with every negative, so a query scores only
    what the worst ordering gives (positives after all negatives)."""
    labels = np.repeat(np.arange(10), 3)
    feats = np.ones((30, 8), np.float32)
    got = retrieval_metrics(feats, labels, (1, 10, 28))
    assert got.recall[1] == 0.0 and got.recall[10] == 0.0
    assert got.recall[28] == 1.0        # 27 negatives, then the 2 positives
    assert got.map_at_r == 0.0
    recall, map_r, _ = brute_force(feats, labels, (1, 10, 28))
    assert recall[28] == 1.0 and map_r == 0.0


def test_quantised_features_with_ties_match_brute_force():
    rng = np.random.default_rng(5)
    feats, labels = _clustered(rng, classes=30, dim=3, noise=0.7)
    feats = np.round(feats)             # many exact ties
    feats[np.all(feats == 0, axis=1)] = 1.0
    ks = (1, 3, 10)
    got = retrieval_metrics(feats, labels, ks, block_size=16)
    recall, map_r, _ = brute_force(feats, labels, ks)
    for k in ks:
        assert got.recall[k] == pytest.approx(recall[k])
    assert got.map_at_r == pytest.approx(map_r)


def test_perfect_embedding_scores_one():
    labels = np.repeat(np.arange(6), 4)
    feats = np.eye(6, dtype=np.float32)[labels]
    got = retrieval_metrics(feats + 0.0, labels, (1,))
    # within-class similarity 1, across 0: every positive ranks first
    assert got.recall[1] == 1.0 and got.map_at_r == 1.0


def test_singleton_queries_are_skipped_and_counted():
    labels = np.array([0, 0, 1, 2, 2, 3])
    feats = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    got = retrieval_metrics(feats, labels, (1,))
    assert got.num_queries == 4 and got.num_skipped == 2
    assert set(got.to_dict()) >= {"recall@1", "map@r", "num_queries"}


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="labels"):
        retrieval_metrics(np.zeros((3, 2)), np.zeros(4))
