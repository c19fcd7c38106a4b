"""Scale from zero that answers: the standby front's answer while no replica exists (503,
Retry-After, "starting, about N minutes"), and the demand it counts for KEDA. Pure builders."""

from __future__ import annotations

import json

import pytest

from core import first_token
from core.config import StackConfig
from core.first_token import StartingAnswer, Step, starting_answer
from specs import autoscaling as spec

ANSWER = StartingAnswer(retry_after_s=429, minutes=18)


def mapper() -> dict:
    manager = spec.front_bootstrap("llamacpp-dev-server-pods.llamacpp-dev-serving", 8008, ANSWER)
    listener = manager["static_resources"]["listeners"][0]
    (m,) = listener["filter_chains"][0]["filters"][0]["typed_config"]["local_reply_config"]["mappers"]
    return m


@pytest.mark.parametrize(("high_s", "minutes"), [(480, 8), (481, 9), (60, 1)])
def test_minutes_round_the_high_estimate_up(monkeypatch, high_s, minutes):
    steps = [Step("a", "a", 100, high_s, "estimate", "x")]
    monkeypatch.setattr(first_token, "scale_from_zero", lambda c: steps)
    answer = starting_answer(StackConfig())
    assert (answer.retry_after_s, answer.minutes) == (100, minutes)
    assert answer.message == f"starting, about {minutes} minutes"


def test_the_answer_follows_the_scale_from_zero_estimate():
    low, high = first_token.total_s(first_token.scale_from_zero(StackConfig()))
    assert starting_answer(StackConfig()) == StartingAnswer(low, -(-high // 60))


def test_front_answers_503_with_retry_after_and_the_minutes_when_no_replica_exists():
    m = mapper()
    assert m["status_code"] == 503
    assert m["headers_to_add"] == [
        {"header": {"key": "Retry-After", "value": "429"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    body = json.loads(m["body"]["inline_string"])
    assert body == {"error": {"code": 503, "type": "unavailable_error", "message": "starting, about 18 minutes"}}
    assert m["body_format_override"]["content_type"] == "application/json"


def test_front_rewrites_only_the_no_replica_replies():
    # Not every 503: a server that answers 503 itself (loading) passes through unchanged.
    assert mapper()["filter"] == {"response_flag_filter": {"flags": ["UH", "UF"]}}


def test_front_sends_to_the_headless_service_and_never_holds_a_request():
    boot = spec.front_bootstrap("server-pods.ns", 8008, ANSWER)
    (cluster,) = boot["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address == {"address": "server-pods.ns", "port_value": 8008}
    text = json.dumps(boot)
    assert "retry_policy" not in text and "circuit_breakers" not in text  # no queue, no retries
    route = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert route["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["timeout"] == "0s"  # long answers stream


def test_wake_trigger_activates_on_the_first_turned_away_request():
    trigger = spec.wake_trigger("llamacpp-dev-serving", "https://prom.example")
    assert trigger["type"] == "prometheus" and trigger["metadata"]["activationThreshold"] == "0"
    assert trigger["authenticationRef"] == {"name": spec.AUTH_NAME}


def test_wake_query_selects_its_namespace_exactly():
    query = spec.wake_query("llamacpp-dev-serving")
    assert 'namespace="llamacpp-dev-serving"' in query and "=~" not in query
    assert "envoy_cluster_upstream_cx_none_healthy" in query and "envoy_cluster_upstream_cx_connect_fail" in query
