#!/usr/bin/env bash
# Checks that the command-line tools a Pulumi target runs are on PATH; otherwise prints the exact
# command that installs each one into the project's tools folder and exits 3, before any venv is
# built or pulumi runs. The Makefile puts "$TOOLS_DIR/bin" first on PATH.
# Why not download them here: their published checksums could not be checked from our machines
# (see docs/operations.md, "Before make up"), so the vendors' own installers do it.
#   usage: tools/cloud-tools.sh TARGET TOOL...   (TOOL: pulumi | kubelogin)
#   PULUMI_VERSION   the CLI version to install (the Makefile passes the pinned SDK version)
#   TOOLS_DIR        the project-local tools folder (default .tools)
set -euo pipefail

target=$1
shift
TOOLS_DIR=${TOOLS_DIR:-.tools}
PULUMI_VERSION=${PULUMI_VERSION:?the Makefile sets PULUMI_VERSION}

install_command() {
  case "$1" in
    # Flags of Pulumi's installer: the version, a folder of our own, and no edit of shell profiles.
    pulumi) echo "curl -fsSL https://get.pulumi.com | sh -s -- --version $PULUMI_VERSION --install-root $TOOLS_DIR --no-edit-path" ;;
    # The Azure CLI's installer for kubectl and kubelogin, into the same folder.
    kubelogin) echo "az aks install-cli --install-location $TOOLS_DIR/bin/kubectl --kubelogin-install-location $TOOLS_DIR/bin/kubelogin" ;;
    *)
      echo "tools/cloud-tools.sh knows no tool '$1'; use pulumi or kubelogin." >&2
      exit 2
      ;;
  esac
}

status=0
for tool in "$@"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "make $target needs $tool, which is not on PATH; install it with: $(install_command "$tool")" >&2
    status=3
  elif [ "$tool" = pulumi ]; then
    # Another CLI version still works with the SDK, so this only warns.
    found=$(pulumi version 2>/dev/null || true)
    if [ "$found" != "v$PULUMI_VERSION" ]; then
      echo "warning: pulumi is ${found:-of unknown version}, not the pinned v$PULUMI_VERSION; install that with: $(install_command pulumi)" >&2
    fi
  fi
done
exit "$status"
