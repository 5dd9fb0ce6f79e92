#!/usr/bin/env bash
# Install the Debian packages the course needs, when missing:
#   npm          the book's offline assets (MathJax, RequireJS, the widget manager)
#   bubblewrap   the grading sandbox (tests and instructors)
#   chromium     the browser tests of the built book
#   postgresql   a real PostgreSQL gradebook in the grading tests (the tests run its initdb and pg_ctl themselves)
# Usage: bash tools/system_packages.sh book|test
set -euo pipefail
declare -A package=([npm]="nodejs npm" [bwrap]=bubblewrap [chromium]="chromium fonts-wqy-zenhei" [pg_ctlcluster]=postgresql)
case "${1:-test}" in
    book) needed=(npm) ;;
    test) needed=(npm bwrap chromium pg_ctlcluster) ;;
    *) echo "usage: $0 book|test" >&2; exit 2 ;;
esac
missing=()
for command in "${needed[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=(${package[$command]})
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
