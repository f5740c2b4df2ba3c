#!/bin/bash
# Creates the demo fleet with real Alembic from migrations/example, in DIR
# (default: ./demo): dev at heads, staging one revision behind, prod two
# behind, and a prod tenant whose version row no script defines (as after
# restoring the wrong file). Writes DIR/lockstep.yaml for lockstepd, serving
# gRPC on $LOCKSTEP_DEMO_LISTEN (default 127.0.0.1:50051) and /metrics on
# $LOCKSTEP_DEMO_METRICS_LISTEN (default 127.0.0.1:9187).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIR="$(mkdir -p "${1:-$ROOT/demo}" && cd "${1:-$ROOT/demo}" && pwd)"
INI="$ROOT/migrations/example/alembic.ini"
alembic() { /usr/bin/alembic -c "$INI" -x "url=sqlite:///$DIR/$1.db" "${@:2}" > /dev/null 2>&1; }

rm -f "$DIR"/*.db "$DIR"/state.db*
alembic dev upgrade heads
alembic staging upgrade 7c4e2d8a9b22          # users + age
alembic staging upgrade c2e4a6b8d055          # + orders: one merge left
for db in prod-tenant-a prod-tenant-b; do
  alembic "$db" upgrade 7c4e2d8a9b22
  alembic "$db" upgrade b5d1e7f3a033          # two revisions behind
done
alembic prod-tenant-c upgrade 7c4e2d8a9b22
sqlite3 "$DIR/prod-tenant-c.db" "UPDATE alembic_version SET version_num = '1d5e0a7c9f00'"

cat > "$DIR/lockstep.yaml" <<YAML
# The demo fleet (deploy/scripts/demo-fleet.sh). Paths are relative to this file.
server:
  listen: ${LOCKSTEP_DEMO_LISTEN:-127.0.0.1:50051}
  metrics_listen: ${LOCKSTEP_DEMO_METRICS_LISTEN:-127.0.0.1:9187}
  state: state.db
  poll_interval: 10s
  backup_dir: backups
project:
  alembic_ini: $INI
environments:
  - name: dev
    databases:
      - {name: app, url: "sqlite:///dev.db"}
  - name: staging
    after: dev
    soak: 30s
    databases:
      - {name: app, url: "sqlite:///staging.db"}
  - name: prod
    after: staging
    approval: required
    backup: required
    canary: [tenant-a]
    batch_size: 10
    max_parallel: 4
    databases:
      - {name: tenant-a, url: "sqlite:///prod-tenant-a.db", labels: {tier: gold}}
      - {name: tenant-b, url: "sqlite:///prod-tenant-b.db", labels: {tier: free}}
      - {name: tenant-c, url: "sqlite:///prod-tenant-c.db", labels: {tier: free}}
YAML
echo "demo fleet in $DIR (inventory: $DIR/lockstep.yaml)"
