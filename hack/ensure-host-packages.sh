#!/usr/bin/env bash
# Make sure the Debian packages the real node and the image build need are installed:
#   real node: containerd, runc, CNI plugins, iptables (kubedag.testbed.realnode)
#   images:    buildah, skopeo, umoci, debootstrap, busybox-static, gcc (make images)
# Installs the missing ones with apt-get (root or passwordless sudo); elsewhere says what to do.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd containerd || need+=(containerd)
have_cmd runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
have_cmd iptables || need+=(iptables)
have_cmd ip || need+=(iproute2)
have_cmd buildah || need+=(buildah)
have_cmd skopeo || need+=(skopeo)
have_cmd umoci || need+=(umoci)
have_cmd debootstrap || need+=(debootstrap)
[ -x /bin/busybox ] || need+=(busybox-static)
have_cmd gcc || need+=(gcc libc6-dev)
have_cmd openssl || need+=(openssl)
[ "${#need[@]}" -eq 0 ] && exit 0

if ! have_cmd apt-get; then
  echo "ensure-host-packages: missing ${need[*]} and no apt-get here; install them" \
       "(the real node and the image build need them)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if have_cmd sudo && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ensure-host-packages: not root and no sudo: run 'apt-get install -y ${need[*]}' as root" >&2
    exit 1
  fi
fi
echo "ensure-host-packages: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's containerd package may start a service where an init system runs: the test bed runs
# its own containerd on its own socket, so stop a system one rather than leave two around.
if have_cmd systemctl && systemctl is-active --quiet containerd 2>/dev/null; then
  $SUDO systemctl stop containerd || true
fi
