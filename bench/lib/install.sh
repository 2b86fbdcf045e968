# Sourced by the benchmark scripts: installs the Debian packages named, when their command is
# missing (pairs of command:package), waiting for a concurrent apt run rather than failing on its lock.
install_missing() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[bench] installing ${need[*]}" >&2
  $sudo apt-get -o DPkg::Lock::Timeout=1800 update -qq || true
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=1800 install -y -qq "${need[@]}" >&2
}
