"""Beam search in numpy, shared by the onnxruntime and torch runtimes (so their outputs compare exactly)."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from hat.tokens import EOS


class StepModel(Protocol):
    """What beam search needs from a runtime; ``state`` is whatever the runtime keeps per row."""

    def encode(self, src_tokens: np.ndarray) -> dict: ...

    def step(self, tokens: np.ndarray, position: int, state: dict) -> np.ndarray: ...  # (rows, V) log-probs

    def reorder(self, state: dict, rows: np.ndarray) -> dict: ...


def start_beam(model: StepModel, src_ids: list[int], beam: int) -> dict:
    """Encode one source sentence and copy its state to ``beam`` rows."""
    state = model.encode(np.array([src_ids], dtype=np.int64))
    return model.reorder(state, np.zeros(beam, dtype=np.int64))


def best_expansions(scores: np.ndarray, log_probs: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``count`` best finite expansions of a beam as (rows, tokens, scores), best first.

    An expansion's score is ``scores[row] + log_probs[row, token]`` (float64); ties go to the lower
    flat index ``row * vocab + token``, the order of a stable sort of all rows x vocabulary scores.
    Only each row's ``count`` best tokens can be among the best ``count`` overall, so each row is
    cut to them first (one partition of the float32 log-probs) and only those few are sorted: a full
    pass over beam x vocabulary float64 scores at every step is most of a small model's decoding time.
    """
    rows, vocab = log_probs.shape
    live = np.flatnonzero(np.isfinite(scores))
    values = log_probs if len(live) == rows else log_probs[live]
    lowest = np.finfo(values.dtype).min  # a threshold that keeps every finite value, never -inf
    if count < vocab:
        kth = np.partition(values, vocab - count, axis=1)[:, vocab - count]  # each row's count-th largest
        keep = values >= np.maximum(kth, lowest)[:, None]  # ties at the threshold all stay
    else:
        keep = values >= lowest
    row_index, tokens = np.divmod(np.flatnonzero(keep), vocab)  # 2-d nonzero is ten times slower
    chosen_rows = live[row_index]
    chosen_scores = scores[chosen_rows] + values[row_index, tokens].astype(np.float64)
    finite = np.isfinite(chosen_scores)
    chosen_rows, tokens, chosen_scores = chosen_rows[finite], tokens[finite], chosen_scores[finite]
    order = np.lexsort((chosen_rows * vocab + tokens, -chosen_scores))[:count]
    return chosen_rows[order], tokens[order], chosen_scores[order]


def beam_search(
    model: StepModel,
    src_ids: list[int],
    *,
    beam: int = 5,
    lenpen: float = 1.0,
    eos: int = EOS,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    min_len: int = 1,
) -> list[int]:
    """Best hypothesis (token ids, without the final EOS) for one source sentence.

    Scores are summed log-probabilities; finished hypotheses are ranked by score / length**lenpen
    (length counts the EOS), as fairseq does. Search stops when ``beam`` hypotheses have finished.
    Ties are broken by position (stable sort), so the result is deterministic. As fairseq's
    generator, at least ``min_len`` tokens come before EOS (no empty translation by default).
    """
    max_len = int(max_len_a * len(src_ids) + max_len_b)
    return beam_decode(model, start_beam(model, src_ids, beam), max_len, beam=beam, lenpen=lenpen, eos=eos,
                       min_len=min_len)


def beam_decode(model: StepModel, state: dict, max_len: int, *, beam: int = 5, lenpen: float = 1.0, eos: int = EOS,
                min_len: int = 0) -> list[int]:
    """The beam loop from an encoded ``state`` of ``beam`` rows; EOS is refused at steps before ``min_len``
    (``min_len = max_len - 1`` runs exactly ``max_len`` steps, as latency measurement does)."""
    tokens = np.full((beam, 1), eos, dtype=np.int64)
    scores = np.full(beam, -np.inf)
    scores[0] = 0.0  # all rows start identical: expand only one
    finished: list[tuple[float, list[int]]] = []
    for step in range(max_len):
        log_probs = np.asarray(model.step(tokens[:, -1:], step, state))
        if step == max_len - 1:
            forced = np.full_like(log_probs, -np.inf)
            forced[:, eos] = log_probs[:, eos]
            log_probs = forced
        elif step < min_len:
            log_probs = log_probs.copy()
            log_probs[:, eos] = -np.inf
        rows, next_tokens, next_scores = [], [], []
        for row, token, score in zip(*(array.tolist() for array in best_expansions(scores, log_probs, 2 * beam))):
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


def greedy_search(model: StepModel, src_ids: list[int], *, eos: int = EOS, max_len_a: float = 1.2, max_len_b: int = 10,
                  min_len: int = 1) -> list[int]:
    """The most likely token at each step; EOS is refused before ``min_len`` tokens, as in beam search."""
    state = model.encode(np.array([src_ids], dtype=np.int64))
    tokens = [eos]
    for step in range(int(max_len_a * len(src_ids) + max_len_b)):
        log_probs = np.array(model.step(np.array([[tokens[-1]]], dtype=np.int64), step, state)[0])
        if step < min_len:
            log_probs[eos] = -np.inf
        token = int(np.argmax(log_probs))
        if token == eos:
            break
        tokens.append(token)
    return tokens[1:]
