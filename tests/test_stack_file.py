"""The stack file is read as strictly as the Pulumi CLI reads it, and more strictly: every way it
can be malformed or hostile is one sentence naming the key or line, in bounded time and size."""

from __future__ import annotations

import time

import pulumi
import pytest

from core.loading import ConfigError, split_pulumi_config
from tests.conftest import flat_config, only
from tools import render

PROD = "llamacpp-aks:cluster:\n    production: true\n    authorizedIpRanges: [198.18.0.0/24]\n"

MALFORMED = {
    "duplicate-namespace-key": (
        f"config:\n  {PROD}  llamacpp-aks:cluster:\n    authorizedIpRanges: [0.0.0.0/0]\n",
        "line 5 repeats the key 'llamacpp-aks:cluster' (first at line 2)",
    ),
    "duplicate-nested-key": (
        "config:\n  llamacpp-aks:server:\n    parallel: 4\n    parallel: 8\n",
        "line 4 repeats the key 'parallel' (first at line 3)",
    ),
    "duplicate-top-level-key": ("config: {}\nconfig: {}\n", "line 2 repeats the key 'config'"),
    "capitalised-config": (
        "Config:\n  llamacpp-aks:cluster: {production: true}\n",
        "the top-level key 'Config' is not part of a Pulumi stack file (keys are case-sensitive: did you mean config?)",
    ),
    "unknown-top-level": ("settings: {}\n", "the top-level key 'settings' is not part of a Pulumi stack file"),
    "unicode-hyphen-namespace": (
        "config:\n  llamacpp\u2010aks:cluster: {production: true}\n",
        "is under the namespace 'llamacpp\u2010aks', which is not llamacpp-aks",
    ),
    "capitalised-namespace-secret": (
        "config:\n  LlamaCpp-AKS:apiKey: sk-plain-text-key\n",
        "the config key 'LlamaCpp-AKS:apiKey' is under the namespace 'LlamaCpp-AKS'",
    ),
    "underscore-namespace-secret": (
        "config:\n  llamacpp_aks:hfToken: sk-plain-text-key\n",
        "the config key 'llamacpp_aks:hfToken' is under the namespace 'llamacpp_aks'",
    ),
    "cyrillic-namespace": (
        "config:\n  ll\u0430macpp-aks:server: {parallel: 4}\n",
        "which is not llamacpp-aks",
    ),
    "invalid-utf8": (b"config:\n  llamacpp-aks:alerts:\n    emails: [\xff\xfe@x.org]\n", "line 3 holds the byte 0xff"),
    "deep-nesting": ("config:\n  llamacpp-aks:server: " + "[" * 20000 + "]" * 20000 + "\n", "deeper than 32 levels"),
    "alias-bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
        + "config:\n  llamacpp-aks:server: {x: *i}\n",
        "may use at most 32 YAML aliases",
    ),
    "alias-fanout": (
        "config:\n  llamacpp-aks:server: &s {parallel: ["
        + ", ".join(["[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"] * 2000)
        + "]}\n"
        "  llamacpp-aks:service: {x: [" + ", ".join(["*s"] * 30) + "]}\n",
        "expands to more than 20000 values",
    ),
    "nul-in-a-free-text-key": (
        'config:\n  llamacpp-aks:server:\n    "parallel\\0": 4\n',
        "server.parallel\\x00 is not a known key",
    ),
    "huge-file": (
        "config:\n  llamacpp-aks:server: {}\n" + "#" * 300_000 + "\n",
        "over the 262144 a stack file may have",
    ),
    "huge-value": (
        "config:\n  llamacpp-aks:alerts:\n    emails: [" + "a" * 100_000 + "@example.org]\n",
        "alerts.emails[0]='" + "a" * 159 + "... (100014 characters) is longer than",
    ),
    "nul-in-email": (
        'config:\n  llamacpp-aks:alerts:\n    emails: ["oncall\\0@example.org"]\n',
        "alerts.emails[0]='oncall\\x00@example.org' is not an email address",
    ),
    "right-to-left-override-in-webhook": (
        'config:\n  llamacpp-aks:alerts:\n    webhooks: ["https://hooks.example.org/\\u202egnp.x"]\n',
        "alerts.webhooks[0]='https://hooks.example.org/\\u202egnp.x' is not an HTTPS URL",
    ),
}


@pytest.mark.parametrize(("text", "says"), MALFORMED.values(), ids=MALFORMED.keys())
def test_render_refuses_a_malformed_stack_file_in_one_bounded_sentence(tmp_path, capsys, text, says):
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    started = time.monotonic()
    assert render.main(["--config", str(path), "--out", str(tmp_path / "out")]) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    problems = err.splitlines()[1:]
    assert len(problems) == 1, err
    assert says in problems[0]
    assert len(err) < 1000, "a message quotes at most a bounded piece of a value"
    assert "Traceback" not in err and "sk-plain-text-key" not in err
    assert "\u202e" not in err and "\0" not in err


@pytest.mark.parametrize(
    "key", ["LlamaCpp-AKS:apiKey", "llamacpp_aks:cluster", "llamacpp.aks:hfToken", "LLAMACPP-AKS:server"]
)
def test_refuses_config_under_a_namespace_that_only_looks_like_the_project(key):
    with pytest.raises(ConfigError) as err:
        split_pulumi_config({key: "s3cret", "azure-native:location": "eastus"})
    msg = only(err.value.problems)
    assert f"the config key '{key}' is under the namespace" in msg
    assert "value not shown" in msg and "s3cret" not in msg


def test_preview_refuses_a_lookalike_namespace():
    # The program reads Pulumi's whole config map: a look-alike key fails the preview as well.
    mocks = render.RenderMocks()
    with pytest.raises(pulumi.RunError) as err:
        render.run_program("dev", {**flat_config({}), "LlamaCpp-AKS:apiKey": "sk-plain"}, mocks)
    assert "the config key 'LlamaCpp-AKS:apiKey' is under the namespace" in str(err.value)
    assert "sk-plain" not in str(err.value) and not mocks.resources


def test_other_providers_namespaces_pass():
    raw, secrets = split_pulumi_config({"azure-native:location": "eastus", "kubernetes:context": "x"})
    assert (raw, secrets) == ({}, {})
