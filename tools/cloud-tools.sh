#!/usr/bin/env bash
# Checks that the command-line tools a Pulumi target runs are on PATH; otherwise prints the exact
# command that installs each one into the project's tools folder and exits 3, before any venv is
# built or pulumi runs. The Makefile puts "$TOOLS_DIR/bin" first on PATH.
# Why not download them here: their published checksums could not be checked from our machines
# (see docs/operations.md, "Before make up"), so the vendors' own installers do it.
# It is the one home of these install commands: `make preflight` prints them too.
# The passphrase that encrypts a stack's secrets is checked in the same run, so a first `make up`
# names everything missing at once.
#   usage: tools/cloud-tools.sh TARGET TOOL...         (TOOL: az | pulumi | kubelogin | kubectl | passphrase)
#          tools/cloud-tools.sh --install-command TOOL  prints the command that installs TOOL
#   PULUMI_VERSION   the CLI version to install (default: the pinned SDK's, from requirements.txt)
#   KUBELOGIN_VERSION  kubelogin's version (default: the one CI pins, from .github/workflows/deploy.yml)
#   TOOLS_DIR        the project-local tools folder (default .tools)
set -euo pipefail

TOOLS_DIR=${TOOLS_DIR:-.tools}
# The CLI is released with the SDK: the Makefile passes the version, run alone it reads the same pin.
PULUMI_VERSION=${PULUMI_VERSION:-$(sed -n 's/^pulumi==//p' "${BASH_SOURCE[0]%/*}/../requirements.txt")}
# A laptop signs in to the cluster with the kubelogin CI uses; its workflow is the one pin.
KUBELOGIN_VERSION=${KUBELOGIN_VERSION:-$(sed -n '/^ *KUBELOGIN_VERSION: */{s///p;q;}' "${BASH_SOURCE[0]%/*}/../.github/workflows/deploy.yml")}

install_command() {
  case "$1" in
    # Flags of Pulumi's installer: the version, a folder of our own, and no edit of shell profiles.
    pulumi) echo "curl -fsSL https://get.pulumi.com | sh -s -- --version $PULUMI_VERSION --install-root $TOOLS_DIR --no-edit-path" ;;
    # Microsoft's installer for Debian and Ubuntu; the page lists the others. kubelogin's install needs it.
    az) echo "curl -sL https://aka.ms/InstallAzureCLIDeb | sudo bash (Debian/Ubuntu; other systems: https://learn.microsoft.com/cli/azure/install-azure-cli), then az login" ;;
    # The Azure CLI's installer for kubectl and kubelogin, into the same folder; kubelogin at CI's
    # version (--kubelogin-version, az 2.10.0 and later). kubectl is only for looking around
    # (port-forward, logs): nothing the targets run needs it.
    kubelogin | kubectl) echo "az aks install-cli --install-location $TOOLS_DIR/bin/kubectl --kubelogin-install-location $TOOLS_DIR/bin/kubelogin --kubelogin-version $KUBELOGIN_VERSION" ;;
    passphrase) echo "export PULUMI_CONFIG_PASSPHRASE='choose one'" ;;
    *)
      echo "tools/cloud-tools.sh knows no tool '$1'; use az, pulumi, kubelogin, kubectl or passphrase." >&2
      exit 2
      ;;
  esac
}

if [ "$1" = --install-command ]; then
  install_command "$2"
  exit 0
fi

target=$1
shift
status=0
for tool in "$@"; do
  if [ "$tool" = passphrase ]; then
    if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
      echo "make $target needs the stack's passphrase, which is not set: set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE); it encrypts the stack's secrets and every later run needs the same one: $(install_command passphrase)" >&2
      status=3
    fi
  elif ! command -v "$tool" >/dev/null 2>&1; then
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
