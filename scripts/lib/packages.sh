# Sourced by the test scripts: installs Debian packages by name.
#
#   mmpool_need_packages PKG...   installs each PKG that dpkg does not list as
#                                 installed (one `apt-get update`, then
#                                 `apt-get install -y --no-install-recommends`);
#                                 without root or apt-get it names them and fails.
#
# It asks dpkg, not `command -v`: a program can be on PATH while a package it
# needs (a sanitizer runtime, say) is missing, as on a fresh machine.

mmpool_package_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

mmpool_need_packages() {
    local missing=() pkg
    if ! command -v dpkg-query >/dev/null; then
        echo "not a Debian system: please install the equivalents of: $*" >&2
        return 1
    fi
    for pkg in "$@"; do
        mmpool_package_installed "$pkg" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing packages (${missing[*]}), and no root apt-get to install them" >&2
        return 1
    fi
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${MMPOOL_APT_UPDATED:-}" ]; then
        apt-get update -qq
        export MMPOOL_APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for pkg in "${missing[@]}"; do
        mmpool_package_installed "$pkg" || { echo "apt-get did not install $pkg" >&2; return 1; }
    done
}
