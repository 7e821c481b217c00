"""Propose and assign with a language model (GoalEx, frugal): the model's implementations of
the :class:`~textclust.interfaces.Proposer` and :class:`~textclust.interfaces.Assigner`.

* :class:`ModelProposer` — the model reads ``n_samples`` texts (round 1: drawn across the
  embedding clusters, noise included; later rounds: drawn the same way from the texts still
  uncovered), is shown the candidates so far, and writes up to ``n_explanations``
  explanations for the goal that they miss; a proposal whose embedding is within
  ``merge_threshold`` (cosine) of an existing candidate or an earlier proposal, or whose
  name is the same once normalised (:func:`name_key`), is a duplicate: merged (dropped).
  When that call names as many as asked and the clustering has more open clusters than one
  call names, the round proposes again once per group of neighbouring clusters, up to
  :data:`MAX_PROPOSE_CALLS` calls in all (:func:`~.sampling.proposal_groups`). With
  ``review``, one more call a round then keeps, rejects or merges the round's new candidates
  (:mod:`.review_llm`) before any text is judged against them.
* :class:`ModelAssigner` — each distinct text is judged against its ``prefilter`` most
  similar candidates it has not been judged against yet, ``batch_size`` texts a call; a
  text with no "yes" at all is escalated to its next ``prefilter`` candidates, up to
  ``escalations`` times (see :mod:`.assign_llm`). Judgments are kept across rounds, so a
  pair is never asked twice.

Both count their calls in a shared :class:`CallTally`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..interfaces import NOISE, Assignment, Candidate, ModelClient, RoundContext, RoundProposal
from .assign_llm import AssignPrompt, JudgeStats, Judgments, escalation_checks, judge, prefilter_checks, rank_candidates
from .propose_llm import Proposal, propose
from .review_llm import review
from .sampling import proposal_groups, stratified_sample

# Propose calls a round at most: one over all the (uncovered) texts, then, when it named as many
# as asked, one per group of clusters (ModelProposer.propose).
MAX_PROPOSE_CALLS = 4
LLM_THRESHOLD = 0.5  # scores are 1 (yes), 0 (no) or NaN (not judged)
REASON_LLM = "language model"

Embed = Callable[[list[str]], np.ndarray]


@dataclass
class CallTally:
    """Model calls by stage, and what the user should know about them."""

    n_calls: dict = field(default_factory=lambda: {"propose": 0, "assign": 0})
    notes: list = field(default_factory=list)


def name_key(name: str) -> str:
    """A name as compared for duplicates: case, punctuation, a numbered suffix ("(2)") and a
    plural "s" ignored ("Refund complaints" = "refund complaint")."""
    name = re.sub(r"\s*\(\d+\)\s*$", "", name.lower())
    words = re.findall(r"[^\W_]+", name)
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


def unit_vectors(embed: Embed, strings: list[str]) -> np.ndarray:
    E = np.asarray(embed(strings), dtype=np.float32).reshape(len(strings), -1)
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.where(norms == 0, 1.0, norms)


class ModelProposer:
    """Explanations written by the model from samples of the (uncovered) texts."""

    def __init__(self, client: ModelClient, embed: Embed, goal: str, *, n_samples: int = 40,
                 n_explanations: int = 8, merge_threshold: float = 0.9, examples=(), max_chars: int = 1000,
                 random_state: int = 0, restating: np.ndarray | None = None, tally: CallTally | None = None,
                 log: Callable[[str], None] | None = None, review: bool = False):
        self.client = client
        self.embed = embed
        self.goal = goal
        self.n_samples = n_samples
        self.n_explanations = n_explanations
        self.merge_threshold = merge_threshold
        self.examples = [str(e) for e in examples]
        self.max_chars = max_chars
        self.rng = np.random.default_rng(random_state)
        self.restating = restating  # depth 2: the parent's vector (proposals this close are dropped)
        self.tally = tally or CallTally()
        self.log = log or (lambda message: None)
        self.review = review

    def propose(self, context: RoundContext) -> RoundProposal:
        new: list[Candidate] = []
        merged, error, n_calls = 0, None, 0

        def call(eligible: np.ndarray) -> int:
            """One propose call over ``eligible``; how many proposals the model wrote."""
            nonlocal merged, error, n_calls
            known = list(context.candidates) + new  # so a later call of the round names the rest
            sample = stratified_sample(context.labels, self.n_samples, self.rng, eligible)
            proposals, result = propose(self.client, self.goal, [context.texts[i] for i in sample],
                                        self.n_explanations, self.examples, self.max_chars,
                                        existing=[(c.name, c.text) for c in known])
            self.tally.n_calls["propose"] += 1
            n_calls += 1
            if not result.ok:
                error = result.error or "no usable answer"
                self.log(f"round {context.round}: the proposal call failed ({result.error})")
                self.tally.notes.append(f"round {context.round}: proposing failed: {result.error}")
            kept, n_merged = self._merge(proposals, context.round, known)
            new.extend(kept)
            merged += n_merged
            return len(proposals)

        pool = np.ones(len(context.labels), dtype=bool) if context.pool is None else context.pool
        full = call(pool) >= self.n_explanations
        # The model used every slot and there are more open clusters than one call names: the
        # goal may have more kinds than that, so propose again per group of clusters. A goal
        # with few kinds (fewer proposals than asked) keeps its one call.
        groups = proposal_groups(context.X, context.labels, context.pool, self.n_explanations,
                                 MAX_PROPOSE_CALLS - 1) if full else []
        if len(groups) > 1:
            for eligible in groups:
                call(eligible)
            self.log(f"round {context.round}: proposed in {n_calls} calls: the first named as many as asked "
                     f"({self.n_explanations}), then one per group of clusters")
        if self.review and new:
            new, n_merged = self._review(context, pool, new)
            merged += n_merged  # rejections are logged, not counted as near-duplicates
        labels = context.labels.copy() if context.pool is None else np.where(context.pool, context.labels, NOISE)
        return RoundProposal(new, labels, n_merged=merged, error=error)

    def _review(self, context: RoundContext, pool: np.ndarray, new: list[Candidate]) -> tuple[list[Candidate], int]:
        """The round's new candidates less those one review call rejects or merges, and how many
        it merged (one call a round, so the cost stays bounded; a failed call keeps them all)."""
        existing = list(context.candidates)
        V = np.vstack([c.vector for c in existing + new]).astype(np.float32)
        rows = np.flatnonzero(pool)
        X = np.asarray(context.X, dtype=np.float32)[rows]
        decision = review(self.client, self.goal, [(c.name, c.text) for c in existing],
                          [(c.name, c.text) for c in new], X, V, [context.texts[i] for i in rows])
        self.tally.n_calls["review"] = self.tally.n_calls.get("review", 0) + 1
        if not decision.ok:
            self.log(f"round {context.round}: the review call failed ({decision.error}); kept every candidate")
            self.tally.notes.append(f"round {context.round}: reviewing failed: {decision.error}")
            return new, 0
        if decision.ignored:
            self.log(f"round {context.round}: the review would have removed every candidate; kept them all")
            return new, 0
        if decision.removed:
            self.log(f"round {context.round}: review rejected "
                     + (", ".join(f"“{new[j].name}”" for j in decision.rejected) or "none")
                     + "; merged " + (", ".join(f"“{new[j].name}”" for j in decision.merged) or "none"))
        return [c for j, c in enumerate(new) if j not in decision.removed], len(decision.merged)

    def _merge(self, proposals: list[Proposal], round_number: int,
               existing: list[Candidate]) -> tuple[list[Candidate], int]:
        """New candidates from ``proposals``, without the duplicates of an existing candidate or
        of an earlier proposal: within ``merge_threshold`` (cosine), or of the same name."""
        if not proposals:
            return [], 0
        E = unit_vectors(self.embed, [p.explanation for p in proposals])
        dim = E.shape[1]
        known = np.vstack([c.vector for c in existing]).astype(np.float32) if existing else np.zeros((0, dim),
                                                                                                     np.float32)
        if self.restating is not None:
            known = np.vstack([known, self.restating])
        known_names = {name_key(c.name) for c in existing}
        kept: list[Candidate] = []
        merged = 0
        for p, v in zip(proposals, E):
            if name_key(p.name) in known_names or (len(known) and float((known @ v).max()) >= self.merge_threshold):
                merged += 1
                continue
            known_names.add(name_key(p.name))  # so names stay unique, too
            kept.append(Candidate(name=p.name, text=p.explanation, vector=v, source="llm", round=round_number))
            known = np.vstack([known, v[None, :]])
        return kept, merged


class ModelAssigner:
    """The model's yes/no judgments of texts against candidates, kept across rounds."""

    def __init__(self, client: ModelClient, goal: str, X: np.ndarray, texts: list[str], *, batch_size: int = 10,
                 prefilter: int = 5, escalations: int = 3, max_chars: int = 1000, tally: CallTally | None = None):
        self.client = client
        self.goal = goal
        self.X = np.asarray(X, dtype=np.float32)
        self.texts = texts
        self.batch_size = batch_size
        self.prefilter = prefilter
        # A text with no "yes" among its checked candidates is asked about its next `prefilter`
        # candidates, up to this many times a round: the embedding ranking misses the right
        # candidate for some texts (measured with bench/llm_cost.py: banking77, goemotions).
        self.escalations = escalations
        self.max_chars = max_chars
        self.tally = tally or CallTally()
        self.state = Judgments(len(texts))
        self.last = JudgeStats()

    def assign(self, candidates: list[Candidate]) -> Assignment:
        self._grow(candidates)
        V = np.vstack([c.vector for c in candidates]).astype(np.float32)
        prompt = AssignPrompt(self.goal, [(c.name, c.text) for c in candidates], self.max_chars)
        order = rank_candidates(self.X, V)
        stats = self.last = JudgeStats()
        try:
            requests = prefilter_checks(order, self.state.scores, self.prefilter)
            # Texts with no "yes" yet first: if the budget runs out, what was judged helps most.
            has_yes = self.state.yes.any(axis=1)
            requests.sort(key=lambda request: bool(has_yes[request[0]]))
            judge(self.client, prompt, requests, self.texts, self.state, self.batch_size, stats=stats)
            # Escalation: texts with no "yes" at all (and whose call did not fail).
            for _ in range(self.escalations if self.prefilter > 0 else 0):
                hopeless = np.flatnonzero(~self.state.yes.any(axis=1) & ~self.state.failed)
                requests = escalation_checks(order, self.state.scores, self.prefilter, hopeless)
                if not requests:
                    break
                judge(self.client, prompt, requests, self.texts, self.state, self.batch_size, stats=stats)
        finally:
            self.tally.n_calls["assign"] += stats.calls
        return self.current(candidates)

    def current(self, candidates: list[Candidate]) -> Assignment:
        self._grow(candidates)
        scores = self.state.scores.copy()
        matches = scores == 1.0
        reasons = np.full(scores.shape, None, dtype=object)
        reasons[matches] = REASON_LLM
        return Assignment(scores=scores, thresholds=np.full(scores.shape[1], LLM_THRESHOLD), matches=matches,
                          judged=self.state.judged.any(axis=0), failed=self.state.failed.copy(), reasons=reasons,
                          evidence=dict(self.state.evidence), unverified=dict(self.state.unverified),
                          affinity=self._affinity(candidates))

    def _affinity(self, candidates: list[Candidate]) -> np.ndarray:
        """Cosine of each text with each candidate: every "yes" scores 1.0, so this says which
        of a text's matches fits it best (its primary explanation)."""
        if not candidates:
            return np.zeros((len(self.X), 0), dtype=np.float32)
        return self.X @ np.vstack([c.vector for c in candidates]).astype(np.float32).T

    def describe_work(self) -> str:
        stats = self.last
        return (f"{stats.calls} assign call{'' if stats.calls == 1 else 's'}"
                + (f" ({stats.cached} cached)" if stats.cached else ""))

    def _grow(self, candidates: list[Candidate]) -> None:
        if len(candidates) > self.state.n_candidates:
            self.state.add_candidates(len(candidates) - self.state.n_candidates)
