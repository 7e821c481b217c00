"""Depth 2: explanations inside each selected explanation, and the tree a report shows.

Every selected explanation covering enough distinct texts (twice the clustering's smallest
cluster, at least :data:`MIN_CHILD_TEXTS`) gets its own round loop over its members, with
the parent's explanation folded into the goal; a proposal restating the parent is merged
into it. A split is kept when it selects at least two sub-explanations.
"""

from __future__ import annotations

import numpy as np

from ..cluster import default_min_cluster_size
from ..interfaces import ExplainResult

MIN_CHILD_TEXTS = 20  # a parent needs max(2 · min cluster size, this) members
CHILD_ROUNDS = 2


def min_child_texts(clusterer, n_texts: int) -> int:
    size = getattr(clusterer, "min_cluster_size", None) or default_min_cluster_size(n_texts)
    return max(2 * size, MIN_CHILD_TEXTS)


def explain_inside(explainer, result: ExplainResult, X, texts, labels, weights) -> None:
    """Fill ``result.children`` / ``child_members`` (``explainer``: a ModelExplainer)."""
    distinct = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    needed = min_child_texts(explainer.clusterer, len(distinct))
    rounds = min(CHILD_ROUNDS, explainer.config.rounds)
    final = result.final_matches()
    for j in result.selected:
        members = np.flatnonzero(final[:, j])
        if len({texts[i] for i in members}) < needed:
            continue
        parent = result.candidates[j]
        prefix = f"  [{parent.name}] "
        child = explainer.child(f"{explainer.goal} (Within texts where: {parent.text})", parent.vector[None, :],
                                log=lambda message, p=prefix: explainer.log(p + message))
        found = child.explain(X[members], [texts[i] for i in members], labels[members], weights[members],
                              rounds=rounds)
        for stage, count in found.n_calls.items():  # the parent's result reports its tally, children's included
            explainer.tally.n_calls[stage] = explainer.tally.n_calls.get(stage, 0) + count
        if len(found.selected) >= 2 or found.incomplete:
            result.children[j] = found
            result.child_members[j] = members
        else:
            explainer.log(f"{prefix}no split: {len(found.selected)} sub-explanation(s) selected")
        if found.incomplete:
            result.incomplete = True
            result.stop_reason = f"{found.stop_reason} (in the sub-explanations of '{parent.name}')"
            break


def tree(result: ExplainResult, weights: np.ndarray) -> list[dict] | None:
    """The explanation tree for the report: [{"name", "explanation", "size", "children": [...]}]."""
    if not result.children:
        return None
    primary, _, _ = result.primary()
    nodes = []
    for j in result.selected:
        node = {"name": result.candidates[j].name, "explanation": result.candidates[j].text,
                "size": int(weights[primary == j].sum()), "children": []}
        child = result.children.get(j)
        if child is not None:
            members = result.child_members[j]
            child_primary, _, _ = child.primary()
            for c in child.selected:
                node["children"].append({"name": child.candidates[c].name, "explanation": child.candidates[c].text,
                                         "size": int(weights[members][child_primary == c].sum()), "children": []})
        nodes.append(node)
    return sorted(nodes, key=lambda node: -node["size"])
