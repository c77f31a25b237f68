# Sourced by the get_*.sh scripts that take their music from Debian packages.

# unpack_debs DIR PACKAGE...: download the packages with `apt-get download` (no installation) into a
# fresh temporary folder and unpack them all into DIR/root; DIR is removed when the script exits.
unpack_debs() {
    local dir=$1
    shift
    trap 'rm -rf "'"$dir"'"' EXIT
    # apt-get update may need root; a stale list still works for `download`.
    apt-get update -qq >/dev/null 2>&1 || echo "note: apt-get update failed (not root?); using existing lists" >&2
    (cd "$dir" && apt-get download -qq "$@")
    for deb in "$dir"/*.deb; do
        dpkg-deb -x "$deb" "$dir/root"
    done
}
