"""Which texts the language model sees when it proposes explanations.

Round 1 draws its samples across the embedding clusters (noise included), so one
propose call sees the corpus's variety rather than its largest topic; later rounds
draw the same way from the texts still uncovered. Every draw is deterministic given
the random generator.
"""

from __future__ import annotations

import numpy as np


def distinct_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the index of the first occurrence of each distinct text, in
    order of appearance, and for every text the position of its distinct text in ``first``."""
    position: dict[str, int] = {}
    first: list[int] = []
    inverse = np.empty(len(texts), dtype=int)
    for i, text in enumerate(texts):
        p = position.get(text)
        if p is None:
            p = position[text] = len(first)
            first.append(i)
        inverse[i] = p
    return np.asarray(first, dtype=int), inverse


def allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """How many of ``n`` draws each group gets: one per group first (largest groups first
    when there are more groups than draws), the rest in proportion to group size (largest
    remainder), never more than a group holds."""
    sizes = np.asarray(sizes, dtype=int)
    take = np.zeros(len(sizes), dtype=int)
    n = int(min(n, sizes.sum()))
    if n <= 0:
        return take
    by_size = np.argsort(-sizes, kind="stable")
    for g in by_size[:n]:
        if sizes[g] > 0:
            take[g] = 1
    left = n - take.sum()
    while left > 0:
        room = sizes - take
        open_ = room > 0
        share = np.where(open_, sizes, 0).astype(float)
        quota = left * share / share.sum()
        extra = np.minimum(np.floor(quota).astype(int), room)
        if extra.sum() == 0:  # hand out the remainders one by one, largest first
            order = np.lexsort((-sizes, -(quota - np.floor(quota))))
            for g in order:
                if left == 0:
                    break
                if room[g] > 0:
                    take[g] += 1
                    left -= 1
            continue
        take += extra
        left -= int(extra.sum())
    return take


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator,
                      eligible: np.ndarray | None = None) -> np.ndarray:
    """Indices of up to ``n`` texts drawn across the groups of ``labels`` (each label, noise
    included, is a group), only among ``eligible`` texts when given. The result interleaves
    the groups (one from each in turn) so a prompt does not present them in blocks."""
    labels = np.asarray(labels)
    pool = np.arange(len(labels)) if eligible is None else np.flatnonzero(eligible)
    if len(pool) == 0 or n <= 0:
        return np.zeros(0, dtype=int)
    groups = sorted(set(labels[pool].tolist()))
    members = [pool[labels[pool] == g] for g in groups]
    take = allocate(np.array([len(m) for m in members]), n)
    drawn = [rng.permutation(m)[:t] for m, t in zip(members, take)]
    out: list[int] = []
    for step in range(max((len(d) for d in drawn), default=0)):
        out.extend(int(d[step]) for d in drawn if step < len(d))
    return np.asarray(out, dtype=int)


def n_groups(n_open: int, per_call: int, max_calls: int) -> int:
    """How many groups :func:`proposal_groups` makes of ``n_open`` open clusters."""
    return min(max_calls, -(-int(n_open) // max(1, per_call)))


def proposal_groups(X: np.ndarray, labels: np.ndarray, pool: np.ndarray | None, per_call: int,
                    max_calls: int) -> list[np.ndarray]:
    """The texts each propose call of a round samples from, as masks over the texts.

    One call names at most ``per_call`` explanations, so a clustering with more open clusters
    than that gets one call per group of about ``per_call`` neighbouring clusters (by
    centroid), at most ``max_calls``: a call over all of them would leave most unnamed. A
    cluster is open when at least half of its texts are in ``pool`` (round 1: all are); the
    groups share out every cluster of the pool. Otherwise one group: the pool (one call).
    """
    labels = np.asarray(labels)
    eligible = np.ones(len(labels), dtype=bool) if pool is None else np.asarray(pool, dtype=bool)
    clusters = sorted(set(labels[eligible].tolist()))
    n_calls = n_groups(sum(eligible[labels == g].mean() >= 0.5 for g in clusters), per_call, max_calls)
    if n_calls <= 1:
        return [eligible]
    members = {g: eligible & (labels == g) for g in clusters}
    C = np.vstack([np.asarray(X)[members[g]].mean(axis=0) for g in clusters]).astype(np.float32)
    norms = np.linalg.norm(C, axis=1, keepdims=True)
    C /= np.where(norms == 0, 1.0, norms)
    size = -(-len(clusters) // n_calls)
    # Greedy: the largest cluster left, with its nearest clusters left (related topics in one
    # call, so the model tells them apart), until every cluster is in a group.
    left = sorted(range(len(clusters)), key=lambda i: (-int(members[clusters[i]].sum()), i))
    groups = []
    while left:
        seed, rest = left[0], left[1:]
        near = sorted(rest, key=lambda i: (-float(C[i] @ C[seed]), i))[:size - 1]
        groups.append(np.isin(labels, [clusters[i] for i in [seed, *near]]) & eligible)
        left = [i for i in rest if i not in near]
    return groups
