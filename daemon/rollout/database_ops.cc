#include "daemon/rollout/database_ops.h"

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/SQLiteCpp.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "config/inventory.h"
#include "daemon/process/process.h"

namespace lockstep::daemon {
namespace {

// "lockstep" in ASCII: the advisory-lock key every lockstepd uses.
constexpr int64_t kAdvisoryLockKey = 0x6C6F636B73746570;

// Files names made from database names and revisions: keep them tame.
std::string FileSafe(const std::string& s) {
  std::string out;
  for (char c : s) out += (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out.empty() ? "_" : out;
}

absl::Status FsyncAndRename(const std::string& tmp, const std::string& path) {
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    return absl::InternalError(absl::StrCat("cannot sync ", tmp, ": ", std::strerror(errno)));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// Copies one SQLite database into another (created if missing) with the
// online backup API.
void SqliteCopy(const std::string& from, const std::string& to) {
  SQLite::Database src(from, SQLite::OPEN_READONLY, 10000);
  SQLite::Database dst(to, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, 10000);
  SQLite::Backup backup(dst, src);
  backup.executeStep();
}

// Runs before a PostgreSQL dump is replayed, in the same transaction.
constexpr char kPostgresRestorePrelude[] = R"sql(
SET client_min_messages = warning;
DO $lockstep$
DECLARE s name;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
             AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END
$lockstep$;
CREATE SCHEMA public;
DO $lockstep$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE 'ALTER SCHEMA public OWNER TO pg_database_owner';
    EXECUTE 'GRANT USAGE ON SCHEMA public TO PUBLIC';
  ELSE
    EXECUTE 'GRANT ALL ON SCHEMA public TO PUBLIC';
  END IF;
END
$lockstep$;
)sql";

// Removes every line equal to `line` from a file (in place).
absl::Status DropLine(const std::string& path, const std::string& line) {
  std::ifstream in(path);
  if (!in) return absl::InternalError(absl::StrCat("cannot read ", path));
  std::string text, l;
  while (std::getline(in, l)) {
    if (l != line) text += l + "\n";
  }
  in.close();
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<config::DatabaseUrl> ConnectUrl(const VersionTarget& target) {
  absl::StatusOr<std::optional<std::string>> password =
      config::ResolvePassword(target.url, target.secret, target.name);
  if (!password.ok()) return password.status();
  config::DatabaseUrl url = target.url;
  url.password = *password;
  return url;
}

std::vector<std::string> LibpqEnvironment(const config::DatabaseUrl& url) {
  std::vector<std::string> env;
  if (!url.host.empty()) env.push_back("PGHOST=" + url.host);
  if (url.port != 0) env.push_back(absl::StrCat("PGPORT=", url.port));
  if (!url.user.empty()) env.push_back("PGUSER=" + url.user);
  env.push_back("PGDATABASE=" + url.database);
  if (url.password.has_value()) env.push_back("PGPASSWORD=" + *url.password);
  static const std::map<std::string, std::string> kQueryVars = {
      {"sslmode", "PGSSLMODE"}, {"sslrootcert", "PGSSLROOTCERT"},  {"sslcert", "PGSSLCERT"},
      {"sslkey", "PGSSLKEY"},   {"application_name", "PGAPPNAME"}, {"options", "PGOPTIONS"}};
  for (const auto& [k, v] : url.query) {
    auto it = kQueryVars.find(k);
    if (it != kQueryVars.end()) env.push_back(it->second + "=" + v);
  }
  return env;
}

struct DatabaseLock::Pg {
  std::unique_ptr<pqxx::connection> conn;
};

absl::StatusOr<std::unique_ptr<DatabaseLock>> DatabaseLock::Acquire(
    const VersionTarget& target, const config::DatabaseUrl& url, absl::Duration connect_timeout,
    SqliteFileLock::IfMissing if_missing) {
  std::unique_ptr<DatabaseLock> lock(new DatabaseLock());
  if (url.dialect == config::Dialect::kSqlite) {
    absl::StatusOr<std::unique_ptr<SqliteFileLock>> file =
        SqliteFileLock::Acquire(url.database, if_missing);
    if (absl::IsAborted(file.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat(target.name, " is locked by another rollout or lockstepd (",
                       file.status().message(), ")"));
    }
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat("cannot lock ", target.name, ": ", file.status().message()));
    }
    lock->sqlite_ = *std::move(file);
    return lock;
  }
  try {
    lock->pg_ = std::make_unique<Pg>();
    lock->pg_->conn = std::make_unique<pqxx::connection>(absl::StrCat(
        url.LibpqConninfo(),
        " connect_timeout=", std::max<int64_t>(2, absl::ToInt64Seconds(connect_timeout)),
        " application_name=lockstepd-lock"));
    pqxx::nontransaction w(*lock->pg_->conn);
    pqxx::result r = w.exec(absl::StrCat("SELECT pg_try_advisory_lock(", kAdvisoryLockKey, ")"));
    if (!r[0][0].as<bool>()) {
      return absl::FailedPreconditionError(absl::StrCat(
          target.name, " is locked by another rollout or lockstepd (PostgreSQL advisory lock ",
          kAdvisoryLockKey, " is held; see pg_locks)"));
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot lock ", target.name, ": ", e.what()));
  }
  return lock;
}

DatabaseLock::~DatabaseLock() {
  // Destroying sqlite_ releases the flock; closing the session releases the
  // advisory lock.
}

absl::StatusOr<std::string> Sha256OfFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

absl::StatusOr<Backup> TakeBackup(const VersionTarget& target, const config::DatabaseUrl& url,
                                  const std::string& dir, absl::Duration timeout) {
  Backup b;
  const absl::Time start = absl::Now();
  size_t slash = target.name.find('/');
  b.environment = target.name.substr(0, slash);
  b.database = target.name.substr(slash + 1);
  b.created_at = start;
  const std::string folder =
      absl::StrCat(dir, "/", FileSafe(b.environment), "/", FileSafe(b.database));
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", folder, ": ", ec.message()));
  const bool sqlite = url.dialect == config::Dialect::kSqlite;
  b.path =
      absl::StrCat(folder, "/", absl::FormatTime("%Y%m%dT%H%M%E6SZ", start, absl::UTCTimeZone()),
                   sqlite ? ".sqlite3" : ".pgdump");
  const std::string tmp = b.path + ".partial";
  if (sqlite) {
    try {
      SqliteCopy(url.database, tmp);
    } catch (const std::exception& e) {
      ::unlink(tmp.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("backup of ", target.name, " failed: ", e.what()));
    }
  } else {
    ProcessSpec spec;
    spec.argv = {"pg_dump", "--format=custom", "--file", tmp};
    spec.env = LibpqEnvironment(url);
    spec.timeout = timeout;
    ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
    if (!r.ok()) {
      ::unlink(tmp.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("backup of ", target.name, ": pg_dump ", r.Describe(), ": ", r.output));
    }
  }
  absl::Status renamed = FsyncAndRename(tmp, b.path);
  if (!renamed.ok()) return renamed;
  struct stat st;
  if (::stat(b.path.c_str(), &st) != 0) return absl::InternalError("backup vanished: " + b.path);
  b.size_bytes = st.st_size;
  absl::StatusOr<std::string> sum = Sha256OfFile(b.path);
  if (!sum.ok()) return sum.status();
  b.sha256 = *sum;
  b.took = absl::Now() - start;
  return b;
}

absl::Status VerifyBackup(const Backup& backup) {
  struct stat st;
  if (::stat(backup.path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup ", backup.id, ": file ", backup.path, " is missing"));
  }
  absl::StatusOr<std::string> sum = Sha256OfFile(backup.path);
  if (!sum.ok()) return absl::FailedPreconditionError(sum.status().message());
  if (st.st_size != backup.size_bytes || *sum != backup.sha256) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup ", backup.id, " is corrupted: ", backup.path, " has ", st.st_size,
                     " bytes and sha256 ", *sum, "; the catalog recorded ", backup.size_bytes,
                     " bytes and ", backup.sha256, ". Refusing to restore it"));
  }
  return absl::OkStatus();
}

absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                           absl::Duration timeout) {
  const std::string name = absl::StrCat(backup.environment, "/", backup.database);
  if (url.dialect == config::Dialect::kSqlite) {
    try {
      SqliteCopy(backup.path, url.database);
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(
          absl::StrCat("restore of ", name, " failed: ", e.what()));
    }
    return absl::OkStatus();
  }
  // The database must end up exactly as the backup: objects a failed
  // migration created after it must go too (pg_restore --clean alone would
  // keep them, and fails on their dependencies). So, in one transaction:
  // drop every user schema, recreate public, replay the dump.
  const std::string sql = backup.path + ".restore.sql";
  const std::string prelude = backup.path + ".prelude.sql";
  struct Cleanup {
    std::vector<std::string> files;
    ~Cleanup() {
      for (const std::string& f : files) ::unlink(f.c_str());
    }
  } cleanup{{sql, prelude}};
  ProcessSpec to_sql;
  to_sql.argv = {"pg_restore", "--no-owner", "--file", sql, backup.path};
  to_sql.timeout = timeout;
  ProcessResult r = RunProcess(to_sql, nullptr, nullptr, nullptr);
  if (!r.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("restore of ", name, ": pg_restore ", r.Describe(), ": ", r.output));
  }
  {
    std::ofstream out(prelude);
    out << kPostgresRestorePrelude;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", prelude));
  }
  absl::Status filtered = DropLine(sql, "CREATE SCHEMA public;");
  if (!filtered.ok()) return filtered;
  ProcessSpec apply;
  apply.argv = {"psql", "-X",    "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                "-f",   prelude, "-f", sql};
  apply.env = LibpqEnvironment(url);
  apply.timeout = timeout;
  r = RunProcess(apply, nullptr, nullptr, nullptr);
  if (!r.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("restore of ", name, " (rolled back, the database is unchanged): psql ",
                     r.Describe(), ": ", r.output));
  }
  return absl::OkStatus();
}

}  // namespace lockstep::daemon
