"""The stack file is read as strictly as the Pulumi CLI reads it, and more strictly: every way it
can be malformed or hostile is one sentence naming the key or line, in bounded time and size."""

from __future__ import annotations

import base64
import json
import re
import time
import typing
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pydantic import BaseModel

from core.config import StackConfig
from core.loading import (
    MAX_NUMBER,
    MAX_NUMBER_SAID,
    PROVIDER_NAMESPACES,
    ConfigError,
    load_config,
    read_stack,
    split_pulumi_config,
    stack_config,
)
from core.summary import summary_data, summary_markdown
from tests.conftest import ROOT, flat_config, only, preview_problems
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


# --- scalars as the Pulumi CLI reads them (yaml.v3, YAML 1.2 core) ------------------------------


def read(tmp_path: Path, text: str, stack: str = "t") -> dict[str, str]:
    """Pulumi's flat config map of a stack file with this text, as the render reads it."""
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(text)
    return stack_config(path)[1]


def problems_of(tmp_path: Path, text: str) -> list[str]:
    """The problems the render reports for a stack file with this text (it must fail)."""
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_stack(path)
    assert all("Traceback" not in p for p in err.value.problems)
    return err.value.problems


# Each plain scalar and the value the program receives from the CLI: gopkg.in/yaml.v3's resolve.go,
# then Pulumi's JSON encoding of objects (a whole float arrives without its fraction).
CLI_SCALARS = {
    "on": "on",
    "On": "On",
    "OFF": "OFF",
    "yes": "yes",
    "No": "No",
    "y": "y",
    "N": "N",
    "true": True,
    "True": True,
    "FALSE": False,
    "tRue": "tRue",
    "20:00": "20:00",
    "1:30:00": "1:30:00",
    "0o17": 15,
    "017": 15,
    "-017": -15,
    "08": 8,
    "0x1F": 31,
    "-0x1f": -31,
    "0b101": 5,
    "1_000": 1000,
    "1e3": 1000,
    "1.5e3": 1500,
    "5.": 5,
    ".5": 0.5,
    "+.5": 0.5,
    "~": None,
    "Null": None,
    "nUll": "nUll",
    "9223372036854775807": 9223372036854775807,
    "-9223372036854775808": -9223372036854775808,
    "18446744073709551615": 18446744073709551615,
    "18446744073709551616": 18446744073709551616,  # a float to yaml.v3, whole below 1e21 in JSON
    "1" + "0" * 21: 1e21,
    "9" * 400: "9" * 400,
    ".": ".",
    "0x": "0x",
    "2026-13-01": "2026-13-01",
}


@pytest.mark.parametrize(("text", "value"), CLI_SCALARS.items(), ids=[k[:20] for k in CLI_SCALARS])
def test_reads_each_plain_scalar_as_the_pulumi_cli_does(tmp_path, text, value):
    flat = read(tmp_path, f"config:\n  llamacpp-aks:x:\n    v: {text}\n    list: [{text}]\n")
    got = json.loads(flat["llamacpp-aks:x"])
    assert got == {"v": value, "list": [value]}
    assert type(got["v"]) is type(value)


def test_a_top_level_scalar_reaches_the_program_as_the_cli_writes_it(tmp_path):
    flat = read(tmp_path, "config:\n  azure-native:location: on\n  kubernetes:a: 0o17\n  kubernetes:b: 1e3\n")
    assert flat == {"azure-native:location": "on", "kubernetes:a": "15", "kubernetes:b": "1000"}


def test_a_key_that_yaml_1_1_reads_as_a_boolean_stays_text(tmp_path):
    flat = read(tmp_path, "config:\n  llamacpp-aks:x: {on: 1, n: 2, 20:00: 3}\n")
    assert json.loads(flat["llamacpp-aks:x"]) == {"on": 1, "n": 2, "20:00": 3}


def test_active_hours_unquoted_render_as_the_time_of_day(tmp_path):
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(
        "config:\n  llamacpp-aks:autoscaling:\n    enabled: true\n    minReplicas: 0\n"
        "    activeHours: {start: 08:00, end: 20:00}\n"
        "  llamacpp-aks:cluster: {gpuPool: {minCount: 0}}\n"
    )
    hours = read_stack(path)[1].autoscaling.active_hours
    assert hours is not None and (hours.start, hours.end) == ("08:00", "20:00")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-01-02", "line 3 holds '2026-01-02', which the Pulumi CLI reads as a date"),
        ("2026-1-2T10:00:00Z", "reads as a date"),
        ("2026-01-02 10:00:00", "reads as a date"),
        (".inf", "line 3 holds .inf, which the Pulumi CLI cannot pass to the program"),
        ("-.Inf", "line 3 holds -.Inf, which the Pulumi CLI cannot pass"),
        (".NaN", "line 3 holds .NaN"),
        ("!!str 5", "gives a value the YAML tag '!!str'"),
        ("!!bool yes", "gives a value the YAML tag '!!bool'"),
        ("{<<: {a: 1}}", "line 3 uses the YAML merge key <<"),
        ("{1: a}", "line 3 uses 1 (not text) as a mapping key"),
        ("{null: a}", "line 3 uses None (not text) as a mapping key"),
    ],
)
def test_refuses_what_the_cli_reads_differently_or_not_at_all(tmp_path, text, says):
    msg = only(problems_of(tmp_path, f"config:\n  llamacpp-aks:x:\n    v: {text}\n"))
    assert says in msg


@pytest.mark.parametrize(
    ("word", "fix"),
    [
        ("on", "use true, not on"),
        ("On", "use true, not On"),
        ("YES", "use true, not YES"),
        ("y", "use true, not y"),
        ("off", "use false, not off"),
        ("No", "use false, not No"),
        ("N", "use false, not N"),
        ('"true"', "write true without quotes"),
        ("'False'", "write false without quotes"),
    ],
)
def test_a_security_switch_refuses_yaml_1_1_booleans_with_the_fix(tmp_path, word, fix):
    msg = only(problems_of(tmp_path, f"config:\n  llamacpp-aks:cluster:\n    production: {word}\n"))
    assert msg.startswith("cluster.production=")
    assert "the Pulumi CLI reads YAML 1.2" in msg and msg.endswith(f"{fix}.")


def test_a_switch_refuses_a_word_yaml_1_1_does_not_know_with_the_general_fix(tmp_path):
    msg = only(problems_of(tmp_path, "config:\n  llamacpp-aks:cluster:\n    production: enabled\n"))
    assert "is not true or false" in msg and "YAML 1.2" not in msg


# --- very large numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("digits", [4300, 4301, 20_000])
@pytest.mark.parametrize(
    "where",
    [
        "llamacpp-aks:model: {sizeBytes: N}",
        "llamacpp-aks:server: {parallel: N}",
        "llamacpp-aks:accepted: {scaleToZero: N}",
        "llamacpp-aks:alerts: {emails: [N]}",
        "llamacpp-aks:model: {architecture: {layers: N}}",
        "llamacpp-aks:apiKey: N",
        "azure-native:location: N",
    ],
)
def test_a_number_of_thousands_of_digits_anywhere_is_one_sentence(tmp_path, capsys, digits, where):
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text("config:\n  " + where.replace("N", "9" * digits) + "\n")
    assert render.main(["--config", str(path), "--out", str(tmp_path / "out")]) in (0, 1)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "9" * 200 not in err and len(err) < 1000


def test_a_huge_number_in_a_number_setting_names_the_bound(tmp_path):
    msg = only(problems_of(tmp_path, "config:\n  llamacpp-aks:model: {sizeBytes: " + "9" * 5000 + "}\n"))
    assert msg.startswith("model.sizeBytes=a number of 5000 characters is larger than 9007199254740992 (2^53)")


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        (MAX_NUMBER, False),
        (MAX_NUMBER + 1, True),
        (-MAX_NUMBER, False),
        (-MAX_NUMBER - 1, True),
        (float(MAX_NUMBER), False),
        (1e300, True),
        ("1e300", True),
        (str(MAX_NUMBER), False),
        (str(MAX_NUMBER + 1), True),
        ("9" * 1000, True),
    ],
    ids=repr,
)
def test_numbers_are_bounded_at_2_to_the_53(value, refused):
    raw = {"model": {"sizeBytes": value}, "autoscaling": {"deferredPerReplica": value}}
    with pytest.raises(ConfigError) as err:  # far too large, or negative, for the GPU anyway
        load_config(raw, "dev")
    bound = [p for p in err.value.problems if MAX_NUMBER_SAID in p]
    assert len(bound) == (2 if refused else 0), err.value.problems


def test_a_number_written_as_text_in_a_text_setting_is_text():
    # A sha256 of digits only is a name, not a number.
    config, _ = load_config({"image": {"llamaCppSourceSha256": "1" * 64}}, "dev")
    assert config.image.llama_cpp_source_sha256 == "1" * 64


def number_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], bool]]:
    """(key path, whether it is an int) of every number setting of the schema."""
    out = []
    for name, field in model.model_fields.items():
        key = (*prefix, field.alias or name)
        members = [a for a in typing.get_args(field.annotation)] or [field.annotation]
        sub = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if sub is not None:
            out += number_paths(sub, key)
        elif int in members or float in members:
            out.append((key, int in members))
    return out


NUMBER_PATHS = number_paths(StackConfig)


def nested(path: tuple[str, ...], value: object) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def test_every_number_setting_is_walked():
    assert len(NUMBER_PATHS) > 40 and (("model", "sizeBytes"), True) in NUMBER_PATHS


@pytest.mark.parametrize(("path", "whole"), NUMBER_PATHS, ids=[".".join(p) for p, _ in NUMBER_PATHS])
@pytest.mark.parametrize("sign", [1, -1])
def test_every_number_setting_at_the_bound_gives_sentences_or_a_summary(path, whole, sign):
    raw = nested(path, sign * (MAX_NUMBER if whole else float(MAX_NUMBER)))
    if path[0] == "autoscaling":
        raw["autoscaling"] |= {"enabled": True, "activeHours": {}} if path[1] != "enabled" else {}
    try:
        config, _ = load_config(raw, "dev")
    except ConfigError as err:
        assert err.problems and all("Traceback" not in p for p in err.problems)
        return
    assert summary_markdown(config, "dev") and json.dumps(summary_data(config, "dev"))


# --- keys without a namespace -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "fix"),
    [
        ("cluster", "write it as llamacpp-aks:cluster"),
        ("apiKey", "write it as llamacpp-aks:apiKey"),
        ("llamacpp-aks:cluster:gpuPool", "write it as llamacpp-aks:gpuPool"),
        ("llamacpp-aks:data:cluster", "write it as llamacpp-aks:cluster"),
        ("a:b:c:d", "write it as llamacpp-aks:d"),
    ],
)
def test_refuses_a_key_the_cli_cannot_parse(tmp_path, key, fix):
    msg = only(problems_of(tmp_path, f"config:\n  {key}: s3cret-value\n"))
    assert f"the config key '{key}' is not of the form <namespace>:<name>" in msg and fix in msg
    assert "s3cret-value" not in msg


def test_a_bare_key_never_replaces_the_projects_key(tmp_path):
    text = f"config:\n  {PROD}  cluster:\n    production: false\n"
    assert "the config key 'cluster' is not of the form" in only(problems_of(tmp_path, text))


def test_reads_the_old_config_module_form_as_the_cli_does(tmp_path):
    flat = read(tmp_path, "config:\n  llamacpp-aks:config:server: {parallel: 4}\n")
    assert flat == {"llamacpp-aks:server": '{"parallel": 4}'}


def test_refuses_two_spellings_of_one_key(tmp_path):
    text = "config:\n  llamacpp-aks:server: {parallel: 4}\n  llamacpp-aks:config:server: {parallel: 8}\n"
    msg = only(problems_of(tmp_path, text))
    assert "'llamacpp-aks:server' and 'llamacpp-aks:config:server' both name llamacpp-aks:server" in msg


# --- config the render cannot see ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["otherproject:setting", "azure-native-extra:location", "Azure-Native:location", "pulumi:tags", "aws:region"]
)
def test_refuses_config_of_another_project(key):
    with pytest.raises(ConfigError) as err:
        split_pulumi_config({key: "s3cret", "azure-native:location": "eastus"})
    msg = only(err.value.problems)
    assert f"the config key '{key}' is under the namespace" in msg and "the render cannot show what it does" in msg
    assert "s3cret" not in msg


def test_preview_refuses_config_of_another_project():
    mocks = render.RenderMocks()
    with pytest.raises(pulumi.RunError) as err:
        render.run_program("dev", {**flat_config({}), "otherproject:size": "9"}, mocks)
    assert "the config key 'otherproject:size' is under the namespace" in str(err.value) and not mocks.resources


def test_every_provider_namespace_is_a_pulumi_package_the_program_installs():
    packages = (ROOT / "requirements.txt").read_text()
    for namespace in PROVIDER_NAMESPACES:
        assert re.search(rf"^pulumi(verse)?-{namespace}==", packages, re.MULTILINE), namespace
    installed = re.findall(r"^pulumi(?:verse)?-([a-z-]+)==", packages, re.MULTILINE)
    assert sorted(installed) == sorted(PROVIDER_NAMESPACES)


@pytest.mark.parametrize("imports", ["[team/llm]", "{imports: [team/llm]}", "team/llm"])
def test_refuses_esc_environment_imports(tmp_path, imports):
    msg = only(problems_of(tmp_path, f"environment: {imports}\nconfig:\n  llamacpp-aks:server: {{}}\n"))
    assert "environment: imports Pulumi ESC environments" in msg and "the render cannot see them" in msg


def test_an_empty_environment_is_nothing_to_see(tmp_path):
    assert read(tmp_path, "environment: []\nconfig:\n  llamacpp-aks:server: {}\n") == {"llamacpp-aks:server": "{}"}


@pytest.mark.parametrize("name", ["Pulumi.yaml", "Pulumi.yml"])
def test_refuses_project_level_config_the_render_cannot_merge(tmp_path, name):
    (tmp_path / name).write_text(
        "name: llamacpp-aks\nruntime: python\nconfig:\n  llamacpp-aks:server:\n    default: {}\n"
    )
    msg = only(problems_of(tmp_path, "config:\n  llamacpp-aks:server: {}\n"))
    assert f"{name} has project-level config:" in msg and "move those settings into each Pulumi.<stack>.yaml" in msg


def test_a_project_file_without_config_is_fine(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text() + "config: {}\n")
    assert read(tmp_path, "config:\n  llamacpp-aks:server: {}\n") == {"llamacpp-aks:server": "{}"}


def test_the_repositorys_project_file_has_no_config():
    assert "config" not in yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


# --- secure: values -------------------------------------------------------------------------------

NONCE = base64.b64encode(bytes(range(12))).decode()


def ciphertext(sealed_bytes: int = 32, nonce: str = NONCE) -> str:
    return f"v1:{nonce}:{base64.b64encode(bytes(range(sealed_bytes))).decode()}"


@pytest.mark.parametrize(
    "key", ["llamacpp-aks:apiKey", "llamacpp-aks:hfToken", "llamacpp-aks:config:apiKey", "azure-native:clientSecret"]
)
@pytest.mark.parametrize("sealed", [16, 17, 200])
def test_accepts_ciphertext_where_a_secret_belongs(tmp_path, key, sealed):
    assert read(tmp_path, f"config:\n  {key}:\n    secure: {ciphertext(sealed)}\n") == {}


@pytest.mark.parametrize(
    "value",
    [
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        "4242",
        "'4242'",
        "true",
        "[a]",
        "{a: b}",
        ciphertext(15),
        ciphertext(32, nonce=base64.b64encode(bytes(11)).decode()),
        ciphertext(32, nonce=base64.b64encode(bytes(15)).decode()),
        ciphertext().replace("v1:", "v2:"),
        ciphertext().replace("v1:", "V1:"),
        ciphertext() + ":extra",
        ciphertext() + "!",
        "v1:" + NONCE,
    ],
)
def test_refuses_a_secure_value_that_is_not_ciphertext_without_echoing_it(tmp_path, capsys, value):
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(f"config:\n  llamacpp-aks:apiKey:\n    secure: {value}\n")
    assert render.main(["--config", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    problems = err.splitlines()[1:]
    assert len(problems) == 1 and "llamacpp-aks:apiKey holds secure: with" in problems[0], err
    assert "value not shown" in problems[0] and "pulumi config set --secret apiKey" in problems[0]
    secret = value.strip("'")
    assert secret not in err.replace(str(path), "")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("llamacpp-aks:cluster:\n    secure: CT", "llamacpp-aks:cluster holds a secure: value"),
        ("llamacpp-aks:server:\n    alias:\n      secure: CT", "llamacpp-aks:server.alias holds a secure: value"),
        ("llamacpp-aks:alerts:\n    webhooks: [{secure: CT}]", "llamacpp-aks:alerts.webhooks[0] holds a secure: value"),
        ("llamacpp-aks:apikey:\n    secure: CT", "llamacpp-aks:apikey holds a secure: value"),
        ("azure-native:x:\n    y: {secure: CT}", "azure-native:x.y holds a secure: value"),
    ],
)
def test_refuses_a_secret_where_none_belongs(tmp_path, text, where):
    msg = only(problems_of(tmp_path, "config:\n  " + text.replace("CT", ciphertext()) + "\n"))
    assert msg.startswith(
        f"{where} (not shown), but a secret belongs only in llamacpp-aks:hfToken, llamacpp-aks:apiKey"
    )


def test_preview_refuses_a_secret_where_none_belongs(monkeypatch):
    # The CLI decrypts a secure: value inside an object and names the key as a secret.
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", '["llamacpp-aks:server"]')
    msg = only(preview_problems({"server": {"alias": "decrypted-secret"}}))
    assert msg.startswith("llamacpp-aks:server holds a secure: value (not shown), but a secret belongs only in")
    assert "decrypted-secret" not in msg


@pytest.mark.parametrize(("value", "said"), [("4242", "a number"), ("true", "a boolean"), ("[a]", "a list")])
def test_a_secure_value_that_is_not_text_is_named_by_its_kind(tmp_path, value, said):
    msg = only(problems_of(tmp_path, f"config:\n  llamacpp-aks:hfToken:\n    secure: {value}\n"))
    assert msg.startswith(f"llamacpp-aks:hfToken holds secure: with {said} (value not shown)")


def test_an_operator_commands_stack_is_its_file_or_one_sentence(tmp_path):
    from core.loading import StackFileMissing, stack_file

    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    assert stack_file(tmp_path, "dev") == tmp_path / "Pulumi.dev.yaml"
    with pytest.raises(StackFileMissing, match=r"^Pulumi\.Dev\.yaml does not exist; give STACK=<name> of a"):
        stack_file(tmp_path, "Dev")
