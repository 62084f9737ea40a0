#!/usr/bin/env bash
# Builds the upload page that `airlock dev` serves into web/dist/ (index.html, app.js,
# app.css): installs web/'s locked npm packages when its lock file changed, then bundles the
# script and the stylesheet with esbuild. Does nothing when web/dist/ is already up to date.
set -euo pipefail
cd "$(dirname "$0")/../web"

lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.airlock-lock ] || [ "$(cat node_modules/.airlock-lock)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.airlock-lock
fi

# The build's inputs: the sources, the lock file and this script.
inputs_sum=$(
  {
    echo "$lock_sum"
    find src -type f -print0 | sort -z | xargs -0 sha256sum
    sha256sum ../scripts/build-web.sh
  } | sha256sum | cut -d' ' -f1
)
if [ -f dist/.inputs ] && [ "$(cat dist/.inputs)" = "$inputs_sum" ] \
  && [ -f dist/index.html ] && [ -f dist/app.js ] && [ -f dist/app.css ]; then
  echo "build-web: web/dist is up to date" >&2
  exit 0
fi

rm -rf dist.tmp
mkdir dist.tmp
esbuild=node_modules/.bin/esbuild
"$esbuild" src/main.js --bundle --format=esm --target=es2022 --minify --sourcemap \
  --legal-comments=linked --log-level=warning --outfile=dist.tmp/app.js
"$esbuild" src/style.css --bundle --minify --log-level=warning --outfile=dist.tmp/app.css
cp src/index.html dist.tmp/index.html
echo "$inputs_sum" > dist.tmp/.inputs
rm -rf dist
mv dist.tmp dist
echo "build-web: built web/dist ($(du -sh dist | cut -f1))" >&2
