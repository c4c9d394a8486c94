"""Finalists: the lowest inherited loss of each band of predicted latency a search explored."""
from __future__ import annotations

import json

import pytest

from hat.errors import HatError
from hat.search.finalists import Finalist, scored_under, spread_finalists, write_finalists
from hat.space import SubTransformerConfig


def history(tiny_space, rows: list[tuple[float, float, float]]) -> list[dict]:
    """History rows (constraint, predicted ms, loss) of distinct SubTransformers of the tiny space."""
    configs, seen = [], set()
    for seed in range(200):
        config = tiny_space.sample(seed)
        if config.archid not in seen:
            seen.add(config.archid)
            configs.append(config)
    return [{"constraint_ms": c, "iteration": 0, "archid": config.archid, "latency_ms": ms, "loss": loss,
             "config": config.to_json()} for (c, ms, loss), config in zip(rows, configs)]


def test_finalists_are_the_best_of_each_latency_band_fastest_first(tiny_space):
    rows = history(tiny_space, [(20, 10.0, 5.0), (20, 10.5, 4.0), (20, 11.0, 4.5), (20, 14.0, 3.0),
                                (20, 19.0, 6.0), (20, 20.0, 6.5), (30, 25.0, 1.0)])
    candidates = scored_under(rows + rows[:2], 20.0)  # a repeated row counts once; another constraint's rows not at all
    assert len(candidates) == 6 and all(isinstance(c.config, SubTransformerConfig) for c in candidates)
    chosen = spread_finalists(candidates, 2)  # bands 10-15 and 15-20 ms (the top edge in the last)
    assert [(c.latency_ms, c.loss) for c in chosen] == [(14.0, 3.0), (19.0, 6.0)]
    assert [(c.latency_ms, c.loss) for c in spread_finalists(candidates, 5)] == [
        (10.5, 4.0), (14.0, 3.0), (19.0, 6.0)]  # empty bands give none
    assert spread_finalists(candidates, 1) == [min(candidates, key=lambda c: c.loss)]  # one band: the search's pick
    assert spread_finalists([], 3) == []
    assert [(c.latency_ms, c.loss) for c in spread_finalists(candidates, 2, per_band=2)] == [
        (10.5, 4.0), (14.0, 3.0), (19.0, 6.0), (20.0, 6.5)]
    for count, per_band in ((0, 1), (1, 0)):
        with pytest.raises(HatError, match="at least 1 band and 1 per band"):
            spread_finalists(candidates, count, per_band)


def test_ties_of_loss_go_to_the_smaller_archid(tiny_space):
    config = tiny_space.largest()
    twins = [Finalist("b", 10.0, 1.0, config), Finalist("a", 10.2, 1.0, config)]
    assert [c.archid for c in spread_finalists(twins, 1)] == [c.archid for c in spread_finalists(twins[::-1], 1)] == ["a"]


def test_written_finalists_are_configs_named_by_an_index(tiny_space, tmp_path):
    rows = history(tiny_space, [(20, 10.0, 5.0), (20, 19.0, 4.0), (30, 25.0, 1.0)])
    index = write_finalists(rows, [20.0, 30.0], 2, tmp_path)
    assert [len(index["20"]), len(index["30"])] == [2, 1]
    assert json.loads((tmp_path / "finalists" / "finalists.json").read_text()) == index
    for entry, row in zip(index["20"], rows):
        path = tmp_path / entry["config_file"]
        assert path.parent.name == "20ms" and path.read_text().startswith("# finalist under 20 ms: predicted")
        assert SubTransformerConfig.from_yaml(path).archid == entry["archid"] == row["archid"]
        assert (entry["latency_ms"], entry["loss"]) == (row["latency_ms"], row["loss"])
