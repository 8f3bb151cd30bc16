#!/usr/bin/env bash
# Clean-room install test (CI runs it): packs ringbus with `npm run package`, installs the
# two tarballs into an empty project with no cargo or rustc on the PATH, and uses it there
# as a service would: require (CJS), import (ESM), `tsc --strict` with module nodenext, and
# a Jest test that must exit on its own. A second project installs the main package
# without its platform package and must get the clear "no native addon" error.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

npm run package
version=$(node -p "require('./package.json').version")
main_tgz="$root/dist/ringbus-$version.tgz"
platform_tgz=$(ls "$root"/dist/ringbus-*-"$version".tgz)

# Versions of the tools the service uses: the ones this repository tests with (in npm's
# cache already after `npm ci`).
jest_v=$(node -p "require('./node_modules/jest/package.json').version")
ts_v=$(node -p "require('./node_modules/typescript/package.json').version")
types_node_v=$(node -p "require('./node_modules/@types/node/package.json').version")

work=$(mktemp -d /tmp/ringbus-clean-room-XXXXXX)
trap 'rm -rf "$work"' EXIT
# Node and npm, and the system directories; no ~/.cargo/bin.
clean_path="$(dirname "$(command -v node)"):/usr/local/bin:/usr/bin:/bin"
if PATH=$clean_path command -v cargo >/dev/null || PATH=$clean_path command -v rustc >/dev/null; then
  echo "cargo or rustc is still on the clean PATH ($clean_path)" >&2
  exit 1
fi
npm_install() { PATH=$clean_path npm install --no-audit --no-fund --prefer-offline "$@"; }

echo "--- install into an empty project (no Rust on the PATH)"
app="$work/app"
mkdir -p "$app"
cp "$root"/scripts/clean-room/* "$app"/
cd "$app"
npm_install "$main_tgz" "$platform_tgz" "jest@$jest_v" "typescript@$ts_v" "@types/node@$types_node_v"
# The package holds what a service needs and nothing else.
files=$(cd node_modules/ringbus && find . -type f | sort | tr '\n' ' ')
expected="./README.md ./bin/ringbus.js ./cli/commands/check.js ./cli/commands/dashboard.js ./cli/commands/dlq.js ./cli/commands/groups.js ./cli/commands/info.js ./cli/commands/tail.js ./cli/connect.js ./cli/errors.js ./cli/main.js ./cli/output.js ./cli/records.js ./cli/times.js ./dashboard/api.js ./dashboard/index.d.ts ./dashboard/index.js ./dashboard/page/app.css ./dashboard/page/app.js ./dashboard/page/index.html ./index.d.ts ./index.js ./main.js ./main.mjs ./package.json ./telemetry.js "
if [ "$files" != "$expected" ]; then
  echo "unexpected files in the package: $files (expected $expected)" >&2
  exit 1
fi

echo "--- require (CommonJS)"
PATH=$clean_path node use.cjs
echo "--- without @opentelemetry/api: telemetry options do nothing, nothing is logged"
PATH=$clean_path node no-otel.cjs > no-otel.log 2>&1 || { cat no-otel.log >&2; exit 1; }
if [ -s no-otel.log ]; then
  echo "the bus printed without @opentelemetry/api installed: $(cat no-otel.log)" >&2
  exit 1
fi
echo "--- import (ESM)"
PATH=$clean_path node use.mjs
echo "--- tsc --strict, module nodenext"
PATH=$clean_path npx tsc -p tsconfig.json
echo "--- jest (must exit on its own)"
# Bounded: a Jest held open by the addon would otherwise hang CI instead of failing it.
if ! PATH=$clean_path timeout 300 npx jest --ci 2>&1 | tee jest.log; then
  echo "Jest failed or did not exit within 300 s (a handle held open?)" >&2
  exit 1
fi
if grep -qi "open handle\|did not exit\|--detectOpenHandles" jest.log; then
  echo "Jest reported open handles or did not exit on its own" >&2
  exit 1
fi

echo "--- the ringbus command, as installed (against the CI servers)"
PATH=$clean_path npx ringbus --help | grep -q "Usage: ringbus"
nats_url="${RINGBUS_NATS_URL:-nats://127.0.0.1:4222}"
redis_url="${RINGBUS_REDIS_URL:-redis://127.0.0.1:6379}"
prefix="cleanroom$$"
PATH=$clean_path RINGBUS_REDIS_URL=$redis_url RINGBUS_CLEAN_PREFIX=$prefix node seed-group.cjs
PATH=$clean_path npx ringbus --url "$redis_url?prefix=$prefix" --json groups | tee groups.ndjson
node -e '
  const rows = require("fs").readFileSync("groups.ndjson", "utf8").trim().split("\n").map(JSON.parse)
  if (rows.length !== 1 || rows[0].group !== "cleanroom" || rows[0].lag !== 5) {
    console.error("ringbus groups from the installed package said", rows)
    process.exit(1)
  }
'
set +e
PATH=$clean_path npx ringbus --url "$redis_url?prefix=$prefix" check --max-lag 1 --format nagios
status=$?
set -e
if [ "$status" != 1 ]; then
  echo "ringbus check should exit 1 past --max-lag, exited $status" >&2
  exit 1
fi
PATH=$clean_path npx ringbus --url "$redis_url?prefix=$prefix" --json dlq purge cleanroom --yes | grep -q '"count":0'
if command -v redis-cli >/dev/null; then
  redis-cli -u "$redis_url" --scan --pattern "*$prefix*" | xargs -r redis-cli -u "$redis_url" del >/dev/null
fi
set +e
PATH=$clean_path npx ringbus info --url "nats://${nats_url#nats://}/no-such-stream-$prefix" 2>err.txt
status=$?
set -e
if [ "$status" != 2 ] || ! grep -q "ERR_INVALID_CONFIG" err.txt; then
  echo "ringbus info on a missing stream should exit 2 with ERR_INVALID_CONFIG (exit $status): $(cat err.txt)" >&2
  exit 1
fi

echo "--- without the platform package: a clear error"
bare="$work/bare"
mkdir -p "$bare"
cd "$bare"
npm init -y >/dev/null
npm_install --omit=optional "$main_tgz"
PATH=$clean_path node -e '
  try {
    require("ringbus")
    console.error("ringbus loaded without its platform package")
    process.exit(1)
  } catch (e) {
    const platform = `${process.platform}-${process.arch}`
    if (e.code !== "ERR_NATIVE_ADDON" || !e.message.includes(platform) || !e.message.includes("npm run build")) {
      console.error("unclear error:", e.code, e.message)
      process.exit(1)
    }
    console.log("clear error:", e.message.slice(0, 120) + "…")
  }
'
echo "clean-room install: ok"
