#!/usr/bin/env bash
# Set up a machine to build, test and train with mtc: the npm dependencies, and a Vulkan driver
# for Dawn (npm `webgpu`). On a machine without a GPU that is Mesa's software Vulkan
# (lavapipe) from bookworm-backports: bookworm's own Mesa 22.3 is too old for Dawn
# (see shared/gpu.md). Idempotent: a rerun on a set-up machine takes about a second.
#
# npm 11 does not run dependency install scripts by default. mtc needs none of them: esbuild's
# binary comes from @esbuild/linux-x64 and webgpu's postinstall only matters on macOS.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }

# --- npm dependencies -------------------------------------------------------------------------
# npm rewrites node_modules/.package-lock.json on every install: when it is newer than the
# manifests, node_modules is current. Otherwise (or with MTC_SETUP_FORCE=1) reinstall exactly
# the lockfile.
if [[ -f node_modules/.package-lock.json && node_modules/.package-lock.json -nt package.json \
      && node_modules/.package-lock.json -nt package-lock.json && "${MTC_SETUP_FORCE:-0}" != 1 ]]; then
  say "node_modules is up to date with package-lock.json"
else
  say "npm ci"
  npm ci --no-audit --no-fund
fi

# --- Vulkan driver ----------------------------------------------------------------------------
icd_dirs=(/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d)
has_nvidia_icd() {
  local d
  for d in "${icd_dirs[@]}"; do [[ -f $d/nvidia_icd.json ]] && return 0; done
  [[ -n ${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-} ]] # a driver the user points at by hand
}
has_loader() { ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1 ' >/dev/null; } # no grep -q: with pipefail, ldconfig's SIGPIPE would fail the check
mesa_major() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | cut -d. -f1; }

mesa=$(mesa_major || true)
if has_nvidia_icd && has_loader; then
  say "Vulkan: NVIDIA driver and Vulkan loader present"
  exit 0
elif [[ ${mesa:-0} =~ ^[0-9]+$ && ${mesa:-0} -ge 25 ]] && has_loader; then
  say "Vulkan: Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) (lavapipe) and Vulkan loader present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  say "Vulkan: no driver usable by Dawn found, and not root: skipping apt." >&2
  say "  Run this script as root, or install mesa-vulkan-drivers (>= 25) and libvulkan1 by hand (see shared/gpu.md)." >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if has_nvidia_icd; then
  say "Vulkan: NVIDIA driver present, installing the Vulkan loader (libvulkan1)"
  apt-get update
  apt-get install -y --no-install-recommends libvulkan1
  exit 0
fi

# Mesa 25 from bookworm-backports: a backports source derived from the machine's own Debian
# source (its first stanza, with the suite renamed), exactly as shared/gpu.md does it.
. /etc/os-release
src=/etc/apt/sources.list.d/debian.sources
if [[ ! -f $src ]]; then
  say "Vulkan: $src not found; add ${VERSION_CODENAME}-backports to apt's sources by hand and rerun" >&2
  exit 1
fi
say "Vulkan: installing Mesa's software Vulkan (lavapipe) from ${VERSION_CODENAME}-backports"
awk 'BEGIN{RS="";ORS="\n\n"} NR==1' "$src" \
  | sed "s/^Suites:.*/Suites: ${VERSION_CODENAME}-backports/" \
  > /etc/apt/sources.list.d/backports.sources
apt-get update
apt-get install -y --no-install-recommends -t "${VERSION_CODENAME}-backports" mesa-vulkan-drivers libvulkan1
say "Vulkan: installed Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
