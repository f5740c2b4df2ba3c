#!/bin/bash
# Installs every Debian 12 package lockstep needs to build, test and run its
# quick start. Idempotent; run as root.
set -euo pipefail
PACKAGES=(
  # build (dpkg-dev: dpkg-shlibdeps, for the Debian package's dependencies)
  cmake ninja-build ccache g++ clang libclang-rt-14-dev pkg-config dpkg-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libpqxx-dev libsqlitecpp-dev libyaml-cpp-dev libspdlog-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libabsl-dev liburing-dev libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev
  # real components the tests and the quick start use
  postgresql sqlite3 alembic python3-psycopg2 python3-sqlalchemy
  libmariadb-dev mariadb-server mariadb-client python3-pymysql
  python3-grpcio python3-grpc-tools prometheus
  # change windows name IANA time zones (absl reads /usr/share/zoneinfo)
  tzdata
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
# The cluster Debian creates is not used: tests start their own servers.
if command -v pg_lsclusters > /dev/null; then
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r v c; do
    pg_ctlcluster "$v" "$c" stop || true
  done
fi
# Nor the MariaDB server Debian starts.
if command -v service > /dev/null && [ -x /etc/init.d/mariadb ]; then
  service mariadb stop > /dev/null 2>&1 || true
fi
