"""Beam search in numpy, shared by the onnxruntime and torch runtimes (so their outputs compare exactly)."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class StepModel(Protocol):
    """What beam search needs from a runtime; ``state`` is whatever the runtime keeps per row."""

    def encode(self, src_tokens: np.ndarray) -> dict: ...

    def step(self, tokens: np.ndarray, position: int, state: dict) -> np.ndarray: ...  # (rows, V) log-probs

    def reorder(self, state: dict, rows: np.ndarray) -> dict: ...


def start_beam(model: StepModel, src_ids: list[int], beam: int) -> dict:
    """Encode one source sentence and copy its state to ``beam`` rows."""
    state = model.encode(np.array([src_ids], dtype=np.int64))
    return model.reorder(state, np.zeros(beam, dtype=np.int64))


def top_candidates(candidates: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest finite-or-not scores, best first, ties by lower index.

    The same order as a stable sort of ``-candidates`` cut to ``count``, in linear time: a full
    sort of beam x vocabulary scores at every step is most of a small model's decoding time.
    """
    count = min(count, len(candidates))
    if count == len(candidates):
        return np.argsort(-candidates, kind="stable")
    part = np.argpartition(-candidates, count - 1)[:count]
    threshold = candidates[part].min()
    above = np.flatnonzero(candidates > threshold)
    ties = np.flatnonzero(candidates == threshold)[: count - len(above)]
    chosen = np.concatenate([above, ties])
    return chosen[np.lexsort((chosen, -candidates[chosen]))]


def beam_search(
    model: StepModel,
    src_ids: list[int],
    *,
    beam: int = 5,
    lenpen: float = 1.0,
    eos: int = 2,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
) -> list[int]:
    """Best hypothesis (token ids, without the final EOS) for one source sentence.

    Scores are summed log-probabilities; finished hypotheses are ranked by score / length**lenpen
    (length counts the EOS), as fairseq does. Search stops when ``beam`` hypotheses have finished.
    Ties are broken by position (stable sort), so the result is deterministic.
    """
    max_len = int(max_len_a * len(src_ids) + max_len_b)
    return beam_decode(model, start_beam(model, src_ids, beam), max_len, beam=beam, lenpen=lenpen, eos=eos)


def beam_decode(model: StepModel, state: dict, max_len: int, *, beam: int = 5, lenpen: float = 1.0, eos: int = 2,
                min_len: int = 0) -> list[int]:
    """The beam loop from an encoded ``state`` of ``beam`` rows; EOS is refused before step ``min_len - 1``
    (``min_len = max_len`` runs exactly ``max_len`` steps, as latency measurement does)."""
    tokens = np.full((beam, 1), eos, dtype=np.int64)
    scores = np.full(beam, -np.inf)
    scores[0] = 0.0  # all rows start identical: expand only one
    finished: list[tuple[float, list[int]]] = []
    for step in range(max_len):
        log_probs = model.step(tokens[:, -1:], step, state).astype(np.float64)
        if step == max_len - 1:
            forced = np.full_like(log_probs, -np.inf)
            forced[:, eos] = log_probs[:, eos]
            log_probs = forced
        elif step < min_len - 1:
            log_probs[:, eos] = -np.inf
        candidates = (scores[:, None] + log_probs).reshape(-1)
        vocab = log_probs.shape[1]
        order = top_candidates(candidates, 2 * beam)
        rows, next_tokens, next_scores = [], [], []
        for index in order:
            score = candidates[index]
            if not np.isfinite(score):
                break
            row, token = divmod(int(index), vocab)
            if token == eos:
                if len(finished) < beam:
                    length = tokens.shape[1]  # the EOS just produced, plus generated tokens (leading EOS excluded)
                    finished.append((score / length**lenpen, tokens[row, 1:].tolist()))
            elif len(rows) < beam:
                rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
        if len(finished) >= beam or not rows:
            break
        while len(rows) < beam:  # keep the batch shape: pad with copies of the last live row, never chosen
            rows.append(rows[-1])
            next_tokens.append(next_tokens[-1])
            next_scores.append(-np.inf)
        rows_array = np.array(rows, dtype=np.int64)
        state = model.reorder(state, rows_array)
        tokens = np.concatenate([tokens[rows_array], np.array(next_tokens, dtype=np.int64)[:, None]], axis=1)
        scores = np.array(next_scores)
    if not finished:
        return tokens[int(np.argmax(scores)), 1:].tolist()
    return max(finished, key=lambda item: item[0])[1]


def greedy_search(model: StepModel, src_ids: list[int], *, eos: int = 2, max_len_a: float = 1.2, max_len_b: int = 10) -> list[int]:
    state = model.encode(np.array([src_ids], dtype=np.int64))
    tokens = [eos]
    for step in range(int(max_len_a * len(src_ids) + max_len_b)):
        token = int(np.argmax(model.step(np.array([[tokens[-1]]], dtype=np.int64), step, state)[0]))
        if token == eos:
            break
        tokens.append(token)
    return tokens[1:]
