"""The goal-driven explainer: propose → assign → select with a language model (GoalEx, frugal).

Each round:

1. **propose** — the model reads ``n_samples`` texts (round 1: drawn across the
   embedding clusters, noise included; later rounds: drawn the same way from the texts
   still uncovered) and writes up to ``n_explanations`` explanations for the goal;
   proposals whose embedding is within ``merge_threshold`` (cosine) of an existing
   candidate, or of an earlier proposal, are merged into it (dropped);
2. **assign** — each distinct text is judged against its ``prefilter`` most similar
   candidates it has not been judged against yet, ``batch_size`` texts a call; a text
   with no "yes" at all is escalated once to its next ``prefilter`` candidates (see
   :mod:`.assign_llm`);
3. **select** — the covering integer program (:func:`.select.select_explanations`) over
   the judged matches: exactly ``k`` explanations, or automatic K with a cost of
   ``min_share · Σ weights · lambda_miss`` per explanation; seeds are always kept.

The loop stops when the rounds run out, a round brings no new candidate, or coverage
rose by less than :data:`.explainer.MIN_COVERAGE_GAIN`. When the budget runs out
(:class:`~textclust.llm.errors.BudgetExceeded`), it selects over what has been judged
and returns that, marked ``incomplete``. With ``depth=2`` every selected explanation
covering enough texts gets its own sub-explanations, proposed and selected among its
members with the parent explanation folded into the goal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..cluster import NOISE, default_min_cluster_size
from ..errors import SettingsError
from ..llm.errors import BudgetExceeded
from .assign import Assignment
from .assign_llm import (
    AssignPrompt,
    JudgeStats,
    Judgments,
    escalation_checks,
    judge,
    prefilter_checks,
    rank_candidates,
)
from .candidates import Candidate
from .explainer import MIN_COVERAGE_GAIN, Explanation, RoundRecord
from .propose_llm import Proposal, propose
from .sampling import distinct_texts, stratified_sample
from .select import SelectionResult, select_explanations

EXPLAINER_LLM = "llm"
LLM_THRESHOLD = 0.5  # scores are 1 (yes), 0 (no) or NaN (not judged)
REASON_LLM = "language model"
MIN_CHILD_TEXTS = 20  # depth 2: a parent needs max(2 · min cluster size, this) members
CHILD_ROUNDS = 2


@dataclass
class LLMExplanation(Explanation):
    """:class:`Explanation` plus what the language model said.

    ``assignment.scores`` is 1.0 (judged yes), 0.0 (judged no) or NaN (never asked);
    ``assignment.matches`` is ``scores == 1``; thresholds are 0.5; ``margin`` is None.
    """

    evidence: dict = field(default_factory=dict)  # (text index, candidate index) -> quote
    unparsed: np.ndarray | None = None  # per text: its assignment call failed and it has no "yes"
    incomplete: bool = False  # the budget ran out: the best result so far
    stop_reason: str | None = None  # why the loop ended (always set; a warning only when incomplete)
    children: dict = field(default_factory=dict)  # selected candidate index -> LLMExplanation
    child_members: dict = field(default_factory=dict)  # selected candidate index -> text indices of the child
    n_calls: dict = field(default_factory=dict)  # stage -> calls made (children included)
    goal: str = ""
    notes: list = field(default_factory=list)  # things the user should know (e.g. fewer candidates than k)
    usage: dict | None = None  # client.usage() at the end (top level only)

    def final_matches(self) -> np.ndarray:
        """A text fits a selected explanation exactly when the model said so; a text whose
        call failed fits nothing."""
        final = np.zeros_like(self.assignment.matches)
        sel = np.array(self.selected, dtype=int)
        if len(sel):
            final[:, sel] = self.assignment.matches[:, sel]
        if self.unparsed is not None:
            final[self.unparsed] = False
        return final


class LLMExplainer:
    """Propose → assign → select with a language model client (see the module docstring).

    ``client`` has ``complete_json`` / ``complete_many`` (:mod:`textclust.llm.client`);
    ``embed(list_of_str)`` returns unit vectors in the space of ``X``; ``seeds`` are
    candidates (source "seed", with vectors) that are always kept and judged like any other.
    """

    name = EXPLAINER_LLM

    def __init__(self, client, embed: Callable[[list[str]], np.ndarray], goal: str, *, rounds: int = 3,
                 k: int | None = None, min_share: float = 0.005, lambda_miss: float = 1.0,
                 lambda_overlap: float = 0.5, clusterer=None, n_samples: int = 40, n_explanations: int = 8,
                 batch_size: int = 10, prefilter: int = 5, merge_threshold: float = 0.9,
                 max_candidate_share: float | None = None, examples=(), seeds=(), depth: int = 1,
                 max_chars: int = 1000, random_state: int = 0, log: Callable[[str], None] | None = None,
                 propose: bool = True, escalations: int = 3):
        if not str(goal).strip():
            raise SettingsError("--goal must not be empty")
        checks = [
            (rounds >= 1, f"--rounds must be at least 1 (got {rounds})"),
            (k is None or k >= 1, f"--k must be at least 1 (got {k})"),
            (n_samples >= 1, f"--n-samples must be at least 1 (got {n_samples})"),
            (n_explanations >= 1, f"--n-explanations must be at least 1 (got {n_explanations})"),
            (batch_size >= 1, f"--batch-size must be at least 1 (got {batch_size})"),
            (prefilter >= 0, f"--prefilter must be 0 (off) or more (got {prefilter})"),
            (0 < merge_threshold <= 1, f"--merge-threshold must be in (0, 1] (got {merge_threshold})"),
            (max_candidate_share is None or 0 < max_candidate_share <= 1,
             f"--max-candidate-share must be in (0, 1] (got {max_candidate_share})"),
            (depth in (1, 2), f"--depth must be 1 or 2 (got {depth})"),
            (escalations >= 0, f"--escalations must be 0 or more (got {escalations})"),
            (max_chars >= 20, f"--max-chars must be at least 20 (got {max_chars})"),
            (k is None or k >= len(seeds), f"--k {k} is less than the {len(seeds)} seeded explanations, "
                                           "which are always kept"),
            (propose or len(seeds) > 0, "--only-candidates needs --candidate or --candidates"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        self.client = client
        self.embed = embed
        self.goal = " ".join(str(goal).split())
        self.rounds = rounds
        self.k = k
        self.min_share = min_share
        self.lambda_miss = lambda_miss
        self.lambda_overlap = lambda_overlap
        self.clusterer = clusterer
        self.n_samples = n_samples
        self.n_explanations = n_explanations
        self.batch_size = batch_size
        self.prefilter = prefilter
        self.merge_threshold = merge_threshold
        self.max_candidate_share = max_candidate_share
        self.examples = [str(e) for e in examples]
        self.seeds = list(seeds)
        self.depth = depth
        self.max_chars = max_chars
        self.random_state = random_state
        self.log = log or (lambda message: None)
        self._restating = None  # depth 2: the parent's vector (proposals this close are dropped)
        # False = --only-candidates: open-set classification into the seeds; nothing is
        # proposed or selected, every seed is kept and a text fits the seeds the model says.
        self.propose = propose
        # A text with no "yes" among its checked candidates is asked about its next `prefilter`
        # candidates, up to this many times a round: the embedding ranking misses the right
        # candidate for some texts (measured with bench/llm_cost.py: banking77, goemotions).
        self.escalations = escalations

    # --- public -------------------------------------------------------------------------------

    def explain(self, X: np.ndarray, texts: list[str], labels: np.ndarray, weights: np.ndarray) -> LLMExplanation:
        result = self._explain(X, texts, labels, weights)
        if hasattr(self.client, "usage"):
            result.usage = self.client.usage()
        return result

    def estimate(self, X: np.ndarray, texts: list[str], labels: np.ndarray, weights: np.ndarray) -> dict:
        """Calls and tokens per stage, before anything is spent (no call is made)."""
        from .estimate import estimate_llm

        return estimate_llm(self, X, texts, labels, weights)

    # --- the loop -------------------------------------------------------------------------------

    def _explain(self, X, texts, labels, weights) -> LLMExplanation:
        X = np.asarray(X, dtype=np.float32)
        labels = np.asarray(labels)
        weights = np.asarray(weights, dtype=float)
        first, inverse = distinct_texts(list(texts))
        loop = _Loop(self, X[first], [texts[i] for i in first], labels[first],
                     np.bincount(inverse, weights=weights, minlength=len(first)))
        loop.run()
        result = loop.result(inverse, labels)
        if self.depth >= 2 and not result.incomplete:
            self._children(result, X, texts, labels, weights, loop)
        return result

    def _children(self, result: LLMExplanation, X, texts, labels, weights, loop: "_Loop") -> None:
        size = getattr(self.clusterer, "min_cluster_size", None) or default_min_cluster_size(len(loop.texts))
        needed = max(2 * size, MIN_CHILD_TEXTS)
        final = result.final_matches()
        for j in result.selected:
            members = np.flatnonzero(final[:, j])
            if len(np.unique(loop.inverse[members])) < needed:  # distinct texts
                continue
            parent = result.candidates[j]
            prefix = f"  [{parent.name}] "
            child = LLMExplainer(
                self.client, self.embed, f"{self.goal} (Within texts where: {parent.text})",
                rounds=min(CHILD_ROUNDS, self.rounds), k=None, min_share=self.min_share,
                lambda_miss=self.lambda_miss, lambda_overlap=self.lambda_overlap, clusterer=self.clusterer,
                n_samples=self.n_samples, n_explanations=self.n_explanations, batch_size=self.batch_size,
                prefilter=self.prefilter, merge_threshold=self.merge_threshold,
                max_candidate_share=self.max_candidate_share, depth=1, max_chars=self.max_chars,
                escalations=self.escalations,
                random_state=self.random_state, log=lambda message, p=prefix: self.log(p + message),
            )
            child._restating = parent.vector[None, :]  # a proposal restating the parent is merged into it
            child = child._explain(X[members], [texts[i] for i in members], labels[members], weights[members])
            for stage, count in child.n_calls.items():
                result.n_calls[stage] = result.n_calls.get(stage, 0) + count
            if len(child.selected) >= 2 or child.incomplete:
                result.children[j] = child
                result.child_members[j] = members
            else:
                self.log(f"{prefix}no split: {len(child.selected)} sub-explanation(s) selected")
            if child.incomplete:
                result.incomplete = True
                result.stop_reason = f"{child.stop_reason} (in the sub-explanations of '{parent.name}')"
                break


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class _Loop:
    """The rounds over distinct texts (``Xu``, ``texts``, ``labels``, ``weights`` summed over duplicates)."""

    def __init__(self, explainer: LLMExplainer, Xu, texts, labels, weights):
        self.e = explainer
        self.X = Xu
        self.texts = texts
        self.labels = labels
        self.weights = weights
        self.inverse = None
        self.candidates: list[Candidate] = []
        self.V = np.zeros((0, Xu.shape[1]), dtype=np.float32)
        self.state = Judgments(len(texts))
        self.rounds: list[tuple[int, np.ndarray, int, SelectionResult]] = []  # round, sample mask, new, selection
        self.selection = SelectionResult([], float(explainer.lambda_miss * weights.sum()), "no candidates", 0.0)
        self.n_calls = {"propose": 0, "assign": 0}
        self.stop_reason: str | None = None
        self.incomplete = False
        self.notes: list[str] = []
        self.n_seeds = 0
        self.rng = np.random.default_rng(explainer.random_state)

    # --- rounds ---

    def run(self) -> None:
        e = self.e
        if e.seeds:
            self._add([self._seed(c) for c in e.seeds])
        self.n_seeds = len(e.seeds)
        if not e.propose:
            self._classify_only()
            return
        round_number = 0
        pending = None  # (round, pool, new) of a round in progress
        try:
            for round_number in range(1, e.rounds + 1):
                pool = None
                if round_number > 1:
                    pool = ~self._covered()
                    if not pool.any():
                        self.stop_reason = "every text is covered"
                        break
                    if e.k is None and self.weights[pool].sum() < e.min_share * self.weights.sum():
                        self.stop_reason = "too few uncovered texts left for another explanation"
                        break
                new, merged, error = self._propose(round_number, pool)
                if not new and (round_number > 1 or not self.candidates):
                    self.stop_reason = (f"proposing failed: {error}" if error else "no new candidates"
                                        + (f" ({merged} merged as near-duplicates)" if merged else ""))
                    break
                self._add(new)
                pending = (round_number, pool, len(new))
                stats = self._assign()
                previous = self.selection.coverage
                self.selection = self._select()
                self.rounds.append((round_number, pool, len(new), self.selection))
                pending = None
                unparsed = int((self.state.failed & ~self.state.yes.any(axis=1)).sum())
                e.log(f"round {round_number}: {_count(len(new), 'new candidate')}"
                      + (f" ({merged} merged as near-duplicates)" if merged else "")
                      + f", {_count(stats.calls, 'assign call')}" + (f" ({stats.cached} cached)" if stats.cached else "")
                      + f", {len(self.selection.chosen)} selected, coverage {self.selection.coverage:.1%}"
                      + (f", {_count(unparsed, 'text')} unparsed" if unparsed else ""))
                if round_number > 1 and self.selection.coverage < previous + MIN_COVERAGE_GAIN:
                    self.stop_reason = f"coverage rose by less than {MIN_COVERAGE_GAIN:.1%}"
                    break
            else:
                self.stop_reason = f"all {e.rounds} rounds done"
        except BudgetExceeded as err:
            self.incomplete = True
            self.stop_reason = f"budget exceeded: {err}"
            self.selection = self._select()
            if pending is not None:
                self.rounds.append((*pending, self.selection))
            elif self.rounds:
                r, pool, n_new, _ = self.rounds[-1]
                self.rounds[-1] = (r, pool, n_new, self.selection)
            e.log(f"stopped in round {round_number}: {self.stop_reason}; keeping the best result so far "
                  f"(coverage {self.selection.coverage:.1%})")

    def _classify_only(self) -> None:
        """--only-candidates: judge every text against the seeds, keep them all."""
        try:
            stats = self._assign()
        except BudgetExceeded as err:
            self.incomplete = True
            self.stop_reason = f"budget exceeded: {err}"
        else:
            self.stop_reason = "classified into the given explanations"
            self.e.log(f"classified: {stats.calls} assign calls" + (f" ({stats.cached} cached)" if stats.cached else ""))
        chosen = list(range(len(self.candidates)))
        covered = self.state.yes.any(axis=1)
        w = self.weights
        self.selection = SelectionResult(chosen, float(w[~covered].sum()), "seeded (no selection)",
                                         float(w[covered].sum() / w.sum()))
        self.rounds.append((1, None, 0, self.selection))

    def _seed(self, seed: Candidate) -> Candidate:
        vector = seed.vector
        if vector is None:
            vector = self._embed([seed.text])[0]
        return Candidate(name=seed.name, text=seed.text, vector=np.asarray(vector, dtype=np.float32),
                         source="seed", round=seed.round)

    def _embed(self, strings: list[str]) -> np.ndarray:
        E = np.asarray(self.e.embed(strings), dtype=np.float32).reshape(len(strings), -1)
        norms = np.linalg.norm(E, axis=1, keepdims=True)
        return E / np.where(norms == 0, 1.0, norms)

    def _add(self, new: list[Candidate]) -> None:
        if not new:
            return
        self.candidates.extend(new)
        self.V = np.vstack([self.V, np.vstack([c.vector for c in new]).astype(np.float32)])
        self.state.add_candidates(len(new))

    def _propose(self, round_number: int, pool) -> tuple[list[Candidate], int, str | None]:
        e = self.e
        sample = stratified_sample(self.labels, e.n_samples, self.rng, pool)
        proposals, result = propose(e.client, e.goal, [self.texts[i] for i in sample], e.n_explanations,
                                    e.examples, e.max_chars)
        self.n_calls["propose"] += 1
        if not result.ok:
            e.log(f"round {round_number}: the proposal call failed ({result.error})")
            self.notes.append(f"round {round_number}: proposing failed: {result.error}")
        new, merged = self._merge(proposals, round_number)
        return new, merged, None if result.ok else (result.error or "no usable answer")

    def _merge(self, proposals: list[Proposal], round_number: int) -> tuple[list[Candidate], int]:
        """New candidates from ``proposals``, without those within ``merge_threshold`` of an
        existing candidate or of an earlier proposal; names made unique."""
        if not proposals:
            return [], 0
        E = self._embed([p.explanation for p in proposals])
        kept: list[Candidate] = []
        known = self.V if self.e._restating is None else np.vstack([self.V, self.e._restating])
        names = {c.name.lower() for c in self.candidates}
        merged = 0
        for p, v in zip(proposals, E):
            if len(known) and float((known @ v).max()) >= self.e.merge_threshold:
                merged += 1
                continue
            name, n = p.name, 2
            while name.lower() in names:
                name, n = f"{p.name} ({n})", n + 1
            names.add(name.lower())
            kept.append(Candidate(name=name, text=p.explanation, vector=v, source="llm", round=round_number))
            known = np.vstack([known, v[None, :]])
        return kept, merged

    def _assign(self) -> JudgeStats:
        e = self.e
        prompt = AssignPrompt(e.goal, [(c.name, c.text) for c in self.candidates], e.max_chars)
        order = rank_candidates(self.X, self.V)
        stats = JudgeStats()
        try:
            requests = prefilter_checks(order, self.state.scores, e.prefilter)
            # Texts with no "yes" yet first: if the budget runs out, what was judged helps most.
            has_yes = self.state.yes.any(axis=1)
            requests.sort(key=lambda request: bool(has_yes[request[0]]))
            judge(e.client, prompt, requests, self.texts, self.state, e.batch_size, stats=stats)
            # Escalation: texts with no "yes" at all (and whose call did not fail) get their next
            # candidates, up to `escalations` times.
            for _ in range(e.escalations if e.prefilter > 0 else 0):
                hopeless = np.flatnonzero(~self.state.yes.any(axis=1) & ~self.state.failed)
                requests = escalation_checks(order, self.state.scores, e.prefilter, hopeless)
                if not requests:
                    break
                judge(e.client, prompt, requests, self.texts, self.state, e.batch_size, stats=stats)
        finally:
            self.n_calls["assign"] += stats.calls
        return stats

    def _select(self) -> SelectionResult:
        e = self.e
        yes = self.state.yes  # a failed text has no "yes" unless an earlier call judged it
        w = self.weights
        m = len(self.candidates)
        judged = self.state.judged.any(axis=0)
        eligible = [j for j in range(m) if j < self.n_seeds or judged[j]]
        if e.max_candidate_share is not None:
            share = (w[:, None] * yes).sum(axis=0) / w.sum()
            eligible = [j for j in eligible if j < self.n_seeds or share[j] <= e.max_candidate_share]
        if not eligible:
            return SelectionResult([], float(e.lambda_miss * w.sum()), "no candidates", 0.0)
        k = e.k
        if k is not None and k > len(eligible):
            note = f"asked for {k} explanations but only {len(eligible)} candidates were judged; selected all of them"
            if note not in self.notes:
                self.notes.append(note)
                e.log(note)
            k = len(eligible)
        result = select_explanations(
            yes[:, eligible], k=k, cost=None if k is not None else e.min_share * w.sum() * e.lambda_miss,
            weights=w, lambda_miss=e.lambda_miss, lambda_overlap=e.lambda_overlap,
            forced=list(range(self.n_seeds)),
        )
        return SelectionResult(sorted(eligible[c] for c in result.chosen), result.objective, result.status,
                               result.coverage)

    def _covered(self) -> np.ndarray:
        chosen = self.selection.chosen
        if not chosen:
            return np.zeros(len(self.texts), dtype=bool)
        return self.state.yes[:, chosen].any(axis=1)

    # --- the result over all texts ---

    def result(self, inverse: np.ndarray, labels: np.ndarray) -> LLMExplanation:
        self.inverse = inverse
        scores = self.state.scores[inverse]
        matches = scores == 1.0
        reasons = np.full(scores.shape, None, dtype=object)
        reasons[matches] = REASON_LLM
        copies: dict[int, list[int]] = {}
        for i, u in enumerate(inverse.tolist()):
            copies.setdefault(u, []).append(i)
        evidence = {(i, j): quote for (u, j), quote in self.state.evidence.items() for i in copies[u]}
        unparsed = (self.state.failed & ~self.state.yes.any(axis=1))[inverse]
        if not self.rounds:  # stopped before round 1 was judged: still record its clustering
            self.rounds.append((1, None, len(self.candidates), self.selection))
        records = [RoundRecord(r, labels.copy() if pool is None else np.where(pool[inverse], labels, NOISE),
                               n_new, selection)
                   for r, pool, n_new, selection in self.rounds]
        return LLMExplanation(
            candidates=list(self.candidates),
            assignment=Assignment(scores=scores, thresholds=np.full(len(self.candidates), LLM_THRESHOLD),
                                  matches=matches),
            selection=self.selection, rounds=records, margin=None, n_seeds=self.n_seeds, reasons=reasons,
            evidence=evidence, unparsed=unparsed, incomplete=self.incomplete, stop_reason=self.stop_reason,
            n_calls=dict(self.n_calls), goal=self.e.goal, notes=list(self.notes),
        )
