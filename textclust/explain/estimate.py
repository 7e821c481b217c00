"""Dry run: how many calls and tokens the language-model explainer would spend.

Nothing is sent. The prompts are rendered with the real templates (the round-1 propose
prompt exactly, with the sample ``explain()`` would draw; assign prompts with each
distinct text as it would appear in a data block), and tokens are counted with the
client's ``estimate_tokens`` (about four characters a token). The assumptions for
what cannot be known in advance are spelled out in the result's ``note``.
"""

from __future__ import annotations

import math

import numpy as np

from .assign_llm import AssignPrompt
from .hierarchy import CHILD_ROUNDS, min_child_texts
from .propose_llm import MAX_LISTED_CANDIDATES, data_line, propose_messages, truncate
from .model import MAX_PROPOSE_CALLS
from .review_llm import MEMBERS, review_messages
from .sampling import distinct_texts, n_groups, stratified_sample

ESCALATED_SHARE = 0.25  # assumed share of texts with no "yes" among their first candidates
FURTHER_ESCALATED_SHARE = 0.1  # assumed share still without a "yes" at each further escalation
PROPOSAL_TOKENS = 45  # one proposed explanation in the answer (name, predicate, JSON)
ANSWER_TOKENS_PER_TEXT = 30  # one text's entry in an assign answer (id, about one match with evidence)
DECISION_TOKENS = 30  # one candidate's entry in a review answer (number, action, into, reason)
MESSAGE_OVERHEAD = 4  # tokens per chat message (role, separators)
_PLACEHOLDER = ("a four word name", "the text states a specific property that matters for the goal, "
                "described precisely enough that a reader can decide yes or no for any single text")


def estimate_llm(explainer, X, texts, labels, weights, user_candidates=()) -> dict:
    """``explainer``: the :class:`~textclust.explain.explainer.ModelExplainer` of the run (its
    client may be None: tokens are then counted as characters / 4)."""
    e = _Settings(explainer, user_candidates)
    count = e.client.estimate_tokens if e.client is not None else (lambda s: max(1, len(s) // 4))

    def tokens(messages) -> int:
        return sum(count(m["content"]) + MESSAGE_OVERHEAD for m in messages)

    labels = np.asarray(labels)
    first, _ = distinct_texts(list(texts))
    n = len(first)
    distinct = [texts[i] for i in first]
    rng = np.random.default_rng(e.random_state)
    sample = stratified_sample(labels[first], e.n_samples, rng)
    # Propose calls a round: one, and when it names as many as asked, one per group of clusters
    # (round 1's groups: later rounds and depth 2 see a subset of the clusters, so no more).
    # X None: a dry run, nothing embedded or clustered, so as many clusters as texts are assumed.
    n_clusters = n if X is None else len(set(labels[first].tolist()))
    groups = n_groups(n_clusters, e.n_explanations, MAX_PROPOSE_CALLS - 1)
    n_proposes = 1 + groups if groups > 1 else 1
    propose_prompt = tokens(propose_messages(e.goal, [distinct[i] for i in sample], e.n_explanations,
                                             e.examples, e.max_chars))
    # Per text, its line in a data block (ids and check lists of typical length).
    line = [count(data_line({"id": "t10", "check": [1] * max(1, e.prefilter or 5),
                             "text": truncate(t, e.max_chars)})) + 1 for t in distinct]
    mean_line = float(np.mean(line)) if line else 0.0

    def assign_pass(n_candidates: int, n_texts: float) -> tuple[int, int, int]:
        if n_texts <= 0:
            return 0, 0, 0
        candidates = [(s.name, s.text) for s in e.user_candidates][:n_candidates]
        candidates += [_PLACEHOLDER] * (n_candidates - len(candidates))
        fixed = tokens(AssignPrompt(e.goal, candidates, e.max_chars).messages([]))
        calls = math.ceil(n_texts / e.batch_size)
        return calls, int(calls * fixed + n_texts * mean_line), int(n_texts * ANSWER_TOKENS_PER_TEXT)

    stages = {"propose": [0, 0, 0], "assign": [0, 0, 0]}
    if e.review:
        stages["review"] = [0, 0, 0]
    longest = sorted(distinct, key=len)[-MEMBERS:] or [""]  # members shown: the longest texts, an upper bound

    def review_tokens(n_existing: int, n_new: int) -> int:
        stats = [{"closest": "10%", "similar": "12 (cosine 0.80)", "overlaps": "3 (40% of its near texts), "
                  "7 (20% of its near texts)", "members": list(range(len(longest)))}] * n_new
        return tokens(review_messages(e.goal, [_PLACEHOLDER] * min(n_existing, MAX_LISTED_CANDIDATES),
                                      [_PLACEHOLDER] * n_new, stats, longest))

    def run_loop(n_texts: int, rounds: int, n_user: int, propose_tokens: int) -> None:
        for r in range(1, rounds + 1):
            m = n_user + r * n_proposes * e.n_explanations
            stages["propose"][0] += n_proposes
            stages["propose"][1] += n_proposes * propose_tokens
            stages["propose"][2] += n_proposes * e.n_explanations * PROPOSAL_TOKENS
            if e.review:  # one review call a round, over the round's proposals
                n_new = n_proposes * e.n_explanations
                stages["review"][0] += 1
                stages["review"][1] += review_tokens(m - n_new, n_new)
                stages["review"][2] += n_new * DECISION_TOKENS
            passes = [n_texts]  # every text is asked once a round (new candidates reach most top lists)
            if e.prefilter and m > e.prefilter and e.escalations:
                passes.append(ESCALATED_SHARE * n_texts)
                for step in range(2, e.escalations + 1):
                    if m > step * e.prefilter:
                        passes.append(FURTHER_ESCALATED_SHARE * n_texts)
            for asked in passes:
                for i, value in enumerate(assign_pass(m, asked)):
                    stages["assign"][i] += value

    run_loop(n, e.rounds, len(e.user_candidates), propose_prompt)
    depth_note = ""
    if e.depth >= 2:
        needed = min_child_texts(e.clusterer, n)
        parents = min(e.k or e.n_explanations + len(e.user_candidates), n // needed)
        if parents:
            for _ in range(parents):
                run_loop(n // parents, min(CHILD_ROUNDS, e.rounds), 0, propose_prompt)
            depth_note = (f"; depth 2: {parents} selected explanations of about {n // parents} texts each "
                          f"get {min(CHILD_ROUNDS, e.rounds)} rounds of sub-explanations")
    result = {stage: {"calls": v[0], "prompt_tokens": v[1], "completion_tokens": v[2]} for stage, v in stages.items()}
    result["total"] = {key: sum(result[stage][key] for stage in stages)
                       for key in ("calls", "prompt_tokens", "completion_tokens")}
    unknown = "; clusters not known before the run: as many assumed as texts" if X is None and groups > 1 else ""
    result["note"] = (
        f"estimate: {n} distinct texts; all {e.rounds} rounds run (the loop may stop earlier), each proposing "
        f"{e.n_explanations} explanations in each of {_calls(n_proposes)} (one, then one per group of clusters "
        f"when it names as many as asked{unknown}), none merged"
        + ("; one review call a round over the round's proposals" if e.review else "") + "; "
        f"every round asks every text about its top "
        f"{e.prefilter or 'all'} candidates in calls of {e.batch_size} texts, and "
        f"{ESCALATED_SHARE:.0%} of texts are escalated once ({FURTHER_ESCALATED_SHARE:.0%} again, up to "
        f"{e.escalations} times); ~{ANSWER_TOKENS_PER_TEXT} answer tokens per text; "
        f"no retries; tokens ≈ characters / 4" + depth_note
        + ". Servers with prefix caching bill the repeated assign prefix (goal, candidates, instructions) less."
    )
    return result


class _Settings:
    """What the estimate reads of an explainer, by the names it uses."""

    def __init__(self, explainer, user_candidates):
        x = explainer.config.explaining
        self.client = explainer.client
        self.goal = explainer.goal
        self.clusterer = explainer.clusterer
        self.user_candidates = list(user_candidates)
        self.rounds = explainer.config.rounds
        self.random_state = explainer.config.random_state
        self.depth = explainer.depth
        for name in ("k", "n_samples", "n_explanations", "max_chars", "prefilter", "batch_size", "escalations",
                     "review"):
            setattr(self, name, getattr(x, name))
        self.examples = [str(example) for example in x.examples or ()]


def _calls(n: int) -> str:
    return f"{n} call{'' if n == 1 else 's'}"
