"""Beam search in numpy, shared by the onnxruntime and torch runtimes (so their outputs compare exactly)."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class StepModel(Protocol):
    """What beam search needs from a runtime; ``state`` is whatever the runtime keeps per row."""

    def encode(self, src_tokens: np.ndarray) -> dict: ...

    def step(self, tokens: np.ndarray, position: int, state: dict) -> np.ndarray: ...  # (rows, V) log-probs

    def reorder(self, state: dict, rows: np.ndarray) -> dict: ...


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
    state = model.encode(np.array([src_ids], dtype=np.int64))
    state = model.reorder(state, np.zeros(beam, dtype=np.int64))
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
        candidates = (scores[:, None] + log_probs).reshape(-1)
        vocab = log_probs.shape[1]
        order = np.argsort(-candidates, kind="stable")[: 2 * beam]
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
