#!/usr/bin/env bash
# Builds Redis from Debian's source package, with Debian's security patches
# and the release's own patches (patches/ beside this script), and installs
# it into PREFIX:
#
#   build.sh ORIG_TARBALL DEBIAN_TARBALL PREFIX
#
# ORIG_TARBALL is redis_<V>.orig.tar.gz (the upstream source, unpatched) and
# DEBIAN_TARBALL redis_<V>-<REVISION>.debian.tar.xz (debian/, whose
# debian/patches/series lists the patches Debian applies), both as
# `apt-get source redis` downloads them from bookworm-security. The
# release's redis package (packages/redis/packaging) and the tests' build
# (scripts/setup) both run this script, so what ships is what is tested.
#
# It unpacks both into the current directory as dpkg-source does, applies
# the series' patches in series order with `patch -p1 --fuzz=0` (as quilt
# does for Debian), leaving out Debian's build choices (EXCLUDED below),
# then the release's own patches, patches/series beside this script, in
# series order the same way (today one: cf-password-only-login.patch, a
# password sent alone logs in as the binding whose password it is; its
# header says exactly how), builds with TLS (make BUILD_TLS=yes, Redis's bundled jemalloc and Lua),
# installs bin/redis-server, redis-cli, redis-benchmark and the check tools,
# and writes PREFIX/build-info: the Debian version, the patches applied and
# left out, the release's patches applied and their sha256, the sha256 of the
# two tarballs, of this script and of the installed programs (the tests
# check them: src/testkit/redistest).
#
# redis-server --version says which revision it is: its "sha" field (the
# git commit of a build from a git checkout, 00000000 from a tarball) is the
# Debian revision's label followed by "+cf" and the number of the release's
# own patches it carries, e.g. "sha=deb12u10+cf1:0". The build id is
# reproducible: it comes from debian/changelog's date (SOURCE_DATE_EPOCH),
# not from this machine's name and clock.
set -euo pipefail

# EXCLUDED are the series entries (shell patterns) left out. None is a fix:
# - debian-packaging/*: Debian's defaults in redis.conf and sentinel.conf
#   (daemonize, /var/log/redis, /var/run/redis); the release writes its own
#   configuration, and the files are not installed.
# - *USE_SYSTEM_JEMALLOC*: lets Debian link the system's libjemalloc
#   (USE_SYSTEM_JEMALLOC=yes); this build links Redis's bundled jemalloc,
#   and the patch changes nothing unless that flag is set.
# No other patch needs them: every other patch applies without fuzz to the
# upstream source without them (checked for 7.0.15-1~deb12u10), and a patch
# that did not would stop this build. The three other Debian build patches
# (kFreeBSD fmacros, CPPFLAGS in the Makefiles, get_current_dir_name in
# rdb.c) are applied: later patches' context is made with them in place.
EXCLUDED=('debian-packaging/*' '*USE_SYSTEM_JEMALLOC*')

if [ $# -ne 3 ]; then
  echo "usage: build.sh ORIG_TARBALL DEBIAN_TARBALL PREFIX" >&2
  exit 2
fi
self=$(readlink -f "${BASH_SOURCE[0]}")
patches=$(dirname "$self")/patches
[ -f "$patches/series" ] || { echo "build.sh: no $patches/series (the release's own patches)" >&2; exit 1; }
orig=$(readlink -f "$1")
debian=$(readlink -f "$2")
prefix=$3
for f in "$orig" "$debian"; do
  [ -f "$f" ] || { echo "build.sh: no such file: $f" >&2; exit 1; }
done
mkdir -p "$prefix"
prefix=$(readlink -f "$prefix")

top=$(tar -tzf "$orig" | awk -F/ 'NR == 1 { print $1 }')
[ -n "$top" ] || { echo "build.sh: $orig is empty" >&2; exit 1; }
rm -rf "$top"
tar -xzf "$orig"
tar -C "$top" -xJf "$debian"
cd "$top"
[ -f debian/patches/series ] && [ -f debian/changelog ] ||
  { echo "build.sh: $debian has no debian/patches/series or debian/changelog" >&2; exit 1; }

# "redis (5:7.0.15-1~deb12u10) bookworm-security; urgency=high"
version=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' debian/changelog)
revision=${version##*-}
label=${revision##*~}
if ! [[ "$label" =~ ^[A-Za-z0-9.+]+$ ]]; then
  echo "build.sh: cannot read the Debian version from debian/changelog: '$version'" >&2
  exit 1
fi
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(date -d "$(sed -n '/^ -- /{s/^ -- .*>  //p;q}' debian/changelog)" +%s)

applied=()
excluded=()
while read -r entry _; do
  case "$entry" in '' | '#'*) continue ;; esac
  skip=false
  for pattern in "${EXCLUDED[@]}"; do
    # shellcheck disable=SC2053 # the pattern is meant to match as a glob
    if [[ "$entry" == $pattern ]]; then skip=true; fi
  done
  if $skip; then
    excluded+=("$entry")
    continue
  fi
  if ! out=$(patch -p1 --fuzz=0 --forward --batch --no-backup-if-mismatch <"debian/patches/$entry" 2>&1); then
    echo "build.sh: debian/patches/$entry does not apply:" >&2
    echo "$out" >&2
    exit 1
  fi
  applied+=("$entry")
done <debian/patches/series
[ ${#applied[@]} -gt 0 ] || { echo "build.sh: debian/patches/series lists no patch to apply" >&2; exit 1; }

# The release's own patches, after Debian's: made against the source with
# Debian's patches applied, so a Debian bump that moves their context stops
# here (--fuzz=0) rather than building something else.
cf_applied=()
cf_sha256=()
while read -r entry _; do
  case "$entry" in '' | '#'*) continue ;; esac
  if ! out=$(patch -p1 --fuzz=0 --forward --batch --no-backup-if-mismatch <"$patches/$entry" 2>&1); then
    echo "build.sh: the release's patch $entry does not apply after Debian's:" >&2
    echo "$out" >&2
    exit 1
  fi
  cf_applied+=("$entry")
  cf_sha256+=("$(sha256sum "$patches/$entry" | cut -d' ' -f1)")
done <"$patches/series"
label="$label+cf${#cf_applied[@]}"

# The revision as the "sha" of --version and INFO (redis_git_sha1), a clean
# tree (dirty 0), whatever git repository the build folder may be in.
sed -i "s/^GIT_SHA1=.*/GIT_SHA1=$label/; s/^GIT_DIRTY=.*/GIT_DIRTY=0/" src/mkreleasehdr.sh

make -j"$(nproc)" BUILD_TLS=yes >build.log 2>&1 || { tail -n 40 build.log >&2; exit 1; }
make PREFIX="$prefix" install >>build.log 2>&1 || { tail -n 40 build.log >&2; exit 1; }

{
  echo "debian_version=$version"
  echo "upstream_version=$(sed -n 's/^#define REDIS_VERSION "\(.*\)"/\1/p' src/version.h)"
  echo "orig_sha256=$(sha256sum "$orig" | cut -d' ' -f1)"
  echo "debian_sha256=$(sha256sum "$debian" | cut -d' ' -f1)"
  echo "applied=${applied[*]}"
  echo "excluded=${excluded[*]}"
  echo "cf_applied=${cf_applied[*]}"
  echo "cf_patches_sha256=${cf_sha256[*]}"
  echo "build_script_sha256=$(sha256sum "$self" | cut -d' ' -f1)"
  for program in redis-server redis-cli redis-benchmark; do
    echo "${program//-/_}_sha256=$(sha256sum "$prefix/bin/$program" | cut -d' ' -f1)"
  done
} >"$prefix/build-info"
echo "build.sh: built $("$prefix/bin/redis-server" --version) with ${#applied[@]} Debian patches (left out: ${excluded[*]}) and the release's ${cf_applied[*]}"
