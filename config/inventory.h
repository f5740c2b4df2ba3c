// The daemon's configuration and inventory, from one YAML file.
//
// Example:
//   absl::StatusOr<Inventory> inv = LoadInventory("/etc/lockstep/fleet.yaml");
//   // On error, the message lists every problem at once, one per line, as
//   // "fleet.yaml:12:7: environments[1].databases[0].url: bad port 'x'".
//
// Relative paths (state, alembic_ini, scripts, sqlite URLs, password_file,
// discover globs) are resolved against the inventory file's folder.
// Secrets are never stored here: a database carries where its password comes
// from (the URL, an environment variable or a file), resolved at connect time.
#ifndef LOCKSTEP_CONFIG_INVENTORY_H_
#define LOCKSTEP_CONFIG_INVENTORY_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/change_window.h"
#include "config/database_url.h"

namespace lockstep::config {

// Environment and database names (listed or discovered): a letter or digit,
// then letters, digits, '-', '_' and '.', at most kMaxNameLength characters.
inline constexpr size_t kMaxNameLength = 128;
inline constexpr char kNamePatternText[] =
    "a name starts with a letter or digit and has only letters, digits, '-', '_' and '.' "
    "(at most 128 characters)";
bool IsValidName(const std::string& name);
// Subjects (who a token or certificate stands for) and groups: as names,
// with '@' allowed too (alice@example.com).
inline constexpr char kSubjectPatternText[] =
    "a subject starts with a letter or digit and has only letters, digits, '-', '_', '.' and '@' "
    "(at most 128 characters)";
bool IsValidSubject(const std::string& subject);
// `text` cut to 64 bytes with every byte outside printable ASCII shown as
// '?': safe to echo in an error, a log line or a reply.
std::string Printable(const std::string& text);

// TLS for lockstepd's gRPC port (PEM files, absolute once loaded).
struct TlsConfig {
  std::string cert;       // the server's certificate (chain)
  std::string key;        // its private key
  std::string client_ca;  // set: clients must present a certificate it signed
};

// server.auth: bearer tokens. The tokens file holds one line per token,
// "sha256:<64 hex digits> SUBJECT [GROUP,GROUP...]": hashes only, never a
// token. `lockstep token create` prints a new token and its line.
struct AuthConfig {
  std::string tokens_file;  // absolute
};

// Who a token stands for (the tokens file's line).
struct TokenSubject {
  std::string subject;
  std::vector<std::string> groups;
};

// The roles, each with what it may do on the environments it is bound to:
// viewer reads (status, plans, rollouts, backups); operator also starts,
// pauses, resumes and aborts rollouts, refreshes, downgrades, stamps and
// reapplies; approver reads and approves; restorer reads and restores
// backups; admin may do all of it.
inline constexpr const char* kRoles[] = {"viewer", "operator", "approver", "restorer", "admin"};

// One entry of `access`: these subjects (a name, or "group:NAME") hold this
// role on the environments matching these shell patterns.
struct AccessBinding {
  std::vector<std::string> subjects;
  std::string role;
  std::vector<std::string> environments;
  int line = 0;
};

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  // Unset: plaintext, allowed only on a loopback address unless `insecure`.
  std::optional<TlsConfig> tls;
  // Set: callers must present a token from its tokens file (or a client
  // certificate, when tls.client_ca is set).
  std::optional<AuthConfig> auth;
  // Serve plaintext, or without authentication, on a non-loopback address
  // anyway (logged at every start).
  bool insecure = false;
  std::string metrics_listen = "127.0.0.1:9187";
  std::string state = "lockstep-state.db";  // SQLite file of the state store
  absl::Duration poll_interval = absl::Seconds(30);
  int max_concurrent_checks = 32;
  int max_connections_per_server = 8;
  // WatchRollout streams held open at once, in all and per client address;
  // one more is RESOURCE_EXHAUSTED.
  int max_watch_streams = 256;
  int max_watch_streams_per_client = 32;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration statement_timeout = absl::Seconds(5);
  // How long a SQLite backup or restore waits for another connection's
  // lock (an application's transaction) before it fails.
  absl::Duration lock_wait = absl::Seconds(30);
  std::string log_format = "text";  // or "json"
  // Which databases get their own series on /metrics (about 16 each):
  // "not_clean" (behind, unreachable, drifted, ...), "all" or "none". Every
  // environment's counts by state are exported whatever this says.
  std::string metrics_per_database = "not_clean";
  std::string backup_dir = "lockstep-backups";  // where backups are written
  // The audit log (kept in the state store) also appended here as JSON
  // lines, for a log shipper; "" : not.
  std::string audit_log;
  int backup_keep = 5;  // backups kept per database; older ones are deleted
  // Where a step's whole Alembic output goes when it outgrows the last
  // 64 KiB kept in the state store: <output_dir>/<rollout>/step-<n>.log
  std::string output_dir = "lockstep-output";
  // How often every database's schema is read and compared (schema drift);
  // a database whose version rows changed is read again at the next poll.
  // 0: never.
  absl::Duration schema_interval = absl::Minutes(5);
  // Alembic runs allowed in their CPU-bound start-up at once, across all
  // rollouts; 0: one per CPU of lockstepd's host.
  int alembic_startup_slots = 0;
};

// What a PostgreSQL database's schema check reads: every schema of the
// database, or only the one that holds its version table (tenants as
// schemas of one database, each compared as if it were the whole).
enum class SchemaScope { kDatabase, kVersionTableSchema };

struct ProjectConfig {
  std::string alembic_ini;  // absolute; empty when `scripts` is used
  std::string scripts;      // a script directory instead of an ini
  std::string ini_section = "alembic";
  std::string version_table = "alembic_version";
  std::string version_table_schema;  // empty: the default schema
  SchemaScope schema_scope = SchemaScope::kDatabase;  // for PostgreSQL databases
  std::vector<std::string> alembic_command = {"alembic"};
  std::string working_dir;  // for Alembic; default: the inventory's folder
  absl::Duration step_timeout = absl::Minutes(30);  // one Alembic run, then it is stopped
  // "process": run alembic_command per step; "warm": fork a Python that has
  // imported Alembic once (see daemon/rollout/warm_alembic.h).
  std::string alembic_runner = "process";
  // The warm runner's interpreter; empty: the one that runs alembic_command
  // (daemon/rollout/alembic_entry.h WarmInterpreter), else python3.
  std::string python;
  // Shell patterns of tables, indexes, views, triggers, enums and sequences
  // a team manages by hand: left out of schema checks ("audit_*").
  std::vector<std::string> schema_ignore;
  // A PostgreSQL server where lockstepd may create (and drop) scratch
  // databases to build expected schemas with Alembic; unset: PostgreSQL
  // databases are judged by their cohort only (docs/reference.md: Schema drift).
  std::optional<DatabaseUrl> shadow_postgresql;
  // The MySQL/MariaDB server where lockstepd may create (and drop)
  // lockstep_shadow_* databases to build expected schemas on.
  std::optional<DatabaseUrl> shadow_mysql;
  // After each rollout step, the database's schema is compared with what
  // Alembic builds for its new revisions: "fail" fails the step (and its
  // on_failure applies), "warn" records it, "off" skips the check.
  std::string verify_schema = "fail";
};

// Where a database's password comes from; the URL's own password otherwise.
struct SecretRef {
  std::string env;   // password_env
  std::string file;  // password_file (absolute)
};

struct DatabaseConfig {
  std::string name;
  std::string environment;
  DatabaseUrl url;  // may hold a password: print url.Redacted() only
  std::map<std::string, std::string> labels;
  std::string version_table;         // resolved: override or project's
  std::string version_table_schema;  // resolved
  SchemaScope schema_scope = SchemaScope::kDatabase;  // resolved
  SecretRef secret;
  int line = 0;  // where it is defined, for messages
};

// Expands to many databases at every refresh: the names a PostgreSQL query
// returns (each becomes the URL's database), or the files a glob matches.
struct DiscoverRule {
  std::string environment;
  std::optional<DatabaseUrl> url;  // PostgreSQL server to ask
  std::string query;               // returns one column: database names
  std::string glob;                // SQLite files, e.g. /srv/tenants/*.db
  std::map<std::string, std::string> labels;
  SecretRef secret;
  int line = 0;
};

enum class FailurePolicy { kRestore, kDowngrade, kLeave };

struct EnvironmentConfig {
  std::string name;
  std::string after;  // the environment that must hold a revision first
  absl::Duration soak = absl::ZeroDuration();
  bool approval_required = false;
  // approval: {required, approvals, distinct_from_requester}: how many
  // different people must approve the stage (four eyes: 2), and whether
  // the one who requested the rollout may be one of them.
  int approvals = 1;
  bool distinct_from_requester = false;
  // windows: [{kind: deny|allow, schedule, timezone}]: when steps may start
  // (config/change_window.h); none: always.
  std::vector<ChangeWindow> windows;
  bool backup_required = false;
  std::vector<std::string> canary;
  // The canary gate, between the canary waves and the rest of the stage:
  // how long the canaries must hold the target (checked again at the end),
  // and whether someone must approve the rest once they did.
  absl::Duration canary_soak = absl::ZeroDuration();
  bool canary_approval_required = false;
  int batch_size = 10;
  int max_parallel = 4;
  int max_failures = 0;
  FailurePolicy on_failure = FailurePolicy::kRestore;
  std::string target = "heads";  // what "current" means for this environment
  std::vector<DatabaseConfig> databases;
  std::vector<DiscoverRule> discover;
};

// The events a webhook may be sent: a rollout's (their names in `watch` and
// WatchRollout), and the fleet's, found by refreshes (schema_drift: a
// database's schema is not what its version rows claim; checksum_changed:
// a revision file was edited after a database applied it).
// `notify[].events` are patterns over these.
inline constexpr const char* kNotifyEvents[] = {
    "rollout_started", "awaiting_approval", "approved",    "awaiting_window",
    "stage_started",   "stage_finished",    "step_failed", "rolled_back",
    "backup_failed",   "schema_drift",      "halted",      "paused",
    "resumed",         "aborted",           "recovered",   "rollout_finished",
    "checksum_changed"};
inline constexpr const char* kDefaultNotifyEvents[] = {
    "rollout_started", "awaiting_approval", "step_failed",  "halted",
    "aborted",         "rollout_finished",  "schema_drift", "checksum_changed"};

// notify: [{name, url, events, environments, format, secret_env, secret_file}]:
// a webhook that is sent rollout events as they happen.
struct NotifyConfig {
  std::string name;                 // in logs and metrics (never the URL, which may hold a token)
  std::string url;                  // http:// or https://
  std::vector<std::string> events;  // patterns over kNotifyEvents
  std::vector<std::string> environments;  // patterns; empty: every environment
  std::string format = "json";            // or "slack"
  SecretRef secret;  // the HMAC-SHA256 key (secret_env or secret_file); none: unsigned
  int line = 0;
};

struct Inventory {
  std::string path;  // the file it came from
  ServerConfig server;
  ProjectConfig project;
  std::vector<EnvironmentConfig> environments;  // in `after` order
  // Authentication is on (server.auth, or client certificates required):
  // every call names its caller, and `access` decides what they may do.
  // Off (the loopback quick start): every caller may do everything.
  bool authentication = false;
  std::map<std::string, TokenSubject> tokens;  // server.auth's file, by sha256 (hex)
  std::vector<AccessBinding> access;           // deny by default
  std::vector<NotifyConfig> notify;

  const EnvironmentConfig* FindEnvironment(const std::string& name) const;
  std::vector<std::string> EnvironmentNames() const;  // in `after` order
};

absl::StatusOr<Inventory> LoadInventory(const std::string& path);
absl::StatusOr<Inventory> ParseInventory(const std::string& yaml, const std::string& path);
// Only the project's source (alembic_ini or scripts, resolved against the
// inventory's folder, and ini_section), for `lockstep --inventory`: nothing
// else of the inventory is read or checked.
absl::StatusOr<ProjectConfig> LoadInventoryProject(const std::string& path);

// Whether any of the shell patterns (fnmatch: *, ?, [...]) matches `name`:
// the inventory's lists of environments, ignored tables, webhook events.
bool MatchesAnyPattern(const std::vector<std::string>& patterns, const std::string& name);

// Whether `listen` ("host:port") names a loopback address only
// (127.0.0.0/8, ::1, localhost).
bool IsLoopbackListen(const std::string& listen);

// The password for a database: from its secret reference, else from its URL.
// Errors name the variable or file, never a value.
absl::StatusOr<std::optional<std::string>> ResolvePassword(const DatabaseUrl& url,
                                                           const SecretRef& secret,
                                                           const std::string& what);

// "30s", "10m", "1h30m", "250ms", or a plain number of seconds.
std::optional<absl::Duration> ParseDurationText(const std::string& text);

}  // namespace lockstep::config

#endif  // LOCKSTEP_CONFIG_INVENTORY_H_
