"""make rotate-key: the generated API key's URN comes from the program under mocks; pulumi is a stub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import rotate_key

ROOT = Path(__file__).resolve().parent.parent
URN = (
    "urn:pulumi:{stack}::llamacpp-aks::llamacpp-aks:serving:ModelServer"
    "$random:index/randomPassword:RandomPassword::server-api-key"
)


@pytest.fixture(scope="module")
def dev_urns() -> list[str]:
    from core import loading

    stack, flat = loading.stack_config(ROOT / "Pulumi.dev.yaml")
    return rotate_key.generated_key_urns(stack, flat)


def test_the_generated_key_has_one_urn_under_the_model_server(dev_urns: list[str]):
    assert dev_urns == [URN.format(stack="dev")]


def test_rotate_runs_pulumi_up_replace_with_that_urn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dev_urns: list[str]
):
    log = tmp_path / "pulumi.log"
    stub = tmp_path / "pulumi"
    stub.write_text(f'#!/bin/bash\necho "$*" > {log}\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(rotate_key, "generated_key_urns", lambda stack, flat: dev_urns)
    assert rotate_key.main(["--stack", "dev"]) == 0
    assert log.read_text() == f"up --stack dev --replace {URN.format(stack='dev')} --diff\n"
    out = capsys.readouterr().out
    assert "clients holding the old key get 401 from new pods" in out
    assert "one replica: down until the new pod has loaded the model" in out


def test_a_dry_run_prints_and_runs_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(rotate_key, "generated_key_urns", lambda stack, flat: [URN.format(stack=stack)])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert rotate_key.main(["--stack", "prod", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(
        f"a new API key for prod: pulumi up --stack prod --replace {URN.format(stack='prod')} --diff\n"
    )


@pytest.mark.parametrize("count", [0, 2])
def test_not_exactly_one_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], count: int
):
    monkeypatch.setattr(rotate_key, "generated_key_urns", lambda stack, flat: [URN.format(stack=stack)] * count)
    assert rotate_key.main(["--stack", "dev", "--dry-run"]) == 1
    assert f"declares {count} generated API keys" in capsys.readouterr().err


def test_a_configured_key_is_rotated_in_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    (tmp_path / "Pulumi.dev.yaml").write_text(
        text.replace(
            "config:\n",
            "config:\n  llamacpp-aks:apiKey:\n    secure: v1:AAECAwQFBgcICQoL:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=\n",
            1,
        )
    )
    monkeypatch.setattr(rotate_key, "ROOT", tmp_path)
    monkeypatch.setattr(rotate_key, "generated_key_urns", lambda stack, flat: pytest.fail("no program run needed"))
    assert rotate_key.main(["--stack", "dev"]) == 0
    assert capsys.readouterr().out.startswith(
        "Pulumi.dev.yaml sets apiKey, so the key is config: set a new one with pulumi config set --secret apiKey "
        "<new key> --stack dev, then make up STACK=dev;"
    )


def test_a_lookalike_key_is_not_taken_for_the_api_key(tmp_path: Path):
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text.replace("config:\n", "config:\n  other:apiKey: x\n", 1))
    assert rotate_key.configured_key(path) is False
    shutil.copy(ROOT / "Pulumi.dev.yaml", path)
    assert rotate_key.configured_key(path) is False


def test_an_unknown_stack_is_one_sentence(capsys: pytest.CaptureFixture[str]):
    assert rotate_key.main(["--stack", "staging"]) == 1
    assert capsys.readouterr().err == "Pulumi.staging.yaml does not exist; give STACK=<name> of a Pulumi.<name>.yaml\n"
