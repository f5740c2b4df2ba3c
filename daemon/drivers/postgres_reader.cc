// PostgreSQL version reads through libpqxx 6.4. All pqxx exceptions stop here.
#include <chrono>
#include <condition_variable>
#include <list>
#include <map>
#include <mutex>

#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "daemon/drivers/version_reader.h"

namespace lockstep::daemon {
namespace {

// One line, no trailing newline, for messages.
std::string OneLine(absl::string_view s) {
  std::string out = absl::StrReplaceAll(absl::StripTrailingAsciiWhitespace(s), {{"\n", " "}, {"\t", " "}});
  return out;
}

ReadOutcome ClassifyConnectError(absl::string_view msg) {
  if (absl::StrContains(msg, "authentication failed") || absl::StrContains(msg, "permission denied") ||
      absl::StrContains(msg, "no pg_hba.conf entry") || absl::StrContains(msg, "password")) {
    return ReadOutcome::kPermissionDenied;
  }
  if (absl::StrContains(msg, "timeout expired") || absl::StrContains(msg, "timed out")) {
    return ReadOutcome::kTimedOut;
  }
  return ReadOutcome::kUnreachable;
}

// libpqxx prints server notices and errors to stderr unless told otherwise;
// lockstepd reports them itself.
class QuietErrors : public pqxx::errorhandler {
 public:
  explicit QuietErrors(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char[]) noexcept override { return false; }
};

// A connection with its error handler (which must not outlive it).
struct Conn {
  explicit Conn(const std::string& conninfo)
      : c(std::make_unique<pqxx::connection>(conninfo)), quiet(std::make_unique<QuietErrors>(*c)) {}
  ~Conn() { quiet.reset(); }
  std::unique_ptr<pqxx::connection> c;
  std::unique_ptr<QuietErrors> quiet;
};

// A bounded pool of connections to one server (host, port, user). A libpq
// connection serves one database; idle ones are reused for the same
// database and evicted, oldest first, when another database needs a slot.
class ServerPool {
 public:
  explicit ServerPool(int max) : max_(max) {}

  // Returns a connection for `db` (opening one with `conninfo` if needed).
  std::unique_ptr<Conn> Acquire(const std::string& db, const std::string& conninfo,
                                            absl::Duration statement_timeout) {
    std::unique_ptr<Conn> evicted;
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (true) {
        for (auto it = idle_.begin(); it != idle_.end(); ++it) {
          if (it->first == db) {
            std::unique_ptr<Conn> c = std::move(it->second);
            idle_.erase(it);
            return c;
          }
        }
        if (open_ < max_) break;
        if (!idle_.empty()) {
          evicted = std::move(idle_.back().second);
          idle_.pop_back();
          --open_;
          break;
        }
        cv_.wait(lock);
      }
      ++open_;
    }
    evicted.reset();  // closed outside the lock
    try {
      auto c = std::make_unique<Conn>(conninfo);
      pqxx::nontransaction w(*c->c);
      w.exec(absl::StrCat("SET statement_timeout = ", absl::ToInt64Milliseconds(statement_timeout)));
      return c;
    } catch (...) {
      Release(db, nullptr);
      throw;
    }
  }

  // Gives a connection back; nullptr (or a broken one) frees its slot.
  void Release(const std::string& db, std::unique_ptr<Conn> c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (c && c->c->is_open()) {
      idle_.emplace_front(db, std::move(c));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

 private:
  const int max_;
  std::mutex mu_;
  std::condition_variable cv_;
  int open_ = 0;  // guarded by mu_: idle plus in use
  std::list<std::pair<std::string, std::unique_ptr<Conn>>> idle_;  // guarded by mu_
};

class PostgresReader : public VersionReader {
 public:
  explicit PostgresReader(const ReaderOptions& o) : options_(o) {}

 private:
  VersionRead ReadRows(const VersionTarget& t) override {
    VersionRead out;
    absl::StatusOr<std::optional<std::string>> password =
        config::ResolvePassword(t.url, t.secret, t.name);
    if (!password.ok()) {
      out.outcome = ReadOutcome::kPermissionDenied;
      out.error = std::string(password.status().message());
      return out;
    }
    config::DatabaseUrl url = t.url;
    url.password = *password;
    std::string conninfo = absl::StrCat(
        url.LibpqConninfo(), " connect_timeout=",
        std::max<int64_t>(2, absl::ToInt64Seconds(options_.connect_timeout)),
        " application_name=lockstepd");
    std::string server = absl::StrCat(url.host, ":", url.port, ":", url.user);
    ServerPool* pool = PoolFor(server);
    std::unique_ptr<Conn> conn;
    try {
      conn = pool->Acquire(url.database, conninfo, options_.statement_timeout);
    } catch (const std::exception& e) {
      out.error = OneLine(e.what());
      out.outcome = ClassifyConnectError(out.error);
      return out;
    }
    try {
      pqxx::connection& c = *conn->c;
      std::string table = c.quote_name(t.version_table);
      if (!t.version_table_schema.empty()) {
        table = absl::StrCat(c.quote_name(t.version_table_schema), ".", table);
      }
      pqxx::nontransaction w(c);
      pqxx::result r = w.exec(absl::StrCat("SELECT version_num FROM ", table));
      for (const auto& row : r) out.rows.push_back(row[0].c_str());
      out.outcome = ReadOutcome::kOk;
    } catch (const pqxx::sql_error& e) {
      // libpqxx 6.4 leaves sqlstate() empty for some classes: trust the
      // exception's type first.
      const std::string& state = e.sqlstate();
      out.error = OneLine(e.what());
      if (dynamic_cast<const pqxx::undefined_table*>(&e) || state == "42P01" || state == "3F000") {
        out.outcome = ReadOutcome::kNoTable;  // undefined table or schema
      } else if (dynamic_cast<const pqxx::insufficient_privilege*>(&e) || state == "42501") {
        out.outcome = ReadOutcome::kPermissionDenied;
      } else if (state == "57014" ||
                 state == "55P03") {
        out.outcome = ReadOutcome::kTimedOut;  // statement or lock timeout
        out.error = absl::StrCat("timed out after ", absl::FormatDuration(options_.statement_timeout),
                                 " reading the version table (", out.error, ")");
      } else {
        out.outcome = ReadOutcome::kError;
      }
    } catch (const pqxx::broken_connection& e) {
      out.error = OneLine(e.what());
      out.outcome = ReadOutcome::kUnreachable;
      conn.reset();
    } catch (const std::exception& e) {
      out.error = OneLine(e.what());
      out.outcome = ReadOutcome::kError;
      conn.reset();
    }
    pool->Release(url.database, std::move(conn));
    return out;
  }

  ServerPool* PoolFor(const std::string& server) {
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<ServerPool>& p = pools_[server];
    if (!p) p = std::make_unique<ServerPool>(options_.max_connections_per_server);
    return p.get();
  }

  const ReaderOptions options_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<ServerPool>> pools_;  // guarded by mu_
};

}  // namespace

std::unique_ptr<VersionReader> MakePostgresReader(const ReaderOptions& options) {
  return std::make_unique<PostgresReader>(options);
}

// Used by DiscoverDatabases (reader.cc): one query on a short-lived connection.
absl::StatusOr<std::vector<std::string>> ListPostgresDatabases(const config::DatabaseUrl& url,
                                                               const std::string& query,
                                                               const ReaderOptions& options) {
  try {
    pqxx::connection c(absl::StrCat(url.LibpqConninfo(), " connect_timeout=",
                                    std::max<int64_t>(2, absl::ToInt64Seconds(options.connect_timeout))));
    pqxx::nontransaction w(c);
    w.exec(absl::StrCat("SET statement_timeout = ", absl::ToInt64Milliseconds(options.statement_timeout)));
    pqxx::result r = w.exec(query);
    std::vector<std::string> out;
    for (const auto& row : r) {
      if (!row[0].is_null()) out.push_back(row[0].c_str());
    }
    std::sort(out.begin(), out.end());
    return out;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("discover query on ", url.Redacted(), " failed: ",
                                               OneLine(e.what())));
  }
}

}  // namespace lockstep::daemon
