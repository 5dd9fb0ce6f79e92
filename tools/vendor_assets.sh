#!/usr/bin/env bash
# Copy the JavaScript the rendered book loads into book/_static/vendor/ (gitignored), so
# that neither building nor reading the book needs a CDN or any network:
#   - MathJax 3 (tex-chtml.js, its fonts, the TeX extensions it autoloads, and the
#     accessibility components its menu can switch on),
#   - RequireJS and the ipywidgets HTML manager (embed-amd.js and its icon fonts), which
#     myst-nb loads on pages that display widgets.
# Versions are pinned in tools/vendor/package.json and tools/vendor/package-lock.json;
# _config.yml points Sphinx and myst-nb at the copies.
#
# Usage: bash tools/vendor_assets.sh   (run from anywhere; `make book` runs it)
# It does nothing when the copies are already up to date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/tools/vendor"
NM="$PKG/node_modules"
DEST="$ROOT/book/_static/vendor"
SELF="$ROOT/tools/vendor_assets.sh"

# What the copies depend on: the lock file (versions) and this script (the file list).
want="$(cat "$PKG/package-lock.json" "$SELF" | sha256sum | cut -d' ' -f1)"

if [[ -f "$DEST/.stamp" && "$(cat "$DEST/.stamp")" == "$want" \
      && -f "$DEST/mathjax/tex-chtml.js" && -f "$DEST/requirejs/require.js" \
      && -f "$DEST/jupyter-widgets/embed-amd.js" ]]; then
  echo "vendor assets: up to date in book/_static/vendor/"
  exit 0
fi

lock_hash="$(sha256sum "$PKG/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$NM/.vendor-stamp" || "$(cat "$NM/.vendor-stamp")" != "$lock_hash" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "tools/vendor_assets.sh: npm was not found; install Debian's nodejs and npm packages (sudo apt-get install nodejs npm) and run it again." >&2
    exit 1
  fi
  echo "vendor assets: npm ci (versions pinned in tools/vendor/package-lock.json)"
  # --ignore-scripts: no package here needs an install script (font-awesome's only prints
  # its attribution).
  npm ci --prefix "$PKG" --no-audit --no-fund --ignore-scripts --loglevel=error
  echo "$lock_hash" > "$NM/.vendor-stamp"
fi

MJ="$NM/mathjax/es5"
HM="$NM/@jupyter-widgets/html-manager/dist"
RQ="$NM/requirejs"
for f in "$MJ/tex-chtml.js" "$HM/embed-amd.js" "$RQ/require.js"; do
  if [[ ! -f "$f" ]]; then
    echo "tools/vendor_assets.sh: $f is missing after npm ci; delete tools/vendor/node_modules and run again." >&2
    exit 1
  fi
done

mkdir -p "$ROOT/book/_static"
tmp="$(mktemp -d "$ROOT/book/_static/.vendor.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# MathJax: the combined TeX-to-CommonHTML component, plus what it loads at run time
# relative to its own URL: the CHTML web fonts, TeX extensions pulled in by \require or
# the autoload package, and the a11y components (and SRE with its locale maps) that the
# MathJax context menu loads when a reader turns on assistive MathML or the explorer.
mkdir -p "$tmp/mathjax/output/chtml/fonts" "$tmp/mathjax/input/tex" "$tmp/mathjax/a11y"
cp "$MJ/tex-chtml.js" "$tmp/mathjax/"
cp -r "$MJ/output/chtml/fonts/woff-v2" "$tmp/mathjax/output/chtml/fonts/"
cp -r "$MJ/input/tex/extensions" "$tmp/mathjax/input/tex/"
cp "$MJ"/a11y/*.js "$tmp/mathjax/a11y/"
cp -r "$MJ/sre" "$tmp/mathjax/"
cp "$NM/mathjax/LICENSE" "$tmp/mathjax/LICENSE"

# RequireJS (the package ships only the unminified build; its licence is in its header).
mkdir -p "$tmp/requirejs"
cp "$RQ/require.js" "$tmp/requirejs/"

# ipywidgets HTML manager: embed-amd.js bundles @jupyter-widgets/base, controls and
# output; it loads its icon fonts from its own directory.
mkdir -p "$tmp/jupyter-widgets"
cp "$HM/embed-amd.js" "$tmp/jupyter-widgets/"
cp "$HM"/*.woff2 "$HM"/*.woff "$HM"/*.ttf "$HM"/*.eot "$HM"/*.svg "$tmp/jupyter-widgets/"

echo "$want" > "$tmp/.stamp"
rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
echo "vendor assets: copied into book/_static/vendor/ ($(du -sh "$DEST" | cut -f1))"
