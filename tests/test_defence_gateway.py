"""The prefix defence in the real gateway (one config switch), driven by the openai client: a
flagged request is routed as its core would be and says so in `routing.defence`; the expert
still receives the request unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import OpenAI

from evaluation.robustness.gadgets import gadget_vocab, random_gadget
from evaluation.robustness.suite import load_prompts
from gateway.settings import ConfigError, load_settings
from routers.artifacts import load_router
from routers.defence import PrefixDefence
from tests.conftest import ROUTERBENCH_MODELS, write_config

W = 0.1


def _flagged_example(router, embedder) -> tuple[str, str]:
    """A (prefixed query, its core) the defence flags offline: rare-word prefixes on simple
    prompts, scanned in a fixed order (the first that buys an upgrade)."""
    defence = PrefixDefence.for_embedder(embedder)
    vocab = gadget_vocab(embedder._model.tokenizer)
    simple = [r["prompt"] for r in load_prompts() if r["difficulty"] == "simple"][::9]
    for seed in range(12):
        prefix = random_gadget(vocab, 10, seed)
        for text in simple:
            query = f"{prefix} {text}"
            result = defence.check(router, query, embedder.encode, W)
            if result.flagged:
                return query, result.route_text
    pytest.fail("no rare-word prefix upgraded any simple prompt")


def _ask(client: OpenAI, text: str):  # noqa: ANN202
    return client.chat.completions.create(model="carrot", messages=[{"role": "user", "content": text}],
                                          extra_body={"routing": {"cost_weight": W}})


def test_flagged_request_is_routed_on_its_core(serve_gateway, loopback, carrot_artifact: Path, embedder) -> None:
    url, state = loopback
    query, core = _flagged_example(load_router(carrot_artifact), embedder)
    on = OpenAI(base_url=f"{serve_gateway(url, defence={'enabled': True}).url}/v1", api_key="x", max_retries=0)
    off = OpenAI(base_url=f"{serve_gateway(url).url}/v1", api_key="x", max_retries=0)

    r = _ask(on, query)
    verdict = r.model_extra["routing"]["defence"]
    assert verdict["checked"] and verdict["flagged"] and "prefix upgrade" in verdict["reason"]
    assert verdict["dropped_chars"] > 0
    assert r.model == _ask(off, core).model  # routed as the core alone is
    undefended = _ask(off, query)
    assert "defence" not in undefended.model_extra["routing"]  # off by default: no verdict, no extra embedding
    assert r.model_extra["routing"]["predicted"][r.model]["cost_usd"] < \
        undefended.model_extra["routing"]["predicted"][undefended.model]["cost_usd"]  # the upgrade is gone
    assert any(m["content"] == query for call in state.requests for m in call["messages"])  # the expert saw it all

    clean = _ask(on, "Translate 'good morning' to French.")
    assert clean.model_extra["routing"]["defence"] == {"checked": False, "flagged": False}  # too short to check


def test_defence_config_is_validated(tmp_path: Path, carrot_artifact: Path) -> None:
    bad = write_config(tmp_path, carrot_artifact, "http://127.0.0.1:9/v1", ROUTERBENCH_MODELS,
                       defence={"enabled": True, "params": {"no_such_threshold": 1}})
    with pytest.raises(ConfigError, match="no_such_threshold"):
        load_settings(bad)
    ok = write_config(tmp_path, carrot_artifact, "http://127.0.0.1:9/v1", ROUTERBENCH_MODELS,
                      defence={"enabled": True, "params": {"max_similarity": 0.5}})
    assert load_settings(ok).defence.params == {"max_similarity": 0.5}
