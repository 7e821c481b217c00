"""The explain stage: one :class:`~textclust.explain.loop.RoundLoop` over a proposer and an
assigner, chosen once by :func:`build_explainer`.

==================  ==================================  ======================================
explainer           proposer                            assigner
==================  ==================================  ======================================
offline-extractive  :class:`.extractive.ExtractiveProposer`  :class:`.similarity.SimilarityAssigner`
offline-seeded      none (the user's candidates only)   :class:`.similarity.SimilarityAssigner`
llm                 :class:`.model.ModelProposer`          :class:`.model.ModelAssigner`
llm (only user's)   none                                :class:`.model.ModelAssigner`
==================  ==================================  ======================================

An :class:`Explainer` works on distinct texts (duplicates share one judgment; their
weights add up) and expands the result back to every text it was given. The model's
explainer can also explain *inside* each selected explanation (depth 2, see
:mod:`.hierarchy`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..config import RunConfig, clean_goal
from ..errors import SettingsError, register_settings
from ..interfaces import Assignment, Candidate, Clusterer, ExplainResult, ModelClient, RoundRecord
from .extractive import ExtractiveProposer
from .goal import goal_gap_notice
from .loop import RoundLoop
from .model import CallTally, ModelAssigner, ModelProposer, unit_vectors
from .sampling import distinct_texts
from .select import Selector
from .similarity import SimilarityAssigner
from .user_classifier import classify_user_candidates

EXPLAINER_OFFLINE = "offline-extractive"
EXPLAINER_SEEDED = "offline-seeded"  # only the user's candidates, no model
EXPLAINER_LLM = "llm"

OFFLINE_NOTICE = (
    "No language model was configured: texts are grouped by embedding similarity, and each group is "
    "described by words its members contain (\"mentions A or B\" holds for at least 90% of them) or, "
    "when no few words do, by its most typical members (\"similar in meaning to …\"); the goal orders "
    "the explanations but does not change which texts are grouped."
)
SEEDED_NOTICE = (
    "Open-set classification into the given explanations ({only_candidates}): no language model; "
    "each text gets the seeded explanations a classifier trained on their closest texts says it fits, or none."
)
LLM_NOTICE_INCOMPLETE = ("The language-model budget ran out before the run finished: this is the best result "
                         "so far ({reason}). Re-run the same command with a larger {max_calls}/{max_tokens} "
                         "to finish it; answers already paid for come from the cache.")

Embed = Callable[[list[str]], np.ndarray]
register_settings(["dry_run"])  # named in check_estimate's message


class Explainer:
    """Propose → assign → select over one corpus. Subclasses say which proposer and assigner."""

    name = ""
    keep_round_without_gain = False  # see RoundLoop
    more_rounds_for_k = 0  # see RoundLoop
    reject_catch_alls = False  # see Selector: a model's broad or merged proposals
    notes: list | None = None  # shared with the proposer, so notes keep the order they were made in

    def __init__(self, config: RunConfig, *, log=None):
        self.config = config
        self.log = log or (lambda message: None)

    # --- what a subclass provides -----------------------------------------------------------

    def parts(self, X: np.ndarray, texts: list[str], labels: np.ndarray, user_candidates: list[Candidate],
              goal_vector: np.ndarray | None):
        """``(proposer or None, assigner)`` for these distinct texts."""
        raise NotImplementedError

    def finish(self, result: ExplainResult, X, texts, labels, weights) -> None:
        """After the loop, over all texts (depth 2)."""

    def notice(self, result: ExplainResult) -> str | None:
        """How the explanations were made, or why the result is partial (shown with the run)."""
        return None

    def goal_notice(self, goal: str) -> str | None:
        """The part of the goal this explainer cannot serve, if any."""
        return None

    def usage(self, store, run_id: int):
        """The model's use for the run (:class:`~textclust.stats.ModelUsage`), None offline."""
        return None

    def check_estimate(self) -> None:
        """Raise unless :meth:`estimate` can say what a run would cost (before any work is done)."""
        raise SettingsError("{dry_run} estimates language-model calls: configure one with {model}")

    def estimate(self, X, texts, labels, weights, user_candidates: list[Candidate] = ()) -> dict:
        self.check_estimate()
        return {}

    @property
    def stage(self) -> str:
        """The timing's name: "assign" when only the user's candidates are judged."""
        return "assign" if self.config.explaining.only_candidates else "explain"

    # --- the loop ---------------------------------------------------------------------------

    def selector(self, notes: list | None = None) -> Selector:
        e = self.config.explaining
        return Selector(k=e.k, min_share=e.min_share, lambda_miss=e.lambda_miss, lambda_overlap=e.lambda_overlap,
                        max_candidate_share=e.max_candidate_share, log=self.log, notes=notes,
                        reject_catch_alls=self.reject_catch_alls)

    def explain(self, X: np.ndarray, texts: list[str], labels: np.ndarray, weights: np.ndarray, *,
                user_candidates: list[Candidate] = (), goal_vector: np.ndarray | None = None,
                rounds: int | None = None) -> ExplainResult:
        """Explain ``texts`` (embedded as ``X``, clustered as ``labels``; ``weights``: input rows
        per text). ``user_candidates`` (with vectors) come first and are always kept;
        ``goal_vector`` (the goal embedded like the texts) orders offline words and explanations."""
        X = np.asarray(X, dtype=np.float32)
        labels = np.asarray(labels)
        weights = np.asarray(weights, dtype=float)
        first, inverse = distinct_texts(list(texts))
        Xu, tu, lu = X[first], [texts[i] for i in first], labels[first]
        wu = np.bincount(inverse, weights=weights, minlength=len(first))
        proposer, assigner = self.parts(Xu, tu, lu, list(user_candidates), goal_vector)
        loop = RoundLoop(proposer, assigner, self.selector(self.notes), rounds or self.config.rounds,
                         keep_round_without_gain=self.keep_round_without_gain,
                         more_rounds_for_k=self.more_rounds_for_k, log=self.log)
        result = expand(loop.run(Xu, tu, lu, wu, list(user_candidates)), inverse)
        self.finish(result, X, texts, labels, weights)
        return result


class OfflineExplainer(Explainer):
    """Extractive explanations and embedding similarity; the goal orders words and explanations."""

    def __init__(self, config: RunConfig, *, clusterer: Clusterer | None = None, embed: Embed | None = None,
                 log=None, beta: float = 2.0, margin: float | None = 0.05):
        super().__init__(config, log=log)
        self.clusterer = clusterer
        self.embed = embed
        self.beta = beta
        self.margin = margin

    @property
    def name(self) -> str:
        return EXPLAINER_SEEDED if self.config.explaining.only_candidates else EXPLAINER_OFFLINE

    def parts(self, X, texts, labels, user_candidates, goal_vector):
        user = None
        if user_candidates:
            E = np.vstack([c.vector for c in user_candidates]).astype(np.float32)
            user = classify_user_candidates(X, E, random_state=self.config.random_state)
        if self.clusterer is None and not self.config.explaining.only_candidates:
            from ..cluster import EmbeddingClusterer

            self.clusterer = EmbeddingClusterer()
        # Over a partition (k-means) every text goes to its closest selected explanation:
        # thresholds would only leave texts that k-means did place as "uncovered".
        partition = bool(getattr(self.clusterer, "is_partition", False)) and not self.config.explaining.only_candidates
        assigner = SimilarityAssigner(X, user, beta=self.beta, margin=self.margin, partition=partition)
        if self.config.explaining.only_candidates:
            return None, assigner
        proposer = ExtractiveProposer(self.clusterer, k=self.config.explaining.k, goal_vector=goal_vector,
                                      embed=self.embed)
        return proposer, assigner

    def finish(self, result, X, texts, labels, weights) -> None:
        """Word each selected extractive explanation from its final members, so that it is true
        of them (see :mod:`.truthful`)."""
        from .truthful import reword

        final = result.final_matches()
        chosen = [j for j in result.selected if result.candidates[j].source == "extractive"]
        if not chosen:
            return
        members = [np.flatnonzero(final[:, j]) for j in chosen]
        scores = [result.assignment.scores[idx, j] for idx, j in zip(members, chosen)]
        preferred = [list(result.candidates[j].terms or []) for j in chosen]
        for j, wording in zip(chosen, reword(list(texts), members, scores, preferred)):
            candidate = result.candidates[j]
            candidate.name, candidate.text, candidate.terms = wording["name"], wording["text"], wording["terms"]

    def notice(self, result):
        return SEEDED_NOTICE if self.config.explaining.only_candidates else OFFLINE_NOTICE

    def goal_notice(self, goal):
        return None if self.config.explaining.user_candidates else goal_gap_notice(goal)


class ModelExplainer(Explainer):
    """The goal-driven method: the model writes explanations and judges texts against them."""

    name = EXPLAINER_LLM
    keep_round_without_gain = True
    reject_catch_alls = True

    @property
    def more_rounds_for_k(self) -> int:
        """A fixed K short of explanations gets rounds enough to propose K more, plus one."""
        e = self.config.explaining
        return 0 if e.k is None else -(-e.k // e.n_explanations) + 1

    def __init__(self, config: RunConfig, client: ModelClient | None, embed: Embed, goal: str, *,
                 clusterer: Clusterer | None = None, log=None, restating: np.ndarray | None = None,
                 depth: int | None = None):
        super().__init__(config, log=log)
        self.client = client
        self.embed = embed
        self.goal = clean_goal(goal)
        self.clusterer = clusterer
        self.restating = restating
        self.depth = config.explaining.depth if depth is None else depth
        self.tally = CallTally()
        self.notes = self.tally.notes

    def parts(self, X, texts, labels, user_candidates, goal_vector):
        e = self.config.explaining
        assigner = ModelAssigner(self.client, self.goal, X, texts, batch_size=e.batch_size, prefilter=e.prefilter,
                                 escalations=e.escalations, max_chars=e.max_chars, tally=self.tally)
        if e.only_candidates:
            return None, assigner
        proposer = ModelProposer(self.client, self.embed, self.goal, n_samples=e.n_samples,
                                 n_explanations=e.n_explanations, merge_threshold=e.merge_threshold,
                                 examples=e.examples or (), max_chars=e.max_chars,
                                 random_state=self.config.random_state, restating=self.restating,
                                 tally=self.tally, log=self.log, review=e.review)
        return proposer, assigner

    def explain(self, X, texts, labels, weights, *, user_candidates=(), goal_vector=None,
                rounds=None) -> ExplainResult:
        result = super().explain(X, texts, labels, weights, user_candidates=self._with_vectors(user_candidates),
                                 goal_vector=goal_vector, rounds=rounds)
        result.n_calls = dict(self.tally.n_calls)
        n = len(result.assignment.unverified)
        if n:
            result.notes.append(f"{n} evidence quote{'s were' if n != 1 else ' was'} not found in "
                                f"{'their' if n != 1 else 'its'} text (recorded as unverified; the judgments stand)")
        return result

    def _with_vectors(self, candidates: list[Candidate]) -> list[Candidate]:
        """The user's candidates, each with a unit vector (embedded here when given without one)."""
        missing = [c for c in candidates if c.vector is None]
        if not missing:
            return list(candidates)
        vectors = iter(unit_vectors(self.embed, [c.text for c in missing]))
        return [c if c.vector is not None else replace(c, vector=next(vectors)) for c in candidates]

    def finish(self, result, X, texts, labels, weights) -> None:
        if self.depth >= 2 and not result.incomplete:
            from .hierarchy import explain_inside

            explain_inside(self, result, X, texts, labels, weights)

    def child(self, goal: str, restating: np.ndarray, log) -> "ModelExplainer":
        """The explainer of one selected explanation's members (depth 2): automatic K, depth 1."""
        config = replace(self.config, explaining=replace(self.config.explaining, k=None, depth=1, examples=None,
                                                          user_candidates=None, only_candidates=False))
        return ModelExplainer(config, self.client, self.embed, goal, clusterer=self.clusterer, log=log,
                              restating=restating, depth=1)

    def notice(self, result):
        return LLM_NOTICE_INCOMPLETE.format(reason=result.stop_reason, max_calls="{max_calls}",
                                            max_tokens="{max_tokens}") if result.incomplete else None

    def usage(self, store, run_id: int):
        from ..stats import ModelUsage

        usage = self.client.usage()
        # Requests by stage as the server received them (retries and repairs included); a client
        # that cannot say (a test double) leaves the explainer's count of answers.
        by_stage = usage.pop("requests_by_stage", None)
        usage["this_process"] = {k: usage[k] for k in ("calls", "cached_calls", "prompt_tokens", "completion_tokens")}
        usage.update(store.usage_for_run(run_id))
        model = self.config.model
        prices = (model.price_prompt_per_mtok, model.price_completion_per_mtok)
        if any(p is not None for p in prices):
            usage["cost_usd"] = round((usage["prompt_tokens"] * (prices[0] or 0.0)
                                       + usage["completion_tokens"] * (prices[1] or 0.0)) / 1e6, 6)
        usage["calls_by_stage"] = ({stage: by_stage.get(stage, 0) for stage in self.tally.n_calls} | by_stage
                                   if by_stage is not None else dict(self.tally.n_calls))
        return ModelUsage.from_dict(usage)

    def check_estimate(self) -> None:
        return None

    def estimate(self, X, texts, labels, weights, user_candidates: list[Candidate] = ()) -> dict:
        from .estimate import estimate_llm

        return estimate_llm(self, X, texts, labels, weights, user_candidates)


def explainer_name(config: RunConfig) -> str:
    """The name recorded with a run, before it starts."""
    if config.model is not None:
        return EXPLAINER_LLM
    return EXPLAINER_SEEDED if config.explaining.only_candidates else EXPLAINER_OFFLINE


def build_explainer(config: RunConfig, *, goal: str, embed: Embed, store=None, run_id: int | None = None,
                    client: ModelClient | None = None, clusterer: Clusterer | None = None, log=None) -> Explainer:
    """The explainer the configuration asks for: the model's when one is configured, else the
    offline one. The model is reached through ``client`` when given (bound to ``run_id``), else
    through an :class:`~textclust.llm.client.LLMClient` recording its calls in ``store``; with
    neither (a dry run) nothing can be sent."""
    if config.model is None:
        return OfflineExplainer(config, clusterer=clusterer, embed=embed, log=log)
    if client is None and store is not None:
        from ..llm.client import LLMClient

        client = LLMClient(config.model, store, run_id=run_id, log=log)
    elif client is not None and run_id is not None:
        client.run_id = run_id  # an injected client records its calls under this run
    return ModelExplainer(config, client, embed, goal, clusterer=clusterer, log=log)


def expand(result: ExplainResult, inverse: np.ndarray) -> ExplainResult:
    """A result over distinct texts, spread back to every text (duplicates share their judgment)."""
    A = result.assignment
    copies: dict[int, list[int]] = {}
    for i, u in enumerate(inverse.tolist()):
        copies.setdefault(u, []).append(i)
    assignment = Assignment(
        scores=A.scores[inverse], thresholds=A.thresholds, matches=A.matches[inverse], margin=A.margin,
        judged=A.judged, failed=None if A.failed is None else A.failed[inverse],
        reasons=None if A.reasons is None else A.reasons[inverse],
        evidence={(i, j): quote for (u, j), quote in A.evidence.items() for i in copies[u]},
        unverified={(i, j): quote for (u, j), quote in A.unverified.items() for i in copies[u]},
        affinity=None if A.affinity is None else A.affinity[inverse],
        home=None if A.home is None else A.home[inverse],
    )
    rounds = [RoundRecord(r.round, r.labels[inverse], r.n_candidates, r.selection) for r in result.rounds]
    return ExplainResult(candidates=result.candidates, assignment=assignment, selection=result.selection,
                         rounds=rounds, n_user=result.n_user, stop_reason=result.stop_reason,
                         incomplete=result.incomplete, notes=list(result.notes), n_calls=dict(result.n_calls))
