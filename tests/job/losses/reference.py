"""Independent NumPy formulas for the losses, written with explicit loops over tuples."""
import itertools

import numpy as np


def normalize(x):
    return x / np.sqrt((x * x).sum(1, keepdims=True) + 1e-12)


def sqd(a, b):
    return float(((a - b) ** 2).sum())


def softmax_ce(logits, labels, smoothing=0.0):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    c = logits.shape[1]
    target = np.full_like(logp, smoothing / c)
    target[np.arange(len(labels)), labels] += 1.0 - smoothing
    return float(-(target * logp).sum(1).mean())


def triplet_fixed(x, margin):
    x = normalize(x)
    terms = [max(sqd(x[i], x[i + 1]) - sqd(x[i], x[i + 2]) + margin, 0.0)
             for i in range(0, len(x), 3)]
    return float(np.mean(terms))


def triplet_batch_hard(x, labels, margin):
    x = normalize(x)
    terms = []
    for a in range(len(x)):
        pos = [sqd(x[a], x[p]) for p in range(len(x)) if p != a and labels[p] == labels[a]]
        neg = [sqd(x[a], x[n]) for n in range(len(x)) if labels[n] != labels[a]]
        if pos and neg:
            terms.append(max(max(pos) - min(neg) + margin, 0.0))
    return float(np.mean(terms)) if terms else 0.0


def quadruplet_chen(x, labels, m1, m2):
    x = normalize(x)
    n = len(x)
    t1, t2 = [], []
    for a in range(n):
        pos = [sqd(x[a], x[p]) for p in range(n) if p != a and labels[p] == labels[a]]
        if not pos:
            continue
        neg = [sqd(x[a], x[j]) for j in range(n) if labels[j] != labels[a]]
        pairs = [sqd(x[i], x[j]) for i, j in itertools.product(range(n), range(n))
                 if labels[i] != labels[a] and labels[j] != labels[a] and labels[i] != labels[j]]
        if neg:
            t1.append(max(max(pos) - min(neg) + m1, 0.0))
        if pairs:
            t2.append(max(max(pos) - min(pairs) + m2, 0.0))
    return float((np.mean(t1) if t1 else 0.0) + (np.mean(t2) if t2 else 0.0))


def quadruplet_batch_hardest(x, labels, margin):
    x = normalize(x)
    n = len(x)
    pos = [sqd(x[i], x[j]) for i in range(n) for j in range(n) if i != j and labels[i] == labels[j]]
    neg = [sqd(x[i], x[j]) for i in range(n) for j in range(n) if labels[i] != labels[j]]
    return max(max(pos) - min(neg) + margin, 0.0)
