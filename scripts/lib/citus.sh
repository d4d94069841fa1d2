# Shared by local-cluster.sh --citus and bench-citus-switchover.sh (sourced, not run):
# what a member of a Citus-shaped formation needs on a machine without Citus. No package
# registry ships Citus, so every member preloads the stub library named `citus`
# (tests/fixtures/citus_stub.c) and each group's first primary loads the SQL emulation of
# Citus's metadata functions (tests/fixtures/citus_emulation.sql) into the `citus` database.
# shellcheck shell=bash

# citus_prepare DIR: builds the stub and writes the post_bootstrap script into DIR.
citus_prepare() {
    local dir="$1" here major
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    mkdir -p "$dir"
    major="$(/usr/lib/postgresql/15/bin/postgres --version | sed -E 's/.* ([0-9]+)\..*/\1/')"
    cc -shared -fPIC -DPG_MAJOR="$major" -o "$dir/citus.so" "$here/tests/fixtures/citus_stub.c"
    cp "$here/tests/fixtures/citus_emulation.sql" "$dir/"
    cat >"$dir/post_bootstrap.sh" <<SH
#!/bin/sh
# Runs once on each group's first primary: the citus database with the emulation loaded.
set -e
/usr/lib/postgresql/15/bin/psql "\$1" -X -q -v ON_ERROR_STOP=1 -c 'CREATE DATABASE citus'
/usr/lib/postgresql/15/bin/psql "\$(echo "\$1" | sed 's/dbname=postgres/dbname=citus/')" -X -q -v ON_ERROR_STOP=1 -f '$dir/citus_emulation.sql'
SH
    chmod 755 "$dir/post_bootstrap.sh"
}

# citus_member FILE GROUP DIR: turns member_yaml's FILE into a member of GROUP (0 is the
# coordinator), with the stub and the post_bootstrap script citus_prepare left in DIR.
citus_member() {
    local file="$1" group="$2" dir="$3"
    sed -i -e "s|^bootstrap:\$|bootstrap:\n  post_bootstrap: $dir/post_bootstrap.sh|" \
        -e "s|  parameters: {unix_socket_directories: \(.*\)}|  parameters: {unix_socket_directories: \1, dynamic_library_path: '$dir:\$libdir'}|" \
        "$file"
    printf 'citus:\n  group: %s\n  database: citus\n' "$group" >>"$file"
}
