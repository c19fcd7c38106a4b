"""What stays after make destroy, derived from the programs: each item with its cost and removal."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tools import destroy

ROOT = Path(__file__).resolve().parent.parent


def report(stack: str = "dev") -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert destroy.main(["--stack", stack]) == 0
    return out.getvalue()


def line_of(path: str, text: str) -> int:
    lines = (ROOT / path).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_every_item_has_a_cost_and_a_removal():
    items = report().split("\n- ")[1:]
    assert len(items) == 6
    for item in items:
        assert (item.count("\n  cost: "), item.count("\n  remove: ")) == (1, 1), item


def test_the_control_plane_identity_stays_only_where_bootstrap_made_it():
    def identity_items(adopted: bool) -> list[str]:
        return [i.text() for i in destroy.leftovers("prod", "managed-csi-premium", adopted) if "identity" in i.text()]

    assert identity_items(False) == []  # the program made it, and destroy deletes it
    (item,) = identity_items(True)
    assert "llamacpp-prod-aks-identity" in item and "retain_on_delete" in item
    assert "az identity delete --resource-group llamacpp-prod-rg --name llamacpp-prod-aks-identity" in item


def test_the_model_volume_is_found_where_the_program_retains_it():
    where = f"components/serving.py:{line_of('components/serving.py', 'k8s.core.v1.PersistentVolumeClaim(')}"
    assert f"the model volume llamacpp-dev-server-models ({where}, retain_on_delete)" in report()
    assert "storage class managed-csi-premium reclaims with Delete" in report()


def test_the_log_analytics_workspace_is_soft_deleted_with_its_purge_command():
    assert (
        "az monitor log-analytics workspace delete --resource-group llamacpp-prod-rg --workspace-name "
        "llamacpp-prod-logs --force --yes"
    ) in report("prod")


def test_bootstraps_state_soft_delete_days_come_from_its_source():
    days = re.search(
        r'delete_retention_policy=\{"enabled": True, "days": (\d+)\}', (ROOT / "bootstrap" / "__main__.py").read_text()
    )
    assert days is not None
    assert f"state blobs are kept {days[1]} days (blob soft delete)" in report()
    assert "cd bootstrap && pulumi destroy --stack ci" in report()


def test_the_state_and_local_files_name_the_stack():
    text = report("prod")
    assert "pulumi stack rm prod" in text
    assert "~/.pulumi/stacks/llamacpp-aks/prod.json" in text
    assert "rm -rf .stacks/prod render/prod" in text


def test_a_retained_resource_is_found_in_any_component_and_a_false_switch_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "x.py").write_text(
        "import pulumi\n"
        "a = azure.storage.StorageAccount('a', opts=child.merge(pulumi.ResourceOptions(retain_on_delete=True)))\n"
        "b = azure.storage.StorageAccount('b', opts=pulumi.ResourceOptions(retain_on_delete=False))\n"
        "c = k8s.core.v1.Secret('c', opts=pulumi.ResourceOptions(protect=True))\n"
    )
    monkeypatch.setattr(destroy, "ROOT", tmp_path)
    assert destroy.retained(tmp_path / "components") == [("StorageAccount", "components/x.py:2")]


@pytest.mark.parametrize(
    ("source", "days"),
    [
        ('x(delete_retention_policy={"enabled": True, "days": 7})', 7),
        ('x(delete_retention_policy={"enabled": False})', None),
        ("x(is_versioning_enabled=True)", None),
    ],
)
def test_blob_soft_delete_days_are_read_or_absent(tmp_path: Path, source: str, days: int | None):
    path = tmp_path / "main.py"
    path.write_text(source + "\n")
    assert destroy.blob_soft_delete_days(path) == days


def test_a_storage_class_of_our_own_is_not_claimed_to_delete():
    (item,) = [i for i in destroy.leftovers("dev", "retain-ssd") if "model volume" in i.what]
    assert "reclaims with the class's reclaimPolicy" in item.what


def test_an_unknown_stack_is_one_sentence(capsys: pytest.CaptureFixture[str]):
    assert destroy.main(["--stack", "team-a"]) == 1
    assert capsys.readouterr().err == "Pulumi.team-a.yaml does not exist; give STACK=<name> of a Pulumi.<name>.yaml\n"
