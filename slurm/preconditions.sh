# shellcheck shell=bash
# slurm/preconditions.sh: the one precondition of slurm/demo and tests/run,
# checked before anything is installed. Sourced (bash), not run.
#
#   check_machine PROG    exit 2 with a message naming what is missing unless
#                         this is Debian 12+ or Ubuntu 22.04+ (apt-get, dpkg)
#                         and /usr/bin/python3, if present, is 3.10 or newer
#
# python3 itself may be missing: Debian's python3-venv brings it. Everything
# else (Slurm, munge, MariaDB, git, python3-venv) is installed by the scripts.
# HPCWRAP_OS_RELEASE (default /etc/os-release) and HPCWRAP_TEST_PYTHON (default
# /usr/bin/python3) exist so that the check itself can be tested.

check_machine() {
    local prog="$1" osr="${HPCWRAP_OS_RELEASE:-/etc/os-release}"
    local python="${HPCWRAP_TEST_PYTHON:-/usr/bin/python3}"
    local id="" version="" pretty="" codename="" problems=()
    if [[ -r "$osr" ]]; then
        # Read, not sourced: a stray line must not run as code.
        id="$(sed -n 's/^ID=//p' "$osr" | tr -d '"' | head -1)"
        version="$(sed -n 's/^VERSION_ID=//p' "$osr" | tr -d '"' | head -1)"
        pretty="$(sed -n 's/^PRETTY_NAME=//p' "$osr" | tr -d '"' | head -1)"
        codename="$(sed -n 's/^VERSION_CODENAME=//p' "$osr" | tr -d '"' | head -1)"
    fi
    local this="${pretty:-an unknown system (no $osr)}"
    case "$id" in
        # Debian testing and unstable have no VERSION_ID, only a codename: newer than 12.
        debian) { [[ -z "$version" && -n "$codename" ]] \
                    || { [[ "${version%%.*}" =~ ^[0-9]+$ ]] && (( ${version%%.*} >= 12 )); }; } \
                    || problems+=("Debian 12 or newer (this is $this)") ;;
        ubuntu) [[ "${version%%.*}" =~ ^[0-9]+$ ]] && (( ${version%%.*} >= 22 )) \
                    || problems+=("Ubuntu 22.04 or newer (this is $this)") ;;
        *) problems+=("Debian 12 or Ubuntu 22.04+ (this is $this)") ;;
    esac
    if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
        problems+=("apt-get and dpkg (Debian's package tools) on PATH")
    fi
    if [[ -e "$python" ]]; then
        local pyver
        if ! pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
            problems+=("a working $python (it does not run)")
        elif ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            problems+=("Python 3.10 or newer as $python (found $pyver)")
        fi
    fi
    if (( ${#problems[@]} == 0 )); then
        return 0
    fi
    printf '%s: this machine does not meet the one precondition (Debian 12 or Ubuntu 22.04+ with Python 3.10+, as root). Missing:\n' "$prog" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    printf '%s: nothing was installed or started.\n' "$prog" >&2
    exit 2
}
