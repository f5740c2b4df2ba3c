// SQLAlchemy-style database URLs, as users copy them from alembic.ini:
// `sqlite:///relative.db`, `sqlite:////abs.db`, `sqlite://` (memory),
// `postgresql[+driver]://user:pass@host:port/db?sslmode=require`,
// `mysql+pymysql://...`. The driver suffix is ignored: lockstep connects with
// its own driver. Passwords may be percent-encoded.
//
// A DatabaseUrl never prints its password: Redacted() is the only text form
// meant for logs, errors, API replies and metrics.
#ifndef LOCKSTEP_CONFIG_DATABASE_URL_H_
#define LOCKSTEP_CONFIG_DATABASE_URL_H_

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lockstep::config {

enum class Dialect { kSqlite, kPostgresql, kMysql };

struct DatabaseUrl {
  Dialect dialect = Dialect::kSqlite;
  std::string driver;    // "psycopg2" in postgresql+psycopg2; informational
  std::string user;
  std::optional<std::string> password;  // decoded; never logged
  std::string host;
  int port = 0;          // 0: the dialect's default
  std::string database;  // for SQLite: the file path ("" or ":memory:" = memory)
  std::map<std::string, std::string> query;

  // `postgresql://app:***@db:5432/app`: the URL with the password masked.
  std::string Redacted() const;
  // libpq keyword/value connection string (password included) for PostgreSQL.
  std::string LibpqConninfo() const;
  // The URL as SQLAlchemy accepts it, password included (for Alembic's
  // environment, never for display).
  std::string ToSqlAlchemy() const;
};

// Parses `url`; a relative SQLite path is resolved against `base_dir`.
// Errors say what is wrong and never echo the password.
absl::StatusOr<DatabaseUrl> ParseDatabaseUrl(absl::string_view url,
                                             absl::string_view base_dir = "");

absl::string_view DialectName(Dialect d);

}  // namespace lockstep::config

#endif  // LOCKSTEP_CONFIG_DATABASE_URL_H_
