"""Scale from zero that answers: the standby front's answer while no replica exists (503,
Retry-After, "starting, about N minutes"), the demand it counts for KEDA, and how the program wires
it: pure builders first, then the program under Pulumi's mocks."""

from __future__ import annotations

import importlib
import json
import re
import warnings

import pytest

from core import first_token
from core.config import Service, StackConfig
from core.first_token import StartingAnswer, Step, starting_answer
from core.loading import load_config
from core.network import INGRESS_SUBNET_CIDR
from specs import autoscaling as spec
from specs.k8s import namespace_peer, scraper_peers
from tests.conftest import named, of_type, one, only, preview_problems, run_stack

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
    *_, proxied = route["route_config"]["virtual_hosts"][0]["routes"]
    assert proxied["match"] == {"prefix": "/"} and proxied["route"]["timeout"] == "0s"  # long answers stream


def test_wake_trigger_activates_on_the_first_turned_away_request():
    trigger = spec.wake_trigger("llamacpp-dev-serving", "https://prom.example")
    assert trigger["type"] == "prometheus" and trigger["metadata"]["activationThreshold"] == "0"
    assert trigger["authenticationRef"] == {"name": spec.AUTH_NAME}


def test_a_burst_of_turned_away_requests_asks_for_one_replica_not_one_each():
    # KEDA asks for ceil(value / threshold) replicas: the count is clamped to the threshold.
    trigger = spec.wake_trigger("llamacpp-dev-serving", "https://prom.example")
    query = trigger["metadata"]["query"]
    assert query.startswith("clamp_max(") and query.endswith(f", {spec.WAKE_REPLICAS})")
    assert trigger["metadata"]["threshold"] == str(spec.WAKE_REPLICAS) == "1"


def test_wake_query_selects_its_namespace_exactly():
    query = spec.wake_query("llamacpp-dev-serving")
    assert 'namespace="llamacpp-dev-serving"' in query and "=~" not in query
    assert "envoy_cluster_upstream_cx_none_healthy" in query and "envoy_cluster_upstream_cx_connect_fail" in query


def test_each_wake_term_counts_zero_when_its_series_is_missing():
    """A sum over no series is empty in PromQL, and empty + anything is empty: without a fallback
    a missing connect_fail series would hide every none_healthy count, and the server never wakes."""
    query = spec.wake_query("llamacpp-dev-serving")
    inner = query.removeprefix("clamp_max(").removesuffix(f", {spec.WAKE_REPLICAS})")
    terms = inner.split(" + ")
    assert len(terms) == 2
    for term in terms:
        assert term.startswith("(sum(increase(envoy_cluster_upstream_cx_") and term.endswith(" or vector(0))")


def test_front_has_no_filter_that_buffers_or_checks_the_key():
    # Only the router: no buffer filter (answers stream as SSE), no auth filter (llama-server checks
    # the key; the Authorization header passes through untouched).
    boot = spec.front_bootstrap("server-pods.ns", 8008, ANSWER)
    manager = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert [f["name"] for f in manager["http_filters"]] == ["envoy.filters.http.router"]
    assert "request_headers_to_remove" not in json.dumps(boot)


def test_front_answers_its_own_readiness_only_at_the_exact_path():
    routes = spec.front_bootstrap("h", 8008, ANSWER)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][
        0
    ]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    ready, proxied = routes
    # An exact path: /front/ready/x or /front/readyz go to the server like every other path.
    assert ready == {"match": {"path": spec.FRONT_READY_PATH}, "direct_response": {"status": 200}}
    assert proxied["match"] == {"prefix": "/"}


def test_the_demand_step_names_the_trigger_the_program_declares():
    (demand,) = [s for s in first_token.scale_from_zero(StackConfig()) if s.key == "demand"]
    assert "not wired" not in demand.source
    assert f"KEDA's {spec.wake_trigger('ns', 'q')['name']} trigger" in demand.source


# --- the program, under Pulumi's mocks -------------------------------------------------------

SCALED = "kubernetes:keda.sh/v1alpha1:ScaledObject"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
FROM_ZERO = {"autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 1, "activeHours": {}}}
NS, SERVER, FRONT, PODS = (
    "llamacpp-dev-serving",
    "llamacpp-dev-server",
    "llamacpp-dev-front",
    "llamacpp-dev-server-pods",
)


@pytest.fixture(scope="module")
def from_zero():
    return run_stack(FROM_ZERO, "dev")


@pytest.fixture(scope="module")
def public_from_zero():
    public = {"ingress": {"enabled": True, "hostname": "llm.example.com", "acmeEmail": "ops@example.com"}}
    return run_stack({**FROM_ZERO, **public}, "dev")


def front_pod(mocks) -> dict:
    return named(mocks, DEPLOYMENT, FRONT)["spec"]["template"]


def test_front_runs_pinned_restricted_and_probed_on_the_system_pool(from_zero):
    template = front_pod(from_zero)
    pod = template["spec"]
    (envoy,) = pod["containers"]
    assert envoy["image"] == StackConfig().autoscaling.front_image
    assert re.fullmatch(r"docker\.io/envoyproxy/envoy:v1\.38\.0@sha256:[0-9a-f]{64}", envoy["image"])
    assert pod["nodeSelector"] == {"kubernetes.azure.com/mode": "system"}
    assert pod["tolerations"] == [
        {"key": "CriticalAddonsOnly", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    assert "sku" not in json.dumps(pod["tolerations"])  # never the GPU pool's taint
    security = envoy["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"} == pod["securityContext"]["seccompProfile"]
    assert pod["automountServiceAccountToken"] is False
    assert set(envoy["resources"]) == {"requests", "limits"}
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    assert ports == {"http": spec.FRONT_PORT, "admin": spec.FRONT_ADMIN_PORT}
    for probe in ("readinessProbe", "livenessProbe"):
        assert envoy[probe]["httpGet"] == {"path": "/ready", "port": "admin"}


def test_callers_reach_the_front_and_the_front_reaches_the_servers_pods(from_zero):
    service = named(from_zero, SERVICE, SERVER)  # the name callers and the endpoint output use, kept
    template = front_pod(from_zero)
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]  # never the admin port
    server = named(from_zero, DEPLOYMENT, SERVER)["spec"]
    assert not service["spec"]["selector"].items() <= server["template"]["metadata"]["labels"].items()
    pods = named(from_zero, SERVICE, PODS)["spec"]
    assert pods["clusterIP"] == "None" and pods["selector"] == server["selector"]["matchLabels"]
    config_map = named(from_zero, "kubernetes:core/v1:ConfigMap", FRONT)
    assert {"name": FRONT} in [v.get("configMap") for v in template["spec"]["volumes"]]
    boot = json.loads(config_map["data"][spec.FRONT_CONFIG_FILE])
    (cluster,) = boot["static_resources"]["clusters"]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address == {"address": f"{PODS}.{NS}.svc.cluster.local", "port_value": pods["ports"][0]["port"]}
    assert boot == spec.front_bootstrap(address["address"], 8008, starting_answer(load_dev(FROM_ZERO)))


def load_dev(raw: dict) -> StackConfig:
    return load_config(raw, "dev")[0]


def test_a_new_answer_rolls_the_fronts_pods(from_zero):
    slower = run_stack({"autoscaling": {**FROM_ZERO["autoscaling"], "pollingSeconds": 600}}, "dev")
    key = spec.FRONT_CONFIG_HASH_ANNOTATION
    assert front_pod(slower)["metadata"]["annotations"][key] != front_pod(from_zero)["metadata"]["annotations"][key]


def test_keda_wakes_on_the_query_the_builder_makes(from_zero):
    triggers = {t["name"]: t for t in one(from_zero, SCALED)["spec"]["triggers"]}
    wake = triggers["turned-away"]
    assert wake["metadata"]["query"] == spec.wake_query(NS)
    assert wake["metadata"]["activationThreshold"] == "0"
    assert wake["metadata"]["serverAddress"] == triggers["deferred"]["metadata"]["serverAddress"]
    assert wake["authenticationRef"] == {"name": spec.AUTH_NAME}


def test_prometheus_scrapes_the_fronts_admin_stats(from_zero):
    monitor = named(from_zero, "kubernetes:azmonitoring.coreos.com/v1:PodMonitor", FRONT)["spec"]
    assert monitor["podMetricsEndpoints"] == [{"port": "admin", "path": "/stats/prometheus", "interval": "30s"}]
    assert monitor["selector"]["matchLabels"].items() <= front_pod(from_zero)["metadata"]["labels"].items()


def test_front_policy_admits_callers_to_the_api_and_only_the_scraper_to_the_admin_port(from_zero):
    policy = named(from_zero, NETPOL, FRONT)["spec"]
    api, admin = policy["ingress"]
    assert api["ports"] == [{"port": spec.FRONT_PORT, "protocol": "TCP"}] and {"podSelector": {}} in api["from"]
    assert admin["ports"] == [{"port": spec.FRONT_ADMIN_PORT, "protocol": "TCP"}]
    assert [p["podSelector"]["matchLabels"] for p in admin["from"]] == [
        {"rsName": "ama-metrics"},
        {"dsName": "ama-metrics-node"},
    ]
    dns, upstream = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    server_labels = named(from_zero, DEPLOYMENT, SERVER)["spec"]["selector"]["matchLabels"]
    assert upstream == {
        "to": [{"podSelector": {"matchLabels": server_labels}}],
        "ports": [{"port": 8008, "protocol": "TCP"}],
    }
    # The server still admits its namespace, so the front's requests arrive.
    assert {"podSelector": {}} in named(from_zero, NETPOL, SERVER)["spec"]["ingress"][0]["from"]


def test_front_admits_the_configured_callers_to_its_api_port_only():
    service = Service(allowedNamespaces=["apps"], allowedCidrs=["10.1.0.0/16"])
    api, admin = spec.front_network_policy_spec(service, 8008, {"c": "front"}, {"c": "server"}, public=False)["ingress"]
    assert namespace_peer("apps") in api["from_"] and {"ip_block": {"cidr": "10.1.0.0/16"}} in api["from_"]
    assert not [p for p in api["from_"] if p in scraper_peers()]  # the scraper reads the admin port only
    assert admin["from_"] == scraper_peers()
    # A namespace that merely starts like an allowed one is no caller.
    assert namespace_peer("apps-x") not in api["from_"]


def test_public_gateway_goes_to_the_front_and_probes_its_readiness(public_from_zero):
    gateway = {"ipBlock": {"cidr": INGRESS_SUBNET_CIDR}}
    api, admin = named(public_from_zero, NETPOL, FRONT)["spec"]["ingress"]
    assert gateway in api["from"] and gateway not in admin["from"]
    routes = [r.inputs for r in public_from_zero.resources if r.inputs.get("kind") == "HTTPRoute"]
    (route,) = [r for r in routes if r["metadata"]["name"].endswith("-api")]
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == SERVER
    (probe,) = [r.inputs for r in public_from_zero.resources if r.inputs.get("kind") == "HealthCheckPolicy"]
    assert probe["spec"]["default"]["http"]["path"] == spec.FRONT_READY_PATH
    assert probe["spec"]["default"]["port"] == spec.FRONT_PORT


@pytest.mark.parametrize(
    "autoscaling",
    [
        {"enabled": True, "minReplicas": 1, "maxReplicas": 1},  # one past the limit: a replica is kept
        {"enabled": False, "minReplicas": 0},  # no autoscaler: the fixed replicas never reach zero
    ],
    ids=["min-replicas-1", "autoscaling-off"],
)
def test_no_front_while_a_replica_is_always_kept(autoscaling):
    mocks = run_stack({"autoscaling": autoscaling}, "dev")
    assert not [r for r in of_type(mocks, DEPLOYMENT) if r.inputs["metadata"]["name"] == FRONT]
    assert {r.inputs["metadata"]["name"] for r in of_type(mocks, SERVICE)} == {SERVER}
    server = named(mocks, DEPLOYMENT, SERVER)["spec"]
    assert named(mocks, SERVICE, SERVER)["spec"]["selector"] == server["selector"]["matchLabels"]
    for scaled in of_type(mocks, SCALED):
        assert "turned-away" not in {t["name"] for t in scaled.inputs["spec"]["triggers"]}


@pytest.mark.parametrize(
    "image",
    [
        "docker.io/envoyproxy/envoy:v1.38.0",  # a tag only: a re-pushed tag would change what runs
        "docker.io/envoyproxy/envoy:v1.38.0@sha256:" + "8146B97E" + "e" * 56,  # upper-case hex
        "docker.io/envoyproxy/envoy:v1.38.0@sha256:" + "8" * 63,  # one digit short
        "docker.io/envoyproxy/envoy:v1.38.0@sha256:" + "8" * 64 + "; curl evil.test",
    ],
)
def test_rejects_a_front_image_not_pinned_by_digest(image):
    msg = only(preview_problems({"autoscaling": {**FROM_ZERO["autoscaling"], "frontImage": image}}))
    assert msg.startswith("autoscaling.frontImage=") and "is not an image pinned by digest" in msg


# --- Envoy's own API reads the bootstrap ------------------------------------------------------


def envoy_reads(boot: dict) -> None:
    """Reads the bootstrap as Envoy's API defines it: envoy-data-plane's dataclasses, generated from
    Envoy's protos, refuse a field, an enum value or a duration Envoy does not know, inside each
    `typed_config` too once its type is imported. (Required fields and value bounds are not checked.)"""
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    for type_name in re.findall(r'"@type": "type\.googleapis\.com/([\w.]+)"', json.dumps(boot)):
        importlib.import_module("envoy_data_plane." + type_name.rsplit(".", 1)[0])
    with warnings.catch_warnings():
        # A field Envoy's API marks deprecated ("Cluster.dns_refresh_rate is deprecated") is an error.
        warnings.filterwarnings("error", message=r"\S+\.\S+ is deprecated$", category=DeprecationWarning)
        Bootstrap.from_dict(boot)


def test_envoys_api_reads_the_bootstrap_the_program_renders(from_zero):
    envoy_reads(json.loads(named(from_zero, "kubernetes:core/v1:ConfigMap", FRONT)["data"][spec.FRONT_CONFIG_FILE]))


def manager_of(boot: dict) -> dict:
    return boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def body_format(boot: dict) -> dict:
    return manager_of(boot)["local_reply_config"]["mappers"][0]["body_format_override"]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda b: b["static_resources"]["clusters"][0].update(conect_timeout="2s"),
        lambda b: manager_of(b).update(stat_prefx="front"),  # inside a typed_config
        lambda b: manager_of(b)["local_reply_config"]["mappers"][0].update(status_cod=503),
        lambda b: b["static_resources"]["clusters"][0].update(type="STRICT_DNZ"),
        lambda b: b["static_resources"]["clusters"][0].update(connect_timeout="2 seconds"),
        lambda b: b["static_resources"]["clusters"][0].update(dns_refresh_rate="5s"),  # deprecated
        lambda b: body_format(b).update(text_format=body_format(b).pop("text_format_source")["inline_string"]),
    ],
    ids=["field", "typed-config-field", "mapper-field", "enum", "duration", "deprecated", "deprecated-format"],
)
def test_envoys_api_refuses_a_bootstrap_one_step_off(spoil):
    boot = spec.front_bootstrap("server-pods.ns.svc.cluster.local", 8008, ANSWER)
    envoy_reads(boot)
    spoil(boot)
    with pytest.raises((KeyError, ValueError, DeprecationWarning)):
        envoy_reads(boot)
